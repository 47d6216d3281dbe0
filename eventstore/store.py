"""EventStore: open a database, migrate it, append, read, subscribe, run executions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from eventstore.arguments import BATCH_MAX, checked_int
from eventstore.audit import Audit
from eventstore.backends import backend_for
from eventstore.executions import ExecutionService
from eventstore.id_prefixes import expand_execution_id
from eventstore.log import DEFAULT_BATCH, AppendResult, EventLog, as_stream_id
from eventstore.migrating import current_revision, run_migration
from eventstore.references import Graphs, Messages, Threads
from eventstore.settings import StoreSettings
from eventstore.subscriptions import Subscription
from eventstore.wakeups import Wakeups

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection, Generator, Sequence
    from types import TracebackType
    from uuid import UUID

    from eventstore.backends.base import Backend
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.events.envelope import NewEvent, RecordedEvent
    from eventstore.projecting import ProjectionContext


class EventStore:
    """The execution event store on one database.

    Open it with ``store = await EventStore.open(url)`` or
    ``async with EventStore.open(url) as store``; `open` never migrates.
    """

    def __init__(self, backend: Backend, settings: StoreSettings) -> None:
        self._backend = backend
        self._settings = settings
        self._wakeups = Wakeups(backend)
        self.log = EventLog(backend, on_append=self._wakeups.notify)
        self.audit = Audit(self)
        self.threads = Threads(backend)
        self.messages = Messages(backend)
        self.graphs = Graphs(backend)
        self.executions = ExecutionService(
            log=self.log,
            backend=backend,
            messages=self.messages,
            graphs=self.graphs,
            retries=settings.command_retries,
            poll_interval=settings.poll_interval,
            wakeups=self._wakeups,
        )

    @classmethod
    def open(
        cls, url: str | None = None, *, settings: StoreSettings | None = None
    ) -> _Opening:
        """Connect to a database: `url`, else $EVENTSTORE_URL, else the SQLite file.

        Await the result, or use it as an async context manager (which closes
        the store on exit).

        Raises:
            ConfigurationError: the URL is malformed or names another database.
            DatabaseUnavailable: the database cannot be reached.
        """
        return _Opening(cls, url, settings or StoreSettings.from_environment())

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._backend.url

    @property
    def wakeups(self) -> Wakeups:
        """What live readers wait on: this store's appends and, on PostgreSQL, anyone's."""
        return self._wakeups

    @property
    def backend(self) -> Backend:
        """The database backend: the store's insides, for its own tests and tools."""
        return self._backend

    @property
    def projection_context(self) -> ProjectionContext:
        """What projections may ask of this store's database (`eventstore.projecting`)."""
        return self._backend

    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:
        """Drop this process's remembered heads and states of archived streams."""
        self._backend.forget_streams(stream_ids)
        self.executions.forget(stream_ids)

    @property
    def settings(self) -> StoreSettings:
        """The settings the store was opened with."""
        return self._settings

    async def aclose(self) -> None:
        """Close every connection."""
        try:
            await self._wakeups.aclose()
        finally:
            await self._backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema (alembic upgrade), a transaction per revision.

        Raises:
            DatabaseUnavailable: the database cannot be reached.
        """
        await run_migration(self._backend, direction="upgrade", revision=revision)
        self._backend.forget_schema()

    async def expand_id(self, text: str) -> UUID:
        """An execution id from a whole id or a unique prefix of 8+ hex digits (`8fc36c07`).

        Raises:
            ValidationError: not an id or prefix, or a prefix of no execution
                or of several.
        """
        return await expand_execution_id(self._backend, text)

    async def schema_revision(self) -> str | None:
        """The database's schema revision, None before the first migration."""
        return await current_revision(self._backend)

    async def append(
        self,
        stream_id: UUID | str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        stream_type: str = "execution",
    ) -> AppendResult:
        """Append events to a stream in one transaction.

        Args:
            stream_id: the stream (an execution's id).
            events: NewEvent instances, appended atomically in order.
            expected_version: 0 for a new stream, the current version to
                guard against concurrent writers, None for any.
            stream_type: ``execution`` (the default: lifecycle events in
                the order of ARCHITECTURE §3, checked by the database) or a type of
                your own; ``system`` streams are the store's own records.

        Returns:
            The stream's new version and the events' positions. Re-appending
            event ids already recorded returns the original result (checked
            before `expected_version`).

        Raises:
            ConcurrencyError: the stream is not at `expected_version`.
            IdempotencyConflict: an event id is recorded with other content.
            ValidationError: malformed input, or a system stream; nothing
                is written.
            InvalidTransition: an execution event the lifecycle does not allow.
            ExecutionNotFound: an execution event for a stream never created.
            ReferenceNotFound: ExecutionCreated names no existing message or graph.
            StreamArchived: a new stream under an archived stream's id.
        """
        return await self.log.append(
            stream_id,
            events,
            expected_version=expected_version,
            stream_type=stream_type,
        )

    async def read_stream(
        self, stream_id: UUID | str, *, after_version: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        """The events of one stream in version order (empty for an unknown stream)."""
        for event in await self.log.read_stream(stream_id, after_version=after_version):
            yield event

    async def read_all(
        self,
        after: Checkpoint | tuple[int, int] | int | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
    ) -> AsyncIterator[RecordedEvent]:
        """Every event in global order, up to the current head; gap-safe.

        Args:
            after: None for the start, or an event's `checkpoint` to resume
                after it (a bare position is looked up).
            batch_size: events per query, 1 to 100,000.

        Raises:
            ValidationError: a bad `after` or `batch_size`.
        """
        checked_int("batch_size", batch_size, low=1, high=BATCH_MAX)
        resolved = await self.log.resolve_after(after)
        async for event in self.log.iterate_all(resolved, batch_size=batch_size):
            yield event

    def subscribe(
        self,
        after: Checkpoint | tuple[int, int] | int | None = None,
        *,
        stream_id: UUID | str | None = None,
        types: Collection[str] | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> Subscription:
        """Catch up from `after`, then follow new events until closed.

        Args:
            after: None for the start, an event's `checkpoint`, or a position.
            stream_id: only this stream's events.
            types: only events of these type names.
            batch_size: events per query.

        Returns:
            A Subscription: ``async for event in store.subscribe(): ...``,
            closed by ``aclose()`` or by leaving ``async with``.
        """
        return Subscription(
            log=self.log,
            wakeups=self._wakeups,
            after=after,
            stream_id=as_stream_id(stream_id) if stream_id is not None else None,
            types=types,
            poll_interval=self._settings.poll_interval,
            batch_size=batch_size,
        )

    async def _connect(self) -> None:
        await self._backend.connect()


class _Opening:
    """What `EventStore.open` returns: awaitable, and an async context manager."""

    def __init__(
        self, store_class: type[EventStore], url: str | None, settings: StoreSettings
    ) -> None:
        self._store_class = store_class
        self._url = url
        self._settings = settings
        self._store: EventStore | None = None

    async def _open(self) -> EventStore:
        url = self._url or self._settings.resolved_url()
        store = self._store_class(backend_for(url, self._settings), self._settings)
        try:
            await store._connect()
        except BaseException:
            await store.aclose()
            raise
        return store

    def __await__(self) -> Generator[object, None, EventStore]:
        return self._open().__await__()

    async def __aenter__(self) -> EventStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.aclose()
