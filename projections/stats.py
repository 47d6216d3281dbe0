"""Statistics over the executions projection: counts, duration percentiles, usage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from eventstore import ExecutionStatus
from eventstore.schema import executions, graphs

if TYPE_CHECKING:
    from eventstore import EventStore

FRACTIONS: Final = (0.5, 0.95, 0.99)
DURATIONS: Final = ("queue_ms", "run_ms", "total_ms")
USAGE: Final = ("prompt_tokens", "completion_tokens", "cost_usd")


class Percentiles(BaseModel):
    """p50, p95 and p99 of a duration in milliseconds (None without data)."""

    model_config = ConfigDict(frozen=True)

    p50: float | None
    p95: float | None
    p99: float | None


class GraphStats(BaseModel):
    """What the executions of one graph did."""

    model_config = ConfigDict(frozen=True)

    graph_id: UUID
    graph_name: str
    graph_version: str
    counts: dict[ExecutionStatus, int]
    queue_ms: Percentiles
    run_ms: Percentiles
    total_ms: Percentiles
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class Stats(BaseModel):
    """Counts by status over every execution, and per graph."""

    model_config = ConfigDict(frozen=True)

    counts: dict[ExecutionStatus, int]
    graphs: list[GraphStats]


def _usage(name: str) -> sa.ColumnElement[float]:
    return sa.func.coalesce(sa.func.sum(executions.c.metrics[name].as_float()), 0)


async def execution_stats(store: EventStore) -> Stats:
    """Counts by status, and per graph the duration percentiles and usage sums."""
    backend = store.backend
    await backend.ensure_schema()
    async with backend.connect_read() as connection:
        counted = await connection.execute(
            sa.select(
                executions.c.graph_id, executions.c.status, sa.func.count()
            ).group_by(executions.c.graph_id, executions.c.status)
        )
        counts: dict[UUID, dict[ExecutionStatus, int]] = {}
        for graph_id, status, count in counted:
            counts.setdefault(graph_id, {})[ExecutionStatus(status)] = int(count)
        usage = {
            row.graph_id: row
            for row in await connection.execute(
                sa.select(
                    executions.c.graph_id,
                    graphs.c.name,
                    graphs.c.version,
                    *(_usage(name).label(name) for name in USAGE),
                )
                .join(graphs, graphs.c.id == executions.c.graph_id)
                .group_by(executions.c.graph_id, graphs.c.name, graphs.c.version)
            )
        }
        percentiles = await backend.percentiles(
            connection,
            executions,
            group_by="graph_id",
            columns=DURATIONS,
            fractions=FRACTIONS,
        )
    per_graph = []
    for graph_id, row in sorted(
        usage.items(), key=lambda item: (item[1].name, str(item[0]))
    ):
        durations = percentiles.get(graph_id, {})
        per_graph.append(
            GraphStats(
                graph_id=graph_id,
                graph_name=row.name,
                graph_version=row.version,
                counts={s: counts.get(graph_id, {}).get(s, 0) for s in ExecutionStatus},
                prompt_tokens=int(row.prompt_tokens),
                completion_tokens=int(row.completion_tokens),
                cost_usd=float(row.cost_usd),
                **{
                    name: Percentiles(
                        **dict(
                            zip(
                                ("p50", "p95", "p99"),
                                durations.get(name, [None] * 3),
                                strict=True,
                            )
                        )
                    )
                    for name in DURATIONS
                },
            )
        )
    totals = {
        status: sum(graph_counts.get(status, 0) for graph_counts in counts.values())
        for status in ExecutionStatus
    }
    return Stats(counts=totals, graphs=per_graph)
