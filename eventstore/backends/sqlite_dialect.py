"""SQLite's SQL fragments: ON CONFLICT inserts, the clock, order, percentiles in Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from typing_extensions import override

from eventstore.backends.dialect import Dialect
from eventstore.backends.sqlite_database import SqliteDatabase

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.dialect import ConflictInsert
    from eventstore.events.checkpoint import Checkpoint


class SqliteDialect(SqliteDatabase, Dialect):
    """The pieces of SQL SQLite says its own way."""

    @override
    def insert(self, table: sa.Table) -> ConflictInsert:
        return sqlite.insert(table)

    @override
    def clock(self) -> sa.ColumnElement[Any]:
        # SQLite's own clock, in the text form SQLAlchemy's DateTime reads.
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")

    @override
    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        return table.c.position <= checkpoint.position

    @override
    def label_value(
        self, column: sa.ColumnElement[Any], key: str
    ) -> sa.ColumnElement[Any]:
        # Label keys are [a-z0-9_./-]: safe inside a quoted JSON path step.
        return sa.func.json_extract(column, f'$."{key}"')

    @override
    def time_bucket(
        self, column: sa.ColumnElement[Any], unit: str
    ) -> sa.ColumnElement[Any]:
        shape = "%Y-%m-%dT%H:00:00Z" if unit == "hour" else "%Y-%m-%d"
        return sa.func.strftime(shape, column)

    @override
    def milliseconds_between(
        self, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any]:
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86_400_000.0

    @override
    def labels_match(
        self, column: sa.ColumnElement[Any], labels: Mapping[str, str]
    ) -> sa.ColumnElement[bool]:
        # Label keys are [a-z0-9_./-]: safe inside a quoted JSON path step.
        return sa.and_(
            sa.true(),
            *(
                sa.func.json_extract(column, f'$."{key}"') == value
                for key, value in labels.items()
            ),
        )

    @override
    async def percentiles(
        self,
        connection: AsyncConnection,
        source: sa.FromClause,
        *,
        group_by: Sequence[str],
        columns: Sequence[str],
        fractions: Sequence[float],
    ) -> dict[tuple[Any, ...], dict[str, list[float | None]]]:
        # SQLite has no percentile aggregate: sort each column per group and
        # interpolate as percentile_cont does (the embedded scale allows it).
        result: dict[tuple[Any, ...], dict[str, list[float | None]]] = {}
        groups = [source.c[name] for name in group_by]
        for name in columns:
            column = source.c[name]
            rows = await connection.execute(
                sa.select(*groups, column)
                .where(column.is_not(None))
                .order_by(*groups, column)
            )
            values: dict[tuple[Any, ...], list[float]] = {}
            for row in rows:
                values.setdefault(tuple(row[:-1]), []).append(float(row[-1]))
            for group, ordered in values.items():
                result.setdefault(group, {})[name] = [
                    _interpolate(ordered, fraction) for fraction in fractions
                ]
        for per_column in result.values():
            for name in columns:
                per_column.setdefault(name, [None] * len(fractions))
        return result


def _interpolate(ordered: Sequence[float], fraction: float) -> float:
    """percentile_cont over sorted values: linear between the nearest ranks."""
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
