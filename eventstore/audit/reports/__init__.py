"""Reports rendered from an execution's events (`eventstore audit --html`)."""

from __future__ import annotations

from eventstore.audit.reports.timeline import render_timeline

__all__ = ["render_timeline"]
