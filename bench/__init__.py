"""Append benchmarks: eventstore against raw drivers and the eventsourcing library.

Run ``python -m bench --help``; see bench/README.md.
"""

from __future__ import annotations
