"""SQL fragments that differ by dialect: conflict inserts, the clock, order, percentiles."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from eventstore.backends.database import Database

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.events.checkpoint import Checkpoint


class ConflictInsert(Protocol):
    """What PostgreSQL's and SQLite's dialect INSERTs have in common."""

    @property
    def excluded(self) -> Any:
        """The row proposed for insertion."""

    def on_conflict_do_update(
        self, *, index_elements: Any, set_: Any, where: Any
    ) -> sa.Insert:
        """`INSERT ... ON CONFLICT (index_elements) DO UPDATE SET ... WHERE ...`."""


def forward_only_upsert(
    statement: ConflictInsert, table: sa.Table, *, guard: str
) -> sa.Executable:
    """INSERT, or UPDATE the row of the same key when its `guard` is lower."""
    keys = {column.name for column in table.primary_key.columns}
    return statement.on_conflict_do_update(
        index_elements=sorted(keys),
        set_={
            c.name: statement.excluded[c.name]
            for c in table.columns
            if c.name not in keys
        },
        where=table.c[guard] < statement.excluded[guard],
    )


class Dialect(Database):
    """Portable statements are SQLAlchemy Core; these pieces are the dialect's own."""

    @abstractmethod
    def insert(self, table: sa.Table) -> ConflictInsert:
        """The dialect's INSERT into `table`, which can say what to do on conflict."""

    def upsert(self, table: sa.Table, *, guard: str) -> sa.Executable:
        """An INSERT of one row that UPDATEs the existing row when its `guard` is lower.

        A forward-only write: a row already at the same or a later version
        (by `guard`) is left as it is. Execute it with a list of rows (an
        executemany), so the statement is compiled once.
        """
        return forward_only_upsert(self.insert(table), table, guard=guard)

    async def upsert_rows(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        guard: str,
    ) -> None:
        """`upsert` for a batch of rows, in the caller's transaction.

        A backend with a faster bulk form (PostgreSQL: one statement over
        column arrays) overrides this; here it is one executemany.
        """
        if rows:
            await connection.execute(self.upsert(table, guard=guard), list(rows))

    @abstractmethod
    def clock(self) -> sa.ColumnElement[Any]:
        """The database's current time, as an SQL expression (UTC)."""

    @abstractmethod
    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        """A condition on `table`'s rows: written at or before `checkpoint` in log order."""

    @abstractmethod
    def label_value(
        self, column: sa.ColumnElement[Any], key: str
    ) -> sa.ColumnElement[Any]:
        """The text of label `key` in the JSON object in `column` (NULL without it)."""

    @abstractmethod
    def time_bucket(
        self, column: sa.ColumnElement[Any], unit: str
    ) -> sa.ColumnElement[Any]:
        """The UTC hour (`2026-12-04T07:00:00Z`) or day (`2026-12-04`) of a time, as text."""

    @abstractmethod
    def milliseconds_between(
        self, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any]:
        """`end - start` in milliseconds, as a float (NULL if either is)."""

    @abstractmethod
    def labels_match(
        self, column: sa.ColumnElement[Any], labels: Mapping[str, str]
    ) -> sa.ColumnElement[bool]:
        """A condition: the JSON object in `column` holds every pair of `labels`."""

    @abstractmethod
    async def percentiles(
        self,
        connection: AsyncConnection,
        source: sa.FromClause,
        *,
        group_by: Sequence[str],
        columns: Sequence[str],
        fractions: Sequence[float],
    ) -> dict[tuple[Any, ...], dict[str, list[float | None]]]:
        """Continuous percentiles (as PostgreSQL's percentile_cont) of columns per group.

        Returns:
            group value -> column -> one value per fraction (None without data).
        """
