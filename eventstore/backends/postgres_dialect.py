"""PostgreSQL's SQL fragments: ON CONFLICT inserts, bulk upserts, clock, order, percentiles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from typing_extensions import override

from eventstore.backends.dialect import Dialect
from eventstore.backends.postgres_database import PostgresDatabase
from eventstore.backends.postgres_driver import driver_connection
from eventstore.backends.postgres_upsert import BulkUpsert
from eventstore.jsonvalues import dump_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.dialect import ConflictInsert
    from eventstore.events.checkpoint import Checkpoint


class PostgresDialect(PostgresDatabase, Dialect):
    """The pieces of SQL PostgreSQL says its own way."""

    @override
    def insert(self, table: sa.Table) -> ConflictInsert:
        return postgresql.insert(table)

    @override
    async def upsert_rows(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        guard: str,
    ) -> None:
        if not rows:
            return
        shape = (table.name, guard, tuple(table.columns.keys()))
        statement = self._bulk_upserts.get(shape)
        if statement is None:
            statement = self._bulk_upserts[shape] = BulkUpsert(table, guard=guard)
        driver = await driver_connection(connection)
        await driver.execute(statement.sql, *statement.arrays(rows))

    @override
    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.clock_timestamp()

    @override
    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        return sa.tuple_(
            table.c.epoch, table.c.transaction_id, table.c.position
        ) <= sa.tuple_(
            sa.literal(checkpoint.epoch),
            sa.literal(checkpoint.xid, table.c.transaction_id.type),
            sa.literal(checkpoint.position),
        )

    @override
    def label_value(
        self, column: sa.ColumnElement[Any], key: str
    ) -> sa.ColumnElement[Any]:
        return column.op("->>")(sa.literal(key))

    @override
    def time_bucket(
        self, column: sa.ColumnElement[Any], unit: str
    ) -> sa.ColumnElement[Any]:
        shape = 'YYYY-MM-DD"T"HH24":00:00Z"' if unit == "hour" else "YYYY-MM-DD"
        return sa.func.to_char(sa.func.timezone("UTC", column), shape)

    @override
    def milliseconds_between(
        self, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any]:
        return sa.cast(sa.extract("epoch", end - start) * 1000, sa.Float)

    @override
    def labels_match(
        self, column: sa.ColumnElement[Any], labels: Mapping[str, str]
    ) -> sa.ColumnElement[bool]:
        # Containment, which the GIN index on executions.labels answers.
        document = sa.cast(sa.literal(dump_json(dict(labels))), postgresql.JSONB)
        return column.op("@>")(document)

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
        groups = [source.c[name] for name in group_by]
        selected = [
            sa.func.percentile_cont(fraction)
            .within_group(source.c[name])
            .label(f"{name}_{n}")
            for name in columns
            for n, fraction in enumerate(fractions)
        ]
        rows = await connection.execute(sa.select(*groups, *selected).group_by(*groups))
        return {
            tuple(mapping[name] for name in group_by): {
                name: [
                    _maybe_float(mapping[f"{name}_{n}"]) for n in range(len(fractions))
                ]
                for name in columns
            }
            for mapping in rows.mappings()
        }


def _maybe_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
