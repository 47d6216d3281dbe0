"""The projector: folds the log into read models, batch by batch, exactly once.

Work is split into slots: each projection, or each partition of it
(``hash(stream_id) mod N``, DESIGN §7), with its own checkpoint and leader.
A process leads the slots whose lock it holds and applies their batches:
each is read gap-safe after the slot's checkpoint, then applied in one
transaction that first moves the checkpoint forward by compare-and-set. A
crash leaves the whole batch or none of it, and a batch two processes race
for is applied once (DESIGN §4). Processes share the slots evenly: each
leads at most its fair share, and takes over slots whose leader died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Self

import sqlalchemy as sa

from eventstore import errors
from eventstore.log import upcast_event
from eventstore.schema import execution_events
from projections import checkpoints, slots
from projections.executions import ExecutionsProjection

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore import Checkpoint, EventStore, RecordedEvent
    from eventstore.backends.leadership import LeaderLocks
    from projections.base import Projection
    from projections.slots import Slot

DEFAULT_BATCH: Final = 1000
WAIT_POLL: Final = 0.05
MAX_RETRY_DELAY: Final = 10.0
logger: Final = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one pass over the slots this process leads did."""

    events: int
    position: int | None
    caught_up: bool


class Projector:
    """Runs projections over the log of one store."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        poll_interval: float = 0.5,
        partitions: int = 1,
    ) -> None:
        """Run `projections` (default: the executions projection) split `partitions` ways.

        Raises:
            ValidationError: partitions below 1.
        """
        if partitions < 1:
            raise errors.ValidationError(f"invalid partitions {partitions}: 1 or more")
        self._store = store
        self._projections: list[Projection] = (
            list(projections)
            if projections is not None
            else [ExecutionsProjection(store.backend)]
        )
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._partitions = partitions
        self._slots = slots.slots_of(self._projections, partitions)
        self._locks: LeaderLocks | None = None
        self._led: list[Slot] = []
        self._ready = False

    @property
    def projections(self) -> list[Projection]:
        """The projections this projector runs."""
        return list(self._projections)

    @property
    def led(self) -> list[str]:
        """The slots this process leads now (their lock names)."""
        return [slot.lock_name for slot in self._led]

    async def run_once(self) -> BatchReport:
        """Apply at most one batch to each slot this process leads.

        Returns:
            How many events were applied, the last position reached, and
            whether every led slot is caught up.

        Raises:
            ProjectionError: a projection cannot apply an event (a poison
                event): nothing of that batch was applied.
        """
        await self._prepare()
        await self._share()
        reports = [await self._apply_batch(slot) for slot in self._led]
        positions = [r.position for r in reports if r.position is not None]
        return BatchReport(
            events=sum(r.events for r in reports),
            position=max(positions) if positions else None,
            caught_up=all(r.caught_up for r in reports),
        )

    async def run_until_caught_up(
        self, *, on_batch: Callable[[BatchReport], None] | None = None
    ) -> int:
        """Apply batches until every slot has folded the log; return how many this process applied.

        Slots led by other processes are waited for, not taken over.
        """
        total = 0
        # "Caught up" means every event committed before this call is folded:
        # a short batch proves it only once the read horizon has passed the
        # transactions running now (on PostgreSQL, any long transaction on
        # the server holds it back).
        backend = self._store.backend
        mark = await backend.horizon_mark()
        try:
            while True:
                settled = await backend.horizon_reached(mark)
                report = await self.run_once()
                total += report.events
                if report.caught_up and settled and await self._others_caught_up():
                    return total
                if on_batch is not None and report.events:
                    on_batch(report)
                if report.caught_up:
                    await asyncio.sleep(WAIT_POLL)
        finally:
            await self.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Run as a daemon until `stop` is set; the batch in hand is finished first.

        A lost connection (a restarted or unreachable server, a terminated
        backend) is waited out with backoff: the batch in flight rolled back,
        so the projector resumes at its checkpoint. A poison event ends it.

        Raises:
            ProjectionError: a projection cannot apply an event.
        """
        delay = self._poll_interval
        try:
            while not stop.is_set():
                # Taken before the read: an append committed during it wakes the wait.
                seen = self._store.wakeups.generation
                try:
                    report = await self.run_once()
                except errors.SchemaNotMigrated:
                    raise
                except errors.DatabaseError as exc:
                    logger.warning("projector: %s; retrying in %.1f s", exc, delay)
                    await self._drop_locks()
                    await self._pause(stop, delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    continue
                delay = self._poll_interval
                if report.caught_up:
                    # Woken by appends (LISTEN/NOTIFY on PostgreSQL); the
                    # timeout is the poll that covers a missed notification.
                    await self._store.wakeups.wait(seen, self._poll_interval, stop=stop)
        finally:
            await self.aclose()

    @staticmethod
    async def _pause(stop: asyncio.Event, seconds: float) -> None:
        """Sleep up to `seconds`, or until `stop` is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _drop_locks(self) -> None:
        """Forget the slots led: a new lock connection decides leadership again."""
        locks, self._locks, self._led = self._locks, None, []
        if locks is not None:
            with contextlib.suppress(Exception):
                await locks.aclose()

    async def wait_for(self, position: int, *, timeout: float | None = None) -> None:
        """Wait until the event at `position` is folded (read-your-writes).

        Another process (or `run` in another task) does the folding; this
        only watches the checkpoint of the slot holding the event.

        Raises:
            ValidationError: no event has that position.
            WaitTimeout: not folded within `timeout` seconds.
        """
        backend = self._store.backend
        await backend.ensure_schema()
        async with backend.connect_read() as connection:
            row = (
                await connection.execute(
                    sa.select(execution_events.c.stream_id).where(
                        execution_events.c.position == position
                    )
                )
            ).first()
        if row is None:
            raise errors.ValidationError(f"no event at position {position}")
        target = await backend.checkpoint_at(position)
        watched = [s for s in self._slots if s.partition.holds(row.stream_id)]
        try:
            async with asyncio.timeout(timeout):
                while True:
                    reached = [await self._checkpoint(slot) for slot in watched]
                    if all(place >= target for place in reached):
                        return
                    await asyncio.sleep(WAIT_POLL)
        except TimeoutError:
            raise errors.WaitTimeout(
                execution_id=row.stream_id, timeout=timeout or 0, status="not projected"
            ) from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Give up every slot this process leads (a standby takes them).

        `run` and `run_until_caught_up` do it when they end; call it (or use
        ``async with Projector(...)``) after driving `run_once` yourself.
        """
        if self._locks is not None:
            await self._locks.aclose()
        self._locks = None
        self._led = []

    async def _prepare(self) -> None:
        if self._ready:
            return
        await self._store.backend.ensure_schema()
        async with self._store.backend.begin_write() as connection:
            for projection in self._projections:
                await slots.prepare(connection, projection, self._partitions)
        self._ready = True

    async def _share(self) -> None:
        """Lead this process's fair share of the slots; give up any beyond it."""
        if self._locks is None:
            self._locks = self._store.backend.leader_locks()
        locks = self._locks
        if self._led and not await locks.alive():
            self._led = []  # the lock connection died: the server freed them all
        fair = math.ceil(len(self._slots) / max(1, await locks.members()))
        while len(self._led) > fair:
            slot = self._led.pop()
            await locks.release(slot.lock_name)
        for slot in self._slots:
            if len(self._led) >= fair:
                break
            if slot not in self._led and await locks.try_acquire(slot.lock_name):
                self._led.append(slot)

    async def _checkpoint(self, slot: Slot) -> Checkpoint:
        async with self._store.backend.connect_read() as connection:
            return await checkpoints.load(
                connection, slot.projection.name, slot.partition.index
            )

    async def _others_caught_up(self) -> bool:
        """Whether the slots other processes lead have nothing left to fold."""
        for slot in self._slots:
            if slot in self._led:
                continue
            after = await self._checkpoint(slot)
            pending = await self._store.log.read_batch(
                after, limit=1, partition=slot.partition
            )
            if pending:
                return False
        return True

    async def _apply_batch(self, slot: Slot) -> BatchReport:
        backend = self._store.backend
        projection = slot.projection
        start = await self._checkpoint(slot)
        stored = await backend.read_all(
            start, limit=self._batch_size, partition=slot.partition
        )
        events = [_upcast(projection, event) for event in stored]
        if not events:
            return BatchReport(events=0, position=None, caught_up=True)
        try:
            async with backend.begin_write() as connection:
                await checkpoints.advance(
                    connection,
                    projection.name,
                    expected=start,
                    new=events[-1].checkpoint,
                    partition=slot.partition.index,
                )
                await projection.apply(connection, events)
        except errors.CheckpointConflict:
            # Another projector applied this batch; go on from where it is.
            return BatchReport(events=0, position=None, caught_up=False)
        return BatchReport(
            events=len(events),
            position=events[-1].position,
            caught_up=len(events) < self._batch_size,
        )


def _upcast(projection: Projection, event: RecordedEvent) -> RecordedEvent:
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
