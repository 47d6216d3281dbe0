"""The seam between the store and the read models folded from its log (ARCHITECTURE §5).

`projections/` (the executions projection, its projector, rebuild, verify
and queries) and any projection a user writes see the store through this
module: `ProjectionContext`, what they may ask of the database
(`store.projection_context`), and the few helpers and types they share
with the core. Nothing else of the core's insides is theirs to import;
the import-graph test holds both packages to that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from eventstore.arguments import checked_moment
from eventstore.backends.database_fold import ExecutionsFold, FoldedStreams
from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
from eventstore.backends.shadow import Reference, ShadowTables
from eventstore.labels import checked_labels
from eventstore.log import upcast_event
from eventstore.partitions import WHOLE_LOG, Partition
from eventstore.subscriptions import RECHECK_MIN
from eventstore.trusted import construct

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.events.checkpoint import Checkpoint
    from eventstore.events.envelope import RecordedEvent

__all__ = [
    "RECHECK_MIN",
    "WHOLE_LOG",
    "ExecutionsFold",
    "FoldedStreams",
    "Holder",
    "HorizonHolder",
    "LeaderLocks",
    "Partition",
    "ProjectionContext",
    "Reference",
    "ShadowTables",
    "checked_labels",
    "checked_moment",
    "construct",
    "upcast_event",
]


class ProjectionContext(Protocol):
    """What a projection, its projector and its rebuild may ask of the database.

    Every backend provides it (`store.projection_context`); the methods are
    documented where the backends declare them, in `eventstore.backends`
    (`Database`, `LogStorage`, `ProjectionSupport`, `Dialect`).
    """

    # Connections and errors.
    async def ensure_schema(self) -> None:
        """Raise SchemaNotMigrated unless the database is at this code's revision."""

    def translate_errors(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Re-raise driver errors inside the block as the store's own."""

    def connect_read(
        self,
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A read-only connection."""

    def begin_write(
        self,
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A plain write transaction (no projection gate)."""

    # The log, read gap-safe in global order.
    async def read_all_as_stored(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        partition: Partition | None = None,
    ) -> list[RecordedEvent]:
        """Up to `limit` events after `after` in global order, gap-safe, not upcast."""

    async def head_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the last event a read would return now (None: empty)."""

    async def checkpoint_at(self, position: int) -> Checkpoint:
        """The checkpoint of the event at `position` (ValidationError: none)."""

    async def horizon_mark(self) -> int:
        """A mark of now for `horizon_reached`."""

    async def horizon_reached(self, mark: int) -> bool:
        """Whether reads now see every event committed before `mark` was taken."""

    # Projector work: the gate, leaders, lag, rebuilds.
    def projection_write(
        self, projection: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction inside `projection`'s gate (RebuildInProgress: no)."""

    def rebuild_write(
        self, projection: str, *, lock_timeout: float, attempts: int
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction holding `projection`'s gate for a rebuild."""

    def leader_locks(self) -> LeaderLocks:
        """A new set of slot locks for one projector process."""

    async def slot_holders(self, slots: Sequence[str]) -> dict[str, Holder]:
        """Who leads each slot now; slots without a leader are left out."""

    async def rebuild_holders(self, projections: Sequence[str]) -> dict[str, Holder]:
        """Who holds each projection's gate for a rebuild; free ones are left out."""

    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        """How many events (of the partition) lie after `after`, and the oldest's time."""

    async def horizon_holder(self) -> HorizonHolder | None:
        """The oldest transaction in flight, which holds gap-safe reads back."""

    def shadow_tables(self) -> ShadowTables | None:
        """The shadow tables of a zero-downtime rebuild; None where there are none."""

    def executions_fold(self) -> ExecutionsFold | None:
        """The executions fold the database runs itself; None where it runs none."""

    # SQL that differs between the databases.
    async def upsert_rows(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        guard: str,
    ) -> None:
        """Insert or move forward (by the `guard` column) rows, in the caller's transaction."""

    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        """A condition on `table`'s rows: written at or before `checkpoint`."""

    def label_value(
        self, column: sa.ColumnElement[Any], key: str
    ) -> sa.ColumnElement[Any]:
        """The text of label `key` in the JSON object in `column` (NULL without it)."""

    def time_bucket(
        self, column: sa.ColumnElement[Any], unit: str
    ) -> sa.ColumnElement[Any]:
        """The UTC hour or day of a time, as text."""

    def milliseconds_between(
        self, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any]:
        """`end - start` in milliseconds, as a float (NULL if either is)."""

    def labels_match(
        self, column: sa.ColumnElement[Any], labels: Mapping[str, str]
    ) -> sa.ColumnElement[bool]:
        """A condition: the JSON object in `column` holds every pair of `labels`."""

    async def percentiles(
        self,
        connection: AsyncConnection,
        source: sa.FromClause,
        *,
        group_by: Sequence[str],
        columns: Sequence[str],
        fractions: Sequence[float],
    ) -> dict[tuple[Any, ...], dict[str, list[float | None]]]:
        """Continuous percentiles of `columns` per `group_by` value."""
