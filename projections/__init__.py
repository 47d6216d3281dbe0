"""Read models folded from the event log (the projector arrives with its own issue)."""

from __future__ import annotations

__all__: list[str] = []
