"""The Backend interface: everything that differs between PostgreSQL and SQLite.

Portable SQL is written once with SQLAlchemy Core against `engine`; the log's
hot paths (append, stream and global reads) and the driver error
classification are methods here, implemented side by side in `postgres.py`
and `sqlite.py`. Nothing outside this package looks at the dialect.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, Protocol

from sqlalchemy import exc as sa_exc

from eventstore import errors
from eventstore.revisions import SCHEMA_HEAD, recorded_revision

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Callable,
        Iterator,
        Mapping,
        Sequence,
    )
    from datetime import datetime
    from uuid import UUID

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
    from eventstore.events.envelope import Checkpoint, NewEvent, RecordedEvent
    from eventstore.partitions import Partition


@dataclass(frozen=True, slots=True)
class LastStatusChange:
    """The last status-changing event of one execution stream (as of a moment)."""

    stream_id: UUID
    type: str
    version: int
    position: int
    occurred_at: datetime
    recorded_at: datetime


class RawEventRow(NamedTuple):
    """One row of the log as stored, its JSON texts unparsed: what the chain covers.

    Whole-log verification reads these instead of `RecordedEvent`: it needs
    no model, and a metadata text shared by many events is encoded once.
    """

    position: int
    stream_id: UUID
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: str
    metadata: str
    occurred_at: datetime
    recorded_at: datetime
    hash: bytes
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class AppendDecision:
    """What the database did with an append.

    Attributes:
        kind: ``appended``; ``duplicate`` (every event id was recorded before,
            with the same content: versions and positions are the originals);
            ``version_conflict`` (``actual`` holds the stream's version);
            ``id_conflict`` (an event id is recorded with other content or in
            another stream: ``event_id`` and ``reason`` say which and how).
    """

    kind: Literal["appended", "duplicate", "version_conflict", "id_conflict"]
    versions: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()
    actual: int = 0
    event_id: UUID | None = None
    reason: str = ""


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


class ShadowTables(ABC):
    """The DDL of a zero-downtime rebuild (ARCHITECTURE §5): build beside, then swap in.

    The shadow of table ``t`` is ``t_rebuild``, its indexes and constraints
    are named after ``t``'s with the same suffix; the swap gives the
    canonical names back and leaves the old table as ``t_retired`` (its
    indexes suffixed alike) until it is dropped.
    """

    SHADOW_SUFFIX = "_rebuild"
    RETIRED_SUFFIX = "_retired"

    def shadow_name(self, live: str) -> str:
        """The name of `live`'s shadow table."""
        return live + self.SHADOW_SUFFIX

    def retired_name(self, live: str) -> str:
        """The name the swap gives the table it replaces."""
        return live + self.RETIRED_SUFFIX

    @abstractmethod
    def lock(self, name: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Hold the lock that lets one rebuild of `name` run at a time.

        Yields whether it was taken (False: another rebuild holds it). The
        database frees it if this process dies.
        """

    @abstractmethod
    async def exists(self, connection: AsyncConnection, table: str) -> bool:
        """Whether the table exists."""

    @abstractmethod
    async def create(self, connection: AsyncConnection, live: str) -> None:
        """Create `live`'s shadow, empty: its columns, keys and foreign keys.

        Plain indexes are left for `finish`, after the bulk load.
        """

    @abstractmethod
    async def finish(self, connection: AsyncConnection, live: str) -> None:
        """Give the shadow `live`'s other indexes and fresh planner statistics."""

    @abstractmethod
    async def swap(
        self,
        connection: AsyncConnection,
        live: str,
        *,
        lock_timeout: float,
        attempts: int,
    ) -> None:
        """In the caller's transaction: put the shadow in `live`'s place.

        Renames the live table (and its indexes) to the retired names and
        the shadow (and its indexes) to the canonical ones; privileges and
        owner are carried over. Lock waits give up after `lock_timeout`
        seconds and are tried `attempts` times.

        Raises:
            DatabaseError: the locks were not had, or the shadow no longer
                has the live table's columns and indexes.
        """

    @abstractmethod
    async def drop(
        self,
        connection: AsyncConnection,
        table: str,
        *,
        lock_timeout: float,
        attempts: int,
    ) -> bool:
        """Drop a table if it exists; False if its locks were not had in time."""


class Listener(ABC):
    """A LISTEN for appends on a connection of its own, reconnecting until closed.

    Its callback runs on every notification and after every (re)connection,
    since appends made while it was not listening were never announced.
    """

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether it is listening now (False while it reconnects)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop listening and close its connection."""


class Backend(ABC):
    """One database: its engine, its log operations, its error classification."""

    def __init__(self, *, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine
        self._schema_ready = False

    async def ensure_schema(self) -> None:
        """Prove once that the database is migrated to the revision this code needs.

        Raises:
            SchemaNotMigrated: no schema, or another revision: run `eventstore migrate`.
        """
        if self._schema_ready:
            return
        async with self.connect_read() as connection:
            revision = await recorded_revision(connection)
        if revision != SCHEMA_HEAD:
            raise errors.SchemaNotMigrated(
                url=self.url, current=revision, head=SCHEMA_HEAD
            )
        self._schema_ready = True

    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:  # noqa: B027
        """Drop what this process remembers of streams the archive removed.

        A no-op unless the backend caches stream heads.
        """

    def forget_schema(self) -> None:
        """Check the schema again before the next operation (after a migration)."""
        self._schema_ready = False

    def shadow_tables(self) -> ShadowTables | None:
        """The shadow tables of a zero-downtime rebuild, if this database has them.

        None where readers and the projector cannot run beside a shadow
        build: the rebuild then replays in one transaction.
        """
        return None

    @property
    @abstractmethod
    def name(self) -> str:
        """``postgresql`` or ``sqlite``."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the pools and prove the database answers.

        Raises:
            DatabaseUnavailable: it does not.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""

    @abstractmethod
    async def listen(self, on_notify: Callable[[], None]) -> Listener | None:
        """Start calling `on_notify` when another connection appends, if the database can.

        Returns at once: the listener connects (and reconnects) in the
        background, calling `on_notify` after each connection too. Readers
        must poll as well: a notification is only a hint (ARCHITECTURE §4).

        Returns:
            The running listener, to close with the store; None when the
            database has no notifications (SQLite).
        """

    @abstractmethod
    async def append(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        stream_type: str,
        expected_version: int | None,
        guarded: bool = False,
    ) -> AppendDecision:
        """Append events atomically, chaining their hashes, or say why not.

        Idempotency is decided before the expected version: re-appending
        recorded event ids returns the original versions and positions.
        `guarded` appends hold the archive guard row in their transaction,
        which system streams need (the store's own records; migration 0006).

        Raises:
            InvalidTransition, ExecutionNotFound, ReferenceNotFound,
            StreamArchived, ValidationError: the log's append trigger
                refused an event; nothing was written.
        """

    @abstractmethod
    async def read_stream(
        self, stream_id: UUID, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events after `after_version`, in version order, as stored."""

    @abstractmethod
    async def read_all(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        partition: Partition | None = None,
    ) -> list[RecordedEvent]:
        """Up to `limit` events after `after` in global order, as stored.

        Gap-safe: an event not returned now never appears later before an
        event that was returned. With `partition` (of more than one), only
        the events of that partition's streams.
        """

    @abstractmethod
    async def read_stored(
        self, after: Checkpoint | None, *, limit: int
    ) -> list[RawEventRow]:
        """`read_all`'s rows as stored, unparsed (for verifying the whole log)."""

    @abstractmethod
    async def read_streams(self, stream_ids: Sequence[UUID]) -> list[RecordedEvent]:
        """Every event of the given streams, in position order, as stored."""

    @abstractmethod
    async def head_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the last event read_all would return now (None: empty)."""

    async def horizon_mark(self) -> int:
        """A mark of now for `horizon_reached` (0 where reads have no horizon)."""
        return 0

    async def horizon_reached(self, mark: int) -> bool:
        """Whether read_all now sees every event committed before `mark` was taken.

        Always, where commit order is position order (SQLite); on PostgreSQL
        once every transaction that was running at the mark has ended.
        """
        del mark
        return True

    @abstractmethod
    async def stream_heads(
        self, at: Checkpoint | None = None
    ) -> dict[UUID, tuple[int, bytes]]:
        """Each execution stream's last version and hash, at `at` (None: now).

        System streams are left out: they hold the anchors themselves.
        """

    @abstractmethod
    async def status_events(
        self, *, position: int | None = None, time: datetime | None = None
    ) -> list[LastStatusChange]:
        """Each execution stream's last status-changing event, as of a moment.

        One scan of the status-history index. The moment is a position
        (events at or before it) or a time (events recorded at or before
        it); neither: now.
        """

    @abstractmethod
    async def open_executions(self) -> list[LastStatusChange]:
        """The last status-changing event of every pending or running execution.

        Read from the log, not a projection, so it is exact however far the
        projectors lag: one scan of the status-history index.
        """

    @abstractmethod
    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        """How many events (of the partition) lie after `after`, and the oldest's recorded_at."""

    @abstractmethod
    def leader_locks(self) -> LeaderLocks:
        """A new set of slot locks for one projector process (ARCHITECTURE §4)."""

    @abstractmethod
    async def slot_holders(self, slots: Sequence[str]) -> dict[str, Holder]:
        """Who leads each slot now; slots without a leader are left out."""

    @abstractmethod
    def projection_write(
        self, projection: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction for a projector's work on `projection`.

        It enters the projection's gate first, the first lock of the one
        order (docs/PROJECTIONS.md, "Lock order"): then come the checkpoint
        rows, in key order, then the projection's tables.

        Raises:
            RebuildInProgress: a rebuild holds the projection; nothing was done.
        """

    @abstractmethod
    def rebuild_write(
        self, projection: str, *, lock_timeout: float, attempts: int
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction that holds `projection`'s gate until it ends.

        No projector work on the projection starts meanwhile
        (`projection_write` raises RebuildInProgress); work already in
        flight is waited for, each try at most `lock_timeout` seconds.

        Raises:
            DatabaseError: the gate was not had within `attempts` tries.
        """

    @abstractmethod
    async def rebuild_holders(self, projections: Sequence[str]) -> dict[str, Holder]:
        """Who holds (or is about to hold) each projection's gate for a rebuild.

        Projections no rebuild holds are left out.
        """

    @abstractmethod
    async def horizon_holder(self) -> HorizonHolder | None:
        """The oldest transaction in flight, which holds gap-safe reads back."""

    @abstractmethod
    async def checkpoint_at(self, position: int) -> Checkpoint:
        """The checkpoint of the event at `position`.

        Raises:
            ValidationError: no event has that position.
        """

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
    async def exclude_appends(self, connection: AsyncConnection) -> None:
        """Hold every append back until the caller's write transaction ends.

        The archive takes this before it removes streams: an append that read
        a removed stream's head before the removal committed must not land
        after it (an orphan event no chain leads to).
        """

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

    @abstractmethod
    def clock(self) -> sa.ColumnElement[Any]:
        """The database's current time, as an SQL expression (UTC)."""

    @abstractmethod
    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        """A condition on `table`'s rows: written at or before `checkpoint` in log order."""

    @abstractmethod
    async def percentiles(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        *,
        group_by: str,
        columns: Sequence[str],
        fractions: Sequence[float],
    ) -> dict[Any, dict[str, list[float | None]]]:
        """Continuous percentiles (as PostgreSQL's percentile_cont) of columns per group.

        Returns:
            group value -> column -> one value per fraction (None without data).
        """

    @abstractmethod
    def classify(self, exc: BaseException) -> errors.EventStoreError | None:
        """The store's error for a driver, SQLAlchemy or operating system error.

        Sorted by SQLSTATE, SQLite error code or exception class, never by
        message text: transient (`DatabaseUnavailable`, `DatabaseConflict`)
        or permanent (any other `DatabaseError`, `IntegrityError`,
        `SchemaNotMigrated`). None when `exc` is none of those, so a bug or
        a bad event is never dressed up as a database error.
        """

    @contextlib.asynccontextmanager
    async def translate_errors(self) -> AsyncIterator[None]:
        """Re-raise driver errors as the store's own (the one place that does).

        Any other exception (a bug, a projection that cannot apply an
        event) passes through unchanged.
        """
        try:
            yield
        except errors.EventStoreError:
            raise
        except Exception as exc:
            translated = self.classify(exc)
            if translated is None:
                raise
            raise translated from exc

    @contextlib.asynccontextmanager
    async def begin_write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction on the engine for portable Core statements."""
        async with self.translate_errors(), self.engine.begin() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def migration_connection(self) -> AsyncIterator[AsyncConnection]:
        """The connection alembic runs the revisions on.

        Here one write transaction for the whole upgrade; PostgreSQL gives
        alembic a connection outside any transaction instead, so revisions
        can build indexes concurrently (outside a transaction block).
        """
        async with self.begin_write() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def connect_read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection on the engine for portable Core statements."""
        async with self.translate_errors(), self.engine.connect() as connection:
            yield connection


# The SQLAlchemy errors that stand for the database or its connections (a
# DBAPIError wraps the driver's own error; the others come from the pool). The
# rest of SQLAlchemy's tree (InvalidRequestError, a StatementError wrapping a
# Python error raised while binding a value) means a bug, not a database fault.
SQLALCHEMY_DRIVER_ERRORS: Final = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def driver_causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: a DBAPIError's driver error, then each `__cause__`."""
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        if isinstance(seen, sa_exc.DBAPIError) and seen.orig is not None:
            seen = seen.orig
        else:
            seen = seen.__cause__


def generic_database_error(
    exc: BaseException, *, transient: bool = False
) -> errors.DatabaseError:
    """A DatabaseError for a driver error the backend does not sort further."""
    text = f"database error: {type(exc).__name__}: {exc}".strip().splitlines()[0]
    return errors.DatabaseError(text, transient=transient)


def stream_type_refused(
    stream_id: UUID, held: str, given: str
) -> errors.ValidationError:
    """The append guard's refusal of a row not of its stream's type (migration 0008)."""
    return errors.ValidationError(
        f"stream {stream_id} holds {held} events: it cannot take {given} events "
        "(a stream keeps the type of its first event)"
    )
