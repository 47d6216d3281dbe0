"""Line charts as inline SVG, drawn on the server: no chart library, no script.

A chart is a set of named series over shared time buckets; each series is
one `<polyline class="series">` with its own colour, and a legend names
them. Values are user-visible numbers only; names (graph names, which come
from the log) are escaped by the template that embeds the chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

WIDTH: Final = 640
HEIGHT: Final = 200
MARGIN_LEFT: Final = 56
MARGIN_BOTTOM: Final = 22
MARGIN_TOP: Final = 8
COLOURS: Final = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#4b5563",
)


@dataclass(frozen=True)
class Series:
    """One line: its name, colour and the SVG points of its values."""

    name: str
    colour: str
    points: str
    dots: list[tuple[str, str]]  # each value as a dot: one alone draws no line
    last: str


@dataclass(frozen=True)
class Chart:
    """A chart ready for the template: lines, the y axis's top, the x axis's ends."""

    title: str
    series: list[Series]
    y_max: str
    x_first: str
    x_last: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = MARGIN_LEFT
    bottom: int = HEIGHT - MARGIN_BOTTOM
    top: int = MARGIN_TOP


def line_chart(
    title: str,
    buckets: Sequence[str],
    values: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
) -> Chart:
    """A chart of `values` (one sequence per series, aligned with `buckets`).

    A missing value (None) breaks nothing: the line joins the values that
    are there, so a bucket without runs does not read as zero latency.
    """
    present = [v for series in values.values() for v in series if v is not None]
    top = max(present, default=0.0)
    scale = _nice(top)
    span_x = max(1, len(buckets) - 1)
    inner_width = WIDTH - MARGIN_LEFT - 8
    inner_height = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    lines = []
    for index, (name, series) in enumerate(sorted(values.items())):
        points = [
            (
                MARGIN_LEFT + inner_width * i / span_x,
                HEIGHT - MARGIN_BOTTOM - inner_height * (value / scale if scale else 0),
            )
            for i, value in enumerate(series)
            if value is not None
        ]
        last = next((v for v in reversed(series) if v is not None), None)
        lines.append(
            Series(
                name=name,
                colour=COLOURS[index % len(COLOURS)],
                points=" ".join(f"{x:.1f},{y:.1f}" for x, y in points),
                dots=[(f"{x:.1f}", f"{y:.1f}") for x, y in points],
                last="-" if last is None else _number(last, unit),
            )
        )
    return Chart(
        title=title,
        series=lines,
        y_max=_number(scale, unit),
        x_first=buckets[0] if buckets else "",
        x_last=buckets[-1] if buckets else "",
    )


def _nice(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power: float = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _number(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.2f}"
    return f"{text}{unit}"
