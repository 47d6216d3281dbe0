"""PostgreSQL's forward-only bulk upsert: one statement per batch, one array per column.

``INSERT ... SELECT FROM unnest($1::uuid[], $2::text[], ...) ON CONFLICT
(key) DO UPDATE ... WHERE guard < excluded.guard``. SQLAlchemy's
executemany would send a multi-row VALUES with one bound parameter per
cell, each converted in Python; here asyncpg encodes each column's array
in C, which matters on the projection's hot path (bench/RESULTS.md). JSON
columns travel as text and are cast to jsonb in the statement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from eventstore.jsonvalues import dump_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]
_QUOTE: Final = _DIALECT.identifier_preparer.quote


class BulkUpsert:
    """The statement for one table, and the arrays it takes for a batch of rows."""

    def __init__(self, table: sa.Table, *, guard: str) -> None:
        keys = [column.name for column in table.primary_key.columns]
        self.columns = tuple(column.name for column in table.columns)
        # JSON columns, each with what Python None becomes: SQL NULL or 'null'.
        self._json: dict[str, bool] = {}
        array_types: list[str] = []
        for column in table.columns:
            column_type = column.type.dialect_impl(_DIALECT)
            if isinstance(column_type, sa.JSON):
                self._json[column.name] = column_type.none_as_null
                array_types.append("text[]")
            else:
                array_types.append(column_type.compile(dialect=_DIALECT) + "[]")
        target = _DIALECT.identifier_preparer.format_table(table)
        names = ", ".join(_QUOTE(name) for name in self.columns)
        selected = ", ".join(
            _QUOTE(name) + ("::jsonb" if name in self._json else "")
            for name in self.columns
        )
        arrays = ", ".join(
            f"${number}::{array_type}"
            for number, array_type in enumerate(array_types, start=1)
        )
        updates = ", ".join(
            f"{_QUOTE(name)} = excluded.{_QUOTE(name)}"
            for name in self.columns
            if name not in keys
        )
        self.sql = (
            f"INSERT INTO {target} ({names}) "  # noqa: S608 - names from the table
            f"SELECT {selected} FROM unnest({arrays}) AS source ({names}) "
            f"ON CONFLICT ({', '.join(_QUOTE(key) for key in keys)}) "
            f"DO UPDATE SET {updates} "
            f"WHERE {target}.{_QUOTE(guard)} < excluded.{_QUOTE(guard)}"
        )

    def arrays(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """The statement's arguments: one list per column, in column order."""
        return [self._column(name, rows) for name in self.columns]

    def _column(self, name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        none_as_null = self._json.get(name)
        if none_as_null is None:
            return [row[name] for row in rows]
        if none_as_null:
            return [None if row[name] is None else dump_json(row[name]) for row in rows]
        return [dump_json(row[name]) for row in rows]
