"""How a report writes durations, metrics and long values for people."""

from __future__ import annotations

import json
from typing import Final

# Results, details and tracebacks can be large; the page shows a preview,
# the log (and `audit --json`) keeps them whole.
PREVIEW_CHARS: Final = 4000


def format_duration(ms: int) -> str:
    """A duration for people: ``850 ms``, ``12.345 s``, ``3 min 4.500 s``, ``2 h 5 min``."""
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    if ms < 1000:
        return f"{sign}{ms} ms"
    if ms < 60_000:
        return f"{sign}{ms / 1000:.3f} s"
    minutes, rest = divmod(ms, 60_000)
    if minutes < 60:
        return f"{sign}{minutes} min {rest / 1000:.3f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours} h {minutes} min"


def format_number(value: float) -> str:
    """A metric: integers exactly, floats to ten significant digits (sums of costs)."""
    if isinstance(value, int):
        return str(value)
    return format(value, ".10g")


def metric_pairs(metrics: object) -> tuple[tuple[str, str], ...]:
    """A step's metrics as name and value texts; none unless a mapping."""
    if not isinstance(metrics, dict):
        return ()
    return tuple(
        (str(name), format_number(value) if is_number(value) else str(value))
        for name, value in metrics.items()
    )


def is_number(value: object) -> bool:
    """Whether a metric is a number (not a bool, which JSON keeps apart)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def preview(value: object, *, text: bool = False) -> str | None:
    """Compact JSON (or text) of a value, cut at PREVIEW_CHARS; None for None."""
    if value is None:
        return None
    shown = (
        str(value)
        if text
        else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    )
    if len(shown) > PREVIEW_CHARS:
        cut = len(shown) - PREVIEW_CHARS
        shown = f"{shown[:PREVIEW_CHARS]}… ({cut} more characters)"
    return shown
