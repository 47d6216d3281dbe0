"""Read models folded from the event log: the projector, the executions view, rebuild, status."""

from __future__ import annotations

from projections.base import Projection
from projections.batches import BatchReport
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.queries import ExecutionsView, Page
from projections.rebuild import RebuildReport, plan_rebuild, rebuild, run_rebuild
from projections.slot_status import ProjectionStatus, SlotStatus, projection_status
from projections.stats import GraphStats, Percentiles, Stats, execution_stats
from projections.summaries import ExecutionStats, StatsRow

__all__ = [
    "BatchReport",
    "ExecutionStats",
    "ExecutionsProjection",
    "ExecutionsView",
    "GraphStats",
    "Page",
    "Percentiles",
    "Projection",
    "ProjectionStatus",
    "Projector",
    "RebuildReport",
    "SlotStatus",
    "Stats",
    "StatsRow",
    "execution_stats",
    "plan_rebuild",
    "projection_status",
    "rebuild",
    "run_rebuild",
]
