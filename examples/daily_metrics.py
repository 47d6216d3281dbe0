"""A read model of your own: per-graph daily metrics, run by the same projector.

    python examples/daily_metrics.py [URL]

It implements the `projections.Projection` protocol: a `name` (its
checkpoint), `apply(connection, events)` called with each batch inside the
transaction that moves the checkpoint (so a batch counts once, even across
crashes and several projector processes), and `reset` for rebuilds.

The table `graph_daily_metrics` has one row per graph and UTC day: runs
created, how many finished in each terminal status, and the usage summed
from the events' metrics. Progress and terminal events do not carry the
graph, so the projection keeps its own map of execution to graph
(`graph_daily_metrics_executions`), written in the same transaction.
"""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import sqlalchemy as sa

from eventstore import EventStore, RecordedEvent
from projections import ExecutionsProjection, Projector

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

    from sqlalchemy.ext.asyncio import AsyncConnection

metadata = sa.MetaData()
daily = sa.Table(
    "graph_daily_metrics",
    metadata,
    sa.Column("graph_id", sa.Uuid, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("completed", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("cancelled", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
)
graph_of = sa.Table(
    "graph_daily_metrics_executions",
    metadata,
    sa.Column("execution_id", sa.Uuid, primary_key=True),
    sa.Column("graph_id", sa.Uuid, nullable=False),
)
COUNTERS: Final = (
    "created",
    "completed",
    "failed",
    "cancelled",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
)
TERMINAL: Final = {
    "ExecutionCompleted": "completed",
    "ExecutionFailed": "failed",
    "ExecutionCancelled": "cancelled",
}
# Additive upsert: the same text on PostgreSQL and SQLite.
ADD: Final = sa.text(
    "INSERT INTO graph_daily_metrics (graph_id, day, "  # noqa: S608 - constants
    + ", ".join(COUNTERS)
    + ") VALUES (:graph_id, :day, "
    + ", ".join(f":{c}" for c in COUNTERS)
    + ") ON CONFLICT (graph_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = graph_daily_metrics.{c} + excluded.{c}" for c in COUNTERS)
).bindparams(
    sa.bindparam("graph_id", type_=sa.Uuid()), sa.bindparam("day", type_=sa.Date())
)


class DailyMetricsProjection:
    """Per-graph, per-day counts and usage, folded from the log."""

    name = "graph_daily_metrics"

    async def create_tables(self, connection: AsyncConnection) -> None:
        """Create the read model's tables (a real service would use a migration)."""
        await connection.run_sync(metadata.create_all)

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        """Fold one batch: new graph ids first, then one additive upsert per (graph, day)."""
        created = {
            event.stream_id: UUID(str(event.data["graph_id"]))
            for event in events
            if event.type == "ExecutionCreated"
        }
        if created:
            await connection.execute(
                sa.insert(graph_of),
                [{"execution_id": e, "graph_id": g} for e, g in created.items()],
            )
        graphs = await self._graphs(connection, {e.stream_id for e in events})
        totals: dict[tuple[UUID, date], dict[str, Any]] = defaultdict(
            lambda: dict.fromkeys(COUNTERS, 0)
        )
        for event in events:
            graph = graphs.get(event.stream_id)
            if graph is None:
                continue  # not an execution stream
            row = totals[graph, event.occurred_at.date()]
            if event.type == "ExecutionCreated":
                row["created"] += 1
            elif event.type in TERMINAL:
                row[TERMINAL[event.type]] += 1
            metrics = event.data.get("metrics")
            if isinstance(metrics, dict):
                for name in ("prompt_tokens", "completion_tokens", "cost_usd"):
                    row[name] += metrics.get(name, 0)
        if totals:
            await connection.execute(
                ADD,
                [
                    {"graph_id": graph, "day": day, **values}
                    for (graph, day), values in totals.items()
                ],
            )

    async def reset(self, connection: AsyncConnection) -> None:
        """Empty both tables before a rebuild replays the log."""
        await connection.execute(sa.delete(daily))
        await connection.execute(sa.delete(graph_of))

    async def _graphs(
        self, connection: AsyncConnection, execution_ids: set[UUID]
    ) -> dict[UUID, UUID]:
        rows = await connection.execute(
            sa.select(graph_of.c.execution_id, graph_of.c.graph_id).where(
                graph_of.c.execution_id.in_(execution_ids)
            )
        )
        return {row.execution_id: row.graph_id for row in rows}


async def main(url: str | None) -> None:
    """Project the store into both read models and print the daily metrics."""
    async with EventStore.open(url) as store:
        await store.migrate()
        metrics = DailyMetricsProjection()
        async with store.projection_context.begin_write() as connection:
            await metrics.create_tables(connection)
        projector = Projector(
            store, [ExecutionsProjection(store.projection_context), metrics]
        )
        await projector.run_until_caught_up()
        async with store.projection_context.connect_read() as connection:
            for row in await connection.execute(sa.select(daily)):
                print(dict(row._mapping))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
