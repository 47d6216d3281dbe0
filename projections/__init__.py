"""Read models folded from the event log: the projector, the executions view, rebuild."""

from __future__ import annotations

from projections.base import Projection
from projections.executions import ExecutionsProjection
from projections.projector import BatchReport, Projector
from projections.queries import ExecutionsView, Page
from projections.rebuild import rebuild
from projections.stats import GraphStats, Percentiles, Stats, execution_stats

__all__ = [
    "BatchReport",
    "ExecutionsProjection",
    "ExecutionsView",
    "GraphStats",
    "Page",
    "Percentiles",
    "Projection",
    "Projector",
    "Stats",
    "execution_stats",
    "rebuild",
]
