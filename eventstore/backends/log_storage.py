"""The log's storage: appends, and reads as stored (never upcast; eventstore/log.py upcasts)."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from eventstore.backends.database import Database

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.listening import Listener
    from eventstore.backends.rows import AppendDecision, RawRow
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.events.envelope import NewEvent, RecordedEvent
    from eventstore.partitions import Partition


class LogStorage(Database):
    """Append to and read the log: its hot paths, written once per database."""

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
    async def append_in(
        self,
        connection: AsyncConnection,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        stream_type: str,
        expected_version: int | None,
    ) -> AppendDecision:
        """`append` inside the caller's write transaction, decided in the database.

        For the store's own records written with other changes (the archive's
        receipt): the events commit or roll back with the transaction. A
        concurrent append that takes the same version makes the unique key
        refuse this one, and the caller's transaction fails with it.
        """

    @abstractmethod
    async def read_stream_as_stored(
        self, stream_id: UUID, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events after `after_version`, in version order, as stored."""

    @abstractmethod
    async def read_all_as_stored(
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
    async def read_rows_as_stored(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        until: Checkpoint | None = None,
    ) -> Sequence[RawRow]:
        """`read_all_as_stored`'s rows, unparsed (for verifying the whole log).

        Only up to `until` (inclusive) when given: one run of `log_splits`.
        """

    @abstractmethod
    async def read_streams_as_stored(
        self, stream_ids: Sequence[UUID]
    ) -> list[RecordedEvent]:
        """Every event of the given streams, in position order, as stored."""

    @abstractmethod
    async def head_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the last event read_all_as_stored would return now (None: empty)."""

    @abstractmethod
    async def checkpoint_at(self, position: int) -> Checkpoint:
        """The checkpoint of the event at `position`.

        Raises:
            ValidationError: no event has that position.
        """

    async def horizon_mark(self) -> int:
        """A mark of now for `horizon_reached` (0 where reads have no horizon)."""
        return 0

    async def horizon_reached(self, mark: int) -> bool:
        """Whether read_all_as_stored now sees every event committed before `mark` was taken.

        Always, where commit order is position order (SQLite); on PostgreSQL
        once every transaction that was running at the mark has ended.
        """
        del mark
        return True

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
    async def exclude_appends(self, connection: AsyncConnection) -> None:
        """Hold every append back until the caller's write transaction ends.

        The archive takes this before it removes streams: an append that read
        a removed stream's head before the removal committed must not land
        after it (an orphan event no chain leads to).
        """

    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:
        """Drop what this process remembers of streams the archive removed.

        A no-op unless the backend caches stream heads.
        """
