"""The log's semantics over a backend: append results and errors, upcasting on read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID

import sqlalchemy as sa

from eventstore import errors, schema
from eventstore.arguments import (
    BATCH_MAX,
    INT32_MAX,
    INT64_MAX,
    ORDER_KEY_MAX,
    checked_int,
)
from eventstore.events.checkpoint import Checkpoint
from eventstore.events.envelope import NewEvent, RecordedEvent
from eventstore.events.upcasting import upcast
from eventstore.telemetry import TELEMETRY, clock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from eventstore.backends.base import Backend
    from eventstore.partitions import Partition

STREAM_TYPE_PATTERN: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
DEFAULT_BATCH: Final = 500
SYSTEM_STREAM_TYPE: Final = "system"


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed.

    Attributes:
        version: the stream's version after the append (its last event's).
        positions: the global positions of the appended events, in order.
        duplicate: every event was recorded before (an idempotent re-append);
            version and positions are the original ones.
    """

    version: int
    positions: tuple[int, ...]
    duplicate: bool = field(default=False, compare=False)


def as_stream_id(value: UUID | str) -> UUID:
    """A stream id from a UUID or its text.

    Raises:
        ValidationError: the text is not a UUID.
    """
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError as exc:
        raise errors.ValidationError(
            f"invalid id {value!r}: a UUID is required"
        ) from exc


def upcast_event(event: RecordedEvent) -> RecordedEvent:
    """The event with its data lifted to the current schema version."""
    version, data = upcast(event.type, event.schema_version, event.data)
    if version == event.schema_version:
        return event
    return event.model_copy(update={"schema_version": version, "data": data})


class EventLog:
    """Append and read: validation, outcomes and upcasting around the backend."""

    def __init__(self, backend: Backend, *, on_append: Callable[[], None]) -> None:
        self._backend = backend
        self._on_append = on_append

    async def append(
        self,
        stream_id: UUID | str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        stream_type: str = "execution",
    ) -> AppendResult:
        """Append events to one stream atomically.

        Raises:
            ValidationError: no events, an event that is not a NewEvent, a
                repeated event id, a bad expected version or stream type
                (``system`` streams are the store's own: see append_system).
            IdempotencyConflict: an event id is recorded with other content.
            ConcurrencyError: the stream is not at `expected_version`.
            InvalidTransition: an execution event the lifecycle does not
                allow there (the database checks every writer).
            ExecutionNotFound: an execution event for a stream that was
                never created.
            ReferenceNotFound: an ExecutionCreated naming a message, thread
                or graph that does not exist.
            StreamArchived: a new stream under the id of an archived one.
        """
        if stream_type == SYSTEM_STREAM_TYPE:
            raise errors.ValidationError(
                "system streams are the store's own records (archive receipts, "
                "chain anchors): they cannot be written through append"
            )
        return await self._append(
            stream_id,
            events,
            expected_version=expected_version,
            stream_type=stream_type,
        )

    async def append_system(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
    ) -> AppendResult:
        """Append to one of the store's own system streams (anchors).

        The append holds the archive guard row, which only the archivist
        role may write on PostgreSQL (docs/ROLES.md).
        """
        return await self._append(
            stream_id,
            events,
            expected_version=expected_version,
            stream_type=SYSTEM_STREAM_TYPE,
            guarded=True,
        )

    async def _append(
        self,
        stream_id: UUID | str,
        events: Sequence[NewEvent],
        *,
        expected_version: int | None,
        stream_type: str,
        guarded: bool = False,
    ) -> AppendResult:
        stream = as_stream_id(stream_id)
        batch = list(events)
        if not batch:
            raise errors.ValidationError("nothing to append: events is empty")
        if not all(isinstance(event, NewEvent) for event in batch):
            raise errors.ValidationError("events must be NewEvent instances")
        if len({event.event_id for event in batch}) != len(batch):
            raise errors.ValidationError("an event id appears twice in one append")
        if expected_version is not None:
            checked_int("expected_version", expected_version, low=0, high=INT32_MAX)
        if not isinstance(stream_type, str) or not STREAM_TYPE_PATTERN.match(
            stream_type
        ):
            raise errors.ValidationError(f"invalid stream type {stream_type!r}")
        await self._backend.ensure_schema()
        # None unless an SDK collects the metrics (eventstore/telemetry.py).
        telemetry = (
            TELEMETRY if TELEMETRY is not None and TELEMETRY.metering() else None
        )
        started = clock() if telemetry is not None else 0.0
        outcome = await self._backend.append(
            stream,
            batch,
            stream_type=stream_type,
            expected_version=expected_version,
            guarded=guarded,
        )
        if outcome.kind == "version_conflict":
            raise errors.ConcurrencyError(
                stream_id=stream, expected=expected_version, actual=outcome.actual
            )
        if outcome.kind == "id_conflict":
            assert outcome.event_id is not None  # noqa: S101 - the backend sets it
            raise errors.IdempotencyConflict(
                event_id=outcome.event_id, stream_id=stream, reason=outcome.reason
            )
        if outcome.kind == "appended":
            self._on_append()
            if telemetry is not None:
                telemetry.appended([event.type for event in batch], clock() - started)
        return AppendResult(
            version=max(outcome.versions),
            positions=outcome.positions,
            duplicate=outcome.kind == "duplicate",
        )

    async def read_stream(
        self, stream_id: UUID | str, *, after_version: int = 0
    ) -> list[RecordedEvent]:
        """Every event of a stream after `after_version`, in version order."""
        stream = as_stream_id(stream_id)
        checked_int("after_version", after_version, low=0, high=INT32_MAX)
        await self._backend.ensure_schema()
        events = await self._backend.read_stream_as_stored(
            stream, after_version=after_version
        )
        return [upcast_event(event) for event in events]

    async def read_batch(
        self,
        after: Checkpoint | None,
        *,
        limit: int = DEFAULT_BATCH,
        partition: Partition | None = None,
    ) -> list[RecordedEvent]:
        """One gap-safe batch of the global log (or of a partition) after a checkpoint."""
        await self._backend.ensure_schema()
        events = await self._backend.read_all_as_stored(
            after, limit=limit, partition=partition
        )
        return [upcast_event(event) for event in events]

    async def resolve_after(
        self, after: Checkpoint | tuple[int, int] | int | None
    ) -> Checkpoint | None:
        """A checkpoint from what callers may pass: a checkpoint, a position, None.

        Raises:
            ValidationError: not one of those, or a position with no event.
        """
        if after is None:
            return None
        if isinstance(after, bool):
            raise errors.ValidationError("after must be a checkpoint or a position")
        if isinstance(after, int):
            checked_int("after", after, low=-INT64_MAX, high=INT64_MAX)
            if after <= 0:
                return None
            await self._backend.ensure_schema()
            return await self._backend.checkpoint_at(after)
        if isinstance(after, tuple) and len(after) == 2:
            transaction_id, position = after
            return Checkpoint(
                checked_int(
                    "after's transaction id", transaction_id, low=0, high=ORDER_KEY_MAX
                ),
                checked_int("after's position", position, low=0, high=INT64_MAX),
            )
        raise errors.ValidationError(
            f"after must be a checkpoint or a position, not {after!r}"
        )

    async def count_events(self) -> int:
        """How many events the log holds."""
        await self._backend.ensure_schema()
        async with self._backend.connect_read() as connection:
            count = await connection.scalar(
                sa.select(sa.func.count()).select_from(schema.execution_events)
            )
        return int(count or 0)

    async def iterate_all(
        self, after: Checkpoint | None, *, batch_size: int = DEFAULT_BATCH
    ) -> AsyncIterator[RecordedEvent]:
        """The global log from `after` to the current head, batch by batch.

        Raises:
            ValidationError: a batch size that is not from 1 to BATCH_MAX.
        """
        checked_int("batch_size", batch_size, low=1, high=BATCH_MAX)
        while True:
            batch = await self.read_batch(after, limit=batch_size)
            for event in batch:
                yield event
            if len(batch) < batch_size:
                return
            after = batch[-1].checkpoint


def just_recorded(
    stream_id: UUID, events: Sequence[NewEvent], result: AppendResult
) -> list[RecordedEvent]:
    """The events of an append as a reader will see them, without reading them back.

    Only the database's own fields are missing (recorded_at is the local
    clock, no transaction id, no hash): enough for the fold, which reads
    type, data, occurred_at, version and position. The data is as parsed
    back from its stored (canonical) text (`NewEvent.data_as_read`), so
    numbers have exactly the values a later read gives.
    """
    first_version = result.version - len(events) + 1
    return [
        RecordedEvent.from_log(
            position=position,
            stream_id=stream_id,
            version=first_version + offset,
            stream_type="execution",
            event_id=event.event_id,
            event_type=event.type,
            schema_version=event.schema_version,
            data=event.data_as_read(),
            metadata=event.metadata,
            occurred_at=event.occurred_at,
            recorded_at=datetime.now(UTC),
            transaction_id=None,
            chain_hash=b"",
        )
        for offset, (event, position) in enumerate(
            zip(events, result.positions, strict=True)
        )
    ]
