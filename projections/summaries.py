"""Run statistics grouped as asked (README, "Command line", `stats`): counts, error rate, percentiles, usage.

`ExecutionStats(store).summary(group_by=[...], **filters)` selects runs with
the filters of `ExecutionsView.list` and answers per group in a few
statements: counts and usage sums grouped in the database, and the
percentiles by `percentile_cont` on PostgreSQL; SQLite, which has none,
sorts each measure per group and interpolates the same way in Python.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from eventstore import ExecutionStatus, errors
from eventstore.schema import executions, graphs
from projections.run_filters import RunFilters, conditions
from projections.stats import FRACTIONS, Percentiles, exact_decimal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from typing_extensions import Unpack

    from eventstore import EventStore
    from eventstore.projecting import ProjectionContext

GROUP_KEYS: Final = ("graph", "graph_version", "status", "worker", "hour", "day")
LABEL_KEY: Final = re.compile(r"label:([a-z0-9][a-z0-9_./-]{0,62})")
MEASURES: Final = (
    "queue_ms",
    "run_ms",
    "total_ms",
    "first_step_ms",
    "cost_usd_per_run",
)
USAGE: Final = ("prompt_tokens", "completion_tokens", "cost_usd")


class StatsRow(BaseModel):
    """What the runs of one group did.

    `group` maps each group_by key to its value (`graph_version` as
    "name vVERSION", `hour` as "2026-12-04T07:00:00Z", `day` as
    "2026-12-04"); it is empty without group_by. `cost_usd` is the sum,
    `cost_usd_per_run` the percentiles of the runs that reported a cost.
    """

    model_config = ConfigDict(frozen=True)

    group: dict[str, str | None]
    runs: int
    counts: dict[ExecutionStatus, int]
    error_rate: float | None
    """failed / (completed + failed); None when neither."""
    queue_ms: Percentiles
    run_ms: Percentiles
    total_ms: Percentiles
    first_step_ms: Percentiles
    cost_usd_per_run: Percentiles
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    """None when the sum is beyond the largest float (about 1.8e308)."""


def _checked_group_by(group_by: object) -> list[str]:
    if isinstance(group_by, str) or not isinstance(group_by, list | tuple):
        raise errors.ValidationError(
            f"invalid group_by {group_by!r}: a list of keys such as ['graph', 'day']"
        )
    for key in group_by:
        if key not in GROUP_KEYS and not (
            isinstance(key, str) and LABEL_KEY.fullmatch(key)
        ):
            raise errors.ValidationError(
                f"invalid group_by key {key!r}: one of {', '.join(GROUP_KEYS)} "
                "or label:KEY"
            )
    if len(set(group_by)) != len(group_by):
        raise errors.ValidationError(f"invalid group_by {group_by!r}: a key twice")
    return list(group_by)


def _group_columns(context: ProjectionContext, key: str) -> list[sa.ColumnElement[Any]]:
    """The columns one group_by key groups on (graph_version: name and version)."""
    if key == "graph":
        return [graphs.c.name]
    if key == "graph_version":
        return [graphs.c.name, graphs.c.version]
    if key == "status":
        return [executions.c.status]
    if key == "worker":
        return [executions.c.worker_id]
    if key in ("hour", "day"):
        return [context.time_bucket(executions.c.created_at, key)]
    return [context.label_value(executions.c.labels, key.removeprefix("label:"))]


def _usage(name: str) -> sa.ColumnElement[Any]:
    return sa.cast(executions.c.metrics[name].as_string(), sa.Numeric())


class ExecutionStats:
    """Statistics over the `executions` projection (eventually consistent)."""

    def __init__(self, store: EventStore) -> None:
        self._context = store.projection_context

    async def summary(
        self, group_by: Sequence[str] = (), **filters: Unpack[RunFilters]
    ) -> list[StatsRow]:
        """One row per group of the runs the filters select, ordered by group.

        Args:
            group_by: `graph`, `graph_version`, `status`, `worker`,
                `label:KEY`, `hour`, `day` (UTC buckets of created_at); none
                gives one row over every run selected.
            filters: the filters of `RunFilters`.

        Raises:
            ValidationError: a bad group_by key, an unknown filter or a bad value.
        """
        keys = _checked_group_by(
            list(group_by) if isinstance(group_by, tuple) else group_by
        )
        context = self._context
        where = conditions(filters, context)
        spans = [_group_columns(context, key) for key in keys]
        grouped = [column for span in spans for column in span]
        names = [f"g{n}" for n in range(len(grouped))]
        source = (
            sa.select(
                *(
                    column.label(name)
                    for column, name in zip(grouped, names, strict=True)
                ),
                executions.c.status,
                executions.c.queue_ms,
                executions.c.run_ms,
                executions.c.total_ms,
                context.milliseconds_between(
                    executions.c.created_at, executions.c.first_step_at
                ).label("first_step_ms"),
                sa.cast(executions.c.metrics["cost_usd"].as_string(), sa.Float).label(
                    "cost_usd_per_run"
                ),
                *(_usage(name).label(name) for name in USAGE),
                executions.c.metrics,
            )
            .select_from(
                # Graph names only for the graph keys: a join is a cost per run.
                executions.join(graphs, graphs.c.id == executions.c.graph_id)
                if {"graph", "graph_version"} & set(keys)
                else executions
            )
            .where(*where)
            .subquery()
        )
        await context.ensure_schema()
        # Two statements on two connections at once: the database can sort
        # for the percentiles on one core while it sums on another.
        counted, percentiles = await asyncio.gather(
            self._totals(source, names), self._percentiles(source, names)
        )
        return self._rows(keys, spans, counted, percentiles)

    async def _percentiles(
        self, source: sa.Subquery, names: list[str]
    ) -> dict[tuple[Any, ...], dict[str, list[float | None]]]:
        async with self._context.connect_read() as connection:
            return await self._context.percentiles(
                connection,
                source,
                group_by=names,
                columns=MEASURES,
                fractions=FRACTIONS,
            )

    async def _totals(self, source: sa.Subquery, names: list[str]) -> list[Any]:
        """Per group and status: the count and the usage sums, exact.

        Summed by the database as numeric; where it cannot (SQLite past
        2**63, or into infinity), summed again in Python from the metrics.
        """
        groups = [source.c[name] for name in names]
        totals = sa.select(
            *groups,
            source.c.status,
            sa.func.count(),
            *(sa.func.sum(source.c[name]) for name in USAGE),
        ).group_by(*groups, source.c.status)
        try:
            # A connection of its own: a failed statement may end its transaction.
            async with self._context.connect_read() as connection:
                rows = (await connection.execute(totals)).all()
        except (errors.DatabaseUnavailable, errors.SchemaNotMigrated):
            raise
        except errors.DatabaseError:
            rows = None
        if rows is not None and all(
            exact_decimal(value).is_finite()
            for row in rows
            for value in row[-len(USAGE) :]
            if value is not None
        ):
            return list(rows)
        exact: dict[tuple[Any, ...], list[Any]] = {}
        async with self._context.connect_read() as connection:
            for row in await connection.execute(
                sa.select(*groups, source.c.status, source.c.metrics)
            ):
                *key, metrics = row
                total = exact.setdefault(tuple(key), [0, *([Decimal(0)] * len(USAGE))])
                total[0] += 1
                for n, name in enumerate(USAGE, start=1):
                    value = metrics.get(name) if isinstance(metrics, dict) else None
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        total[n] += exact_decimal(value)
        return [(*key, *total) for key, total in exact.items()]

    @staticmethod
    def _rows(
        keys: list[str],
        spans: list[list[sa.ColumnElement[Any]]],
        counted: Sequence[Any],
        percentiles: dict[tuple[Any, ...], dict[str, list[float | None]]],
    ) -> list[StatsRow]:
        width = sum(len(span) for span in spans)
        counts: dict[tuple[Any, ...], dict[ExecutionStatus, int]] = {}
        sums: dict[tuple[Any, ...], dict[str, Decimal]] = {}
        for row in counted:
            group = tuple(row[:width])
            status, count, *usage = row[width:]
            counts.setdefault(group, {})[ExecutionStatus(status)] = int(count)
            total = sums.setdefault(group, dict.fromkeys(USAGE, Decimal(0)))
            for name, value in zip(USAGE, usage, strict=True):
                if value is not None:
                    total[name] += exact_decimal(value)
        rows = []
        for group in sorted(
            counts, key=lambda g: tuple((v is None, str(v)) for v in g)
        ):
            by_status = {s: counts[group].get(s, 0) for s in ExecutionStatus}
            failed = by_status[ExecutionStatus.FAILED]
            ended = failed + by_status[ExecutionStatus.COMPLETED]
            measured = percentiles.get(group, {})
            cost = float(sums[group]["cost_usd"])
            rows.append(
                StatsRow(
                    group=_group_values(keys, spans, group),
                    runs=sum(by_status.values()),
                    counts=by_status,
                    error_rate=failed / ended if ended else None,
                    prompt_tokens=int(sums[group]["prompt_tokens"]),
                    completion_tokens=int(sums[group]["completion_tokens"]),
                    cost_usd=cost
                    if cost not in (float("inf"), float("-inf"))
                    else None,
                    **{
                        name: Percentiles(
                            **dict(
                                zip(
                                    ("p50", "p95", "p99"),
                                    measured.get(name, [None] * len(FRACTIONS)),
                                    strict=True,
                                )
                            )
                        )
                        for name in MEASURES
                    },
                )
            )
        return rows


def _group_values(
    keys: list[str], spans: list[list[sa.ColumnElement[Any]]], group: tuple[Any, ...]
) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    start = 0
    for key, span in zip(keys, spans, strict=True):
        parts = group[start : start + len(span)]
        start += len(span)
        if key == "graph_version":
            values[key] = f"{parts[0]} v{parts[1]}"
        else:
            values[key] = None if parts[0] is None else str(parts[0])
    return values
