"""Applying a slot's batch, and finding the poison event when a batch fails.

A batch is applied in one transaction that first moves the slot's
checkpoint forward by compare-and-set. When it fails for an event's sake,
the batch is searched in rolled-back transactions for the first event that
fails alone; the events before it are applied, and the projection stops
there with a `ProjectionError` naming it (docs/PROJECTIONS.md, "Poison
events").
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from eventstore import errors
from eventstore.projecting import upcast_event
from eventstore.telemetry import TELEMETRY
from projections import checkpoints
from projections.read_ahead import ReadAhead

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventstore import Checkpoint, RecordedEvent
    from eventstore.projecting import ProjectionContext
    from eventstore.telemetry import Telemetry
    from projections.base import Projection
    from projections.slots import Slot


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one pass over the slots this process leads did."""

    events: int
    position: int | None
    caught_up: bool
    waiting: tuple[str, ...] = ()
    """The led slots (lock names) that wait for a rebuild of their projection."""


class BatchSizes:
    """How many events each slot reads next.

    A slot whose batch came back full is behind the log: its next batch is
    twice as large, up to GROWTH times the batch size (at most LIMIT
    events, unless the batch size is larger), and the batch size again once
    one comes back short. Catching up from far behind then takes a tenth of
    the transactions and reads; a projector keeping up reads as before.
    """

    GROWTH: Final = 10
    LIMIT: Final = 10_000

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self._largest = max(batch_size, min(batch_size * self.GROWTH, self.LIMIT))
        self._next: dict[str, int] = {}  # slot lock name -> its next batch size

    def of(self, slot: Slot) -> int:
        """The size of the slot's next batch."""
        return self._next.get(slot.lock_name, self._batch_size)

    def after_full(self, asked: int) -> int:
        """The size of the batch after one of `asked` events that came back full."""
        return min(asked * 2, self._largest)

    def note(self, slot: Slot, *, asked: int, got: int) -> None:
        """Note what the slot's last batch read: `got` events of the `asked`."""
        grown = self.after_full(asked) if got == asked else self._batch_size
        self._next[slot.lock_name] = grown


class BatchWriter:
    """Writes slots' batches for one projector, and finds poison events."""

    def __init__(self, backend: ProjectionContext) -> None:
        self._backend = backend
        self._reads = ReadAhead(backend)

    async def aclose(self) -> None:
        """Stop the reads begun ahead."""
        await self._reads.aclose()

    def keep_reads_of(self, led: Sequence[Slot]) -> None:
        """Drop what was read ahead for the slots this projector no longer leads."""
        self._reads.keep_only(led)

    async def apply_next(
        self, slot: Slot, start: Checkpoint, limit: int, *, next_limit: int
    ) -> BatchReport:
        """Read the slot's next batch after `start` and apply it; what it did.

        When the batch comes back full, the one after it (`next_limit`
        events) is read while this one is applied.

        Raises:
            RebuildInProgress: a rebuild holds the projection; nothing applied.
            ProjectionError: an event fails; the ones before it are applied.
        """
        projection = slot.projection
        stored = await self._reads.read(slot, start, limit)
        if len(stored) == limit:
            self._reads.start(slot, stored[-1].checkpoint, next_limit)
        events = [upcast_for(projection, event) for event in stored]
        telemetry = (
            TELEMETRY if TELEMETRY is not None and TELEMETRY.metering() else None
        )
        if not events:
            if telemetry is not None:
                telemetry.lag(str(slot), 0, 0.0)
            return BatchReport(events=0, position=None, caught_up=True)
        try:
            await self.commit(slot, start, events)
        except errors.CheckpointConflict:
            # Another projector applied this batch; go on from where it is.
            return BatchReport(events=0, position=None, caught_up=False)
        except errors.RebuildInProgress:
            raise  # the slot waits (the projector); no event is to blame
        except errors.ProjectionError as exc:
            # The projection named the event itself: apply what precedes it.
            await self.commit_before(slot, start, events, exc.event_id)
            raise
        except Exception as exc:
            if blames_no_event(exc):
                raise
            # A bug in a projection or a permanent database error: find the
            # event to blame, apply what comes before it, and stop there.
            await self.stop_at_poison(slot, start, events, exc)
            raise
        caught_up = len(events) < limit
        if telemetry is not None:
            await self._note_lag(telemetry, slot, events[-1], caught_up=caught_up)
        return BatchReport(
            events=len(events), position=events[-1].position, caught_up=caught_up
        )

    async def _note_lag(
        self,
        telemetry: Telemetry,
        slot: Slot,
        last: RecordedEvent,
        *,
        caught_up: bool,
    ) -> None:
        """The slot's lag gauges: positions to the log's head, and the age of what it folded last."""
        if caught_up:
            telemetry.lag(str(slot), 0, 0.0)
            return
        head = await self._backend.head_checkpoint()
        behind = 0 if head is None else max(0, head.position - last.position)
        age = (datetime.now(UTC) - last.recorded_at).total_seconds()
        telemetry.lag(str(slot), behind, max(0.0, age))

    async def commit(
        self, slot: Slot, start: Checkpoint, events: Sequence[RecordedEvent]
    ) -> None:
        """Apply events and move the slot's checkpoint past them, in one transaction."""
        async with self._backend.projection_write(slot.projection.name) as connection:
            await checkpoints.advance(
                connection,
                slot.projection.name,
                expected=start,
                new=events[-1].checkpoint,
                partition=slot.partition.index,
            )
            await slot.projection.apply(connection, events)

    async def stop_at_poison(
        self,
        slot: Slot,
        start: Checkpoint,
        events: Sequence[RecordedEvent],
        failure: Exception,
    ) -> None:
        """Raise ProjectionError for the first event of a failed batch that fails alone.

        The batch is tried again in pieces, in transactions that are rolled
        back: first in runs of about sqrt(n) events, then event by event in
        the run that failed, so a batch of n events costs about 2 sqrt(n)
        applies. The events before the culprit are then applied for good, so
        the checkpoint stops right before it. Returns (the caller re-raises
        `failure`) when no event fails alone: the failure did not depend on
        the batch.

        Raises:
            ProjectionError: naming the projection, the event's position and id.
            DatabaseError: a transient error while searching (retried by `run`).
        """
        step = max(1, math.isqrt(len(events)))
        runs = [events[i : i + step] for i in range(0, len(events), step)]
        found = await self._first_failing(slot.projection, [], runs)
        if found is None:
            return
        index, _ = found
        before = [event for run in runs[:index] for event in run]
        found = await self._first_failing(
            slot.projection, before, [[event] for event in runs[index]]
        )
        if found is None:
            return
        offset, cause = found
        culprit = runs[index][offset]
        await self.commit_before(slot, start, events, culprit.event_id)
        raise errors.ProjectionError(
            projection=slot.projection.name,
            position=culprit.position,
            event_id=culprit.event_id,
            reason=_reason(cause),
        ) from failure

    async def commit_before(
        self,
        slot: Slot,
        start: Checkpoint,
        events: Sequence[RecordedEvent],
        culprit: UUID,
    ) -> None:
        """Apply the events of a batch that precede the culprit, if any.

        The slot's checkpoint then stands right before the poison event, so
        the projection is exact up to it whatever the batch size.
        """
        before = next(
            (events[:i] for i, event in enumerate(events) if event.event_id == culprit),
            None,
        )
        if before:
            # Another projector may have applied them first: it stops alike.
            with contextlib.suppress(errors.CheckpointConflict):
                await self.commit(slot, start, before)

    async def _first_failing(
        self,
        projection: Projection,
        applied: Sequence[RecordedEvent],
        pieces: Sequence[Sequence[RecordedEvent]],
    ) -> tuple[int, Exception] | None:
        """Which piece fails first when applied in turn after `applied`; all rolled back."""
        backend = self._backend
        try:
            async with backend.projection_write(projection.name) as connection:
                if applied:
                    await projection.apply(connection, applied)
                for index, piece in enumerate(pieces):
                    try:
                        async with backend.translate_errors():
                            await projection.apply(connection, piece)
                    except Exception as exc:
                        if blames_no_event(exc):
                            raise
                        raise _Found(index, exc) from exc
                raise _Found(None, None)  # nothing failed: roll it all back
        except _Found as found:
            if found.index is None or found.cause is None:
                return None
            return found.index, found.cause


def blames_no_event(exc: Exception) -> bool:
    """Whether a failure lies with the database, whatever events were applied.

    A transient error is retried; a schema that is not (or no longer) the
    one this code needs, or a login the server refuses, stops the projector
    as it is. Anything else a batch raises may be an event's doing.
    """
    return isinstance(exc, errors.DatabaseError) and (
        exc.transient
        or isinstance(exc, errors.SchemaNotMigrated | errors.DatabaseUnavailable)
    )


class _Found(Exception):
    """Ends a search's transaction (rolling it back) carrying what it found."""

    def __init__(self, index: int | None, cause: Exception | None) -> None:
        super().__init__(index)
        self.index = index
        self.cause = cause


def _reason(exc: Exception) -> str:
    """One line for why an event could not be applied."""
    if isinstance(exc, errors.EventStoreError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return (text.strip() or type(exc).__name__).splitlines()[0]


def upcast_for(projection: Projection, event: RecordedEvent) -> RecordedEvent:
    """The event as the projection reads it; one that cannot be upcast is poison."""
    try:
        return upcast_event(event)
    except errors.ValidationError as exc:
        raise errors.ProjectionError(
            projection=projection.name,
            position=event.position,
            event_id=event.event_id,
            reason=str(exc),
        ) from exc
