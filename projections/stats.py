"""Statistics over the executions projection: counts, duration percentiles, usage."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from eventstore import ExecutionStatus, errors
from eventstore.schema import executions, graphs

if TYPE_CHECKING:
    from eventstore import EventStore
    from eventstore.projecting import ProjectionContext

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
    cost_usd: float | None
    """None when the sum is beyond the largest float (about 1.8e308)."""


class Stats(BaseModel):
    """Counts by status over every execution, and per graph."""

    model_config = ConfigDict(frozen=True)

    counts: dict[ExecutionStatus, int]
    graphs: list[GraphStats]


def _usage(name: str) -> sa.ColumnElement[Any]:
    # As numeric: exact, and on PostgreSQL it cannot overflow (a float sum
    # fails with "value out of range"); SQLite sums integers exactly but
    # raises past 2**63, which `_exact_usage` then sums in Python. NullType:
    # the driver's value as is (SQLAlchemy's Numeric reads it through a float).
    return sa.func.coalesce(
        sa.func.sum(sa.cast(executions.c.metrics[name].as_string(), sa.Numeric())),
        0,
        type_=sa.types.NullType(),
    )


async def _usage_sums(
    backend: ProjectionContext,
) -> dict[UUID, tuple[str, str, dict[str, Decimal]]]:
    """Graph id -> (name, version, usage sums), summed by the database if it can."""
    query = (
        sa.select(
            executions.c.graph_id,
            graphs.c.name,
            graphs.c.version,
            *(_usage(name).label(name) for name in USAGE),
        )
        .join(graphs, graphs.c.id == executions.c.graph_id)
        .group_by(executions.c.graph_id, graphs.c.name, graphs.c.version)
    )
    try:
        # A connection of its own: a failed statement may end its transaction.
        async with backend.connect_read() as connection:
            rows = (await connection.execute(query)).all()
    except (errors.DatabaseUnavailable, errors.SchemaNotMigrated):
        raise
    except errors.DatabaseError:
        return await _exact_usage(backend)
    sums = {
        row.graph_id: (
            row.name,
            row.version,
            {name: exact_decimal(getattr(row, name)) for name in USAGE},
        )
        for row in rows
    }
    if not all(
        value.is_finite() for *_, usage in sums.values() for value in usage.values()
    ):
        # SQLite sums floats into infinity where the exact sum may still fit.
        return await _exact_usage(backend)
    return sums


async def _exact_usage(
    backend: ProjectionContext,
) -> dict[UUID, tuple[str, str, dict[str, Decimal]]]:
    """The usage sums in Python's exact arithmetic, row by row (a rare path)."""
    sums: dict[UUID, tuple[str, str, dict[str, Decimal]]] = {}
    async with backend.connect_read() as connection:
        rows = (
            await connection.execute(
                sa.select(
                    executions.c.graph_id,
                    graphs.c.name,
                    graphs.c.version,
                    executions.c.metrics,
                ).join(graphs, graphs.c.id == executions.c.graph_id)
            )
        ).all()
    for graph_id, name, version, metrics in rows:
        usage = sums.setdefault(
            graph_id, (name, version, dict.fromkeys(USAGE, Decimal(0)))
        )[2]
        for key in USAGE:
            value = metrics.get(key) if isinstance(metrics, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                usage[key] += exact_decimal(value)
    return sums


def exact_decimal(value: object) -> Decimal:
    """A sum or a metric as a Decimal: ints and numerics exactly, floats by repr."""
    if isinstance(value, float):
        return Decimal(repr(value))  # the float as it was written: 0.1, not 0.1000...
    return Decimal(value)  # type: ignore[arg-type]


def _as_float(value: Decimal) -> float | None:
    """The sum as a float, or None when no float holds it."""
    number = float(value)
    return number if math.isfinite(number) else None


async def execution_stats(store: EventStore) -> Stats:
    """Counts by status, and per graph the duration percentiles and usage sums."""
    backend = store.projection_context
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
        percentiles = await backend.percentiles(
            connection,
            executions,
            group_by=["graph_id"],
            columns=DURATIONS,
            fractions=FRACTIONS,
        )
    usage = await _usage_sums(backend)
    per_graph = []
    for graph_id, (graph_name, graph_version, sums) in sorted(
        usage.items(), key=lambda item: (item[1][0], str(item[0]))
    ):
        durations = percentiles.get((graph_id,), {})
        per_graph.append(
            GraphStats(
                graph_id=graph_id,
                graph_name=graph_name,
                graph_version=graph_version,
                counts={s: counts.get(graph_id, {}).get(s, 0) for s in ExecutionStatus},
                prompt_tokens=int(sums["prompt_tokens"]),
                completion_tokens=int(sums["completion_tokens"]),
                cost_usd=_as_float(sums["cost_usd"]),
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
