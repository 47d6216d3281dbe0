"""The projector: folds the log into read models, batch by batch, exactly once.

Work is split into slots: each projection, or each partition of it
(``hash(stream_id) mod N``, ARCHITECTURE §7), with its own checkpoint and leader.
A process leads the slots whose lock it holds and applies their batches:
each is read gap-safe after the slot's checkpoint, then applied in one
transaction that first moves the checkpoint forward by compare-and-set. A
crash leaves the whole batch or none of it, and a batch two processes race
for is applied once (ARCHITECTURE §4). Processes share the slots evenly: each
leads at most its fair share of each projection's slots, counted among the
processes that run that projection, and takes over slots whose leader died.

While a rebuild holds a projection (its swap, or a replay in place) no
transaction on it starts here: each one enters the projection's gate first
(`Backend.projection_write`), and a slot turned away waits, with jittered
backoff, outside the database (docs/PROJECTIONS.md, "Lock order").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Final, Self

import sqlalchemy as sa
import tenacity

from eventstore import errors
from eventstore.projecting import RECHECK_MIN
from eventstore.schema import execution_events
from eventstore.telemetry import TELEMETRY
from projections import checkpoints, slots
from projections.backoff import MAX_RETRY_DELAY, RebuildHolds
from projections.batches import BatchReport, BatchSizes, BatchWriter
from projections.executions import ExecutionsProjection
from projections.start_by_rebuild import REBUILD_AT_START, start_by_rebuild

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from eventstore import Checkpoint, EventStore
    from eventstore.projecting import LeaderLocks
    from projections.base import Projection
    from projections.slots import Slot

DEFAULT_BATCH: Final = 1000
WAIT_POLL: Final = 0.05
# Under "eventstore" like every logger of the package: one name to configure.
logger: Final = logging.getLogger(f"eventstore.{__name__}")


def _transient(exc: BaseException) -> bool:
    """A database error that waiting out may cure (a lost connection, a deadlock)."""
    return isinstance(exc, errors.DatabaseError) and exc.transient


def _log_crash(daemon: asyncio.Task[None]) -> None:
    if not daemon.cancelled() and (crash := daemon.exception()) is not None:
        logger.error("projector stopped: %s", crash, exc_info=crash)


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
        rebuild_at_start: int | None = REBUILD_AT_START,
    ) -> None:
        """Run `projections` (default: the executions projection) split `partitions` ways.

        A projection at the start of a log whose head is at position
        `rebuild_at_start` or beyond is caught up by a rebuild where the
        database folds it (PostgreSQL), about three times as fast as
        batches (`projections.start_by_rebuild`); None: always in batches.

        Raises:
            ValidationError: partitions or rebuild_at_start below 1.
        """
        if partitions < 1:
            raise errors.ValidationError(f"invalid partitions {partitions}: 1 or more")
        if rebuild_at_start is not None and rebuild_at_start < 1:
            raise errors.ValidationError(
                f"invalid rebuild_at_start {rebuild_at_start}: 1 or more, or None"
            )
        self._store = store
        context = store.projection_context
        self._batches = BatchWriter(context)
        default: list[Projection] = [ExecutionsProjection(context)]
        self._projections = default if projections is None else list(projections)
        self._sizes = BatchSizes(batch_size)
        self._poll_interval = poll_interval
        self._partitions = partitions
        self._slots = slots.slots_of(self._projections, partitions)
        self._groups = slots.by_group(self._slots)
        self._locks: LeaderLocks | None = None
        self._led: list[Slot] = []
        self._prepared: set[str] = set()  # projections whose slots have rows
        self._held = RebuildHolds()  # projections a rebuild holds
        self._rebuild_at_start = rebuild_at_start
        # Projections whose start was decided: by a rebuild, or in batches.
        self._started: set[str] = set()
        self._stop: asyncio.Event | None = None  # `run`'s: a rebuild ends early

    @property
    def projections(self) -> list[Projection]:
        """The projections this projector runs."""
        return list(self._projections)

    @property
    def led(self) -> list[str]:
        """The slots this process leads now (their lock names)."""
        return [slot.lock_name for slot in self._led]

    @property
    def waiting(self) -> list[str]:
        """The led slots that wait for a rebuild of their projection (lock names)."""
        return [
            slot.lock_name for slot in self._led if slot.projection.name in self._held
        ]

    async def run_once(self) -> BatchReport:
        """Apply at most one batch to each slot this process leads.

        A projection at the start of a long log is first caught up by a
        rebuild (see `__init__`), reported as one more batch.

        A slot whose projection a rebuild holds applies nothing: it is
        reported waiting (not caught up) and tried again after a backoff.

        Returns:
            How many events were applied, the last position reached,
            whether every led slot is caught up, and which ones wait.

        Raises:
            ProjectionError: a projection cannot apply an event (a poison
                event): nothing of that batch was applied.
        """
        await self._prepare()
        await self._share()
        reports = await self._start_by_rebuild()
        if self._stop is None or not self._stop.is_set():
            reports += [await self._apply_slot(slot) for slot in self._led]
        positions = [r.position for r in reports if r.position is not None]
        waiting = tuple(self.waiting)
        return BatchReport(
            events=sum(r.events for r in reports),
            position=max(positions) if positions else None,
            caught_up=all(r.caught_up for r in reports) and not waiting,
            waiting=waiting,
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
        backend = self._store.projection_context
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
                elif report.waiting and not report.events:
                    await asyncio.sleep(self._held.until_retry())
        finally:
            await self.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Run as a daemon until `stop` is set; the batch in hand is finished first.

        A rebuild at the start (see `__init__`) ends at its next part or
        batch instead, and the next start resumes it.

        A transient database error (a lost connection, a restarted server,
        a terminated backend, a serialization failure, a deadlock) is waited
        out with capped, jittered exponential backoff: the batch in flight
        rolled back, so the projector resumes at its checkpoint. A poison
        event or a permanent database error ends it.

        Raises:
            ProjectionError: a projection cannot apply an event (every event
                before it is applied).
            DatabaseError: a permanent database error no event is to blame
                for (a missing privilege, an unmigrated schema).
        """
        recheck: float | None = None
        self._stop = stop
        retrier = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_transient),
            wait=tenacity.wait_random_exponential(
                multiplier=self._poll_interval, max=MAX_RETRY_DELAY
            ),
            stop=lambda _: stop.is_set(),
            sleep=functools.partial(self._pause, stop),
            before_sleep=self._before_retry,
            reraise=True,
        )
        try:
            while not stop.is_set():
                # Taken before the read: an append committed during it wakes the wait.
                seen = self._store.wakeups.generation
                try:
                    report: BatchReport = await retrier(self.run_once)
                except errors.DatabaseError as exc:
                    if _transient(exc) and stop.is_set():
                        return  # stopped while the database was away
                    raise
                if not report.caught_up:
                    if report.waiting and not report.events:
                        await self._pause(stop, self._held.until_retry())
                    continue
                if report.events:
                    recheck = None
                # Woken by appends (LISTEN/NOTIFY on PostgreSQL); the timeout
                # is the poll that covers a missed notification. A wake-up
                # whose read found nothing means an older transaction holds
                # the read horizon back: look again soon, backing off, rather
                # than a whole poll interval later (as subscriptions do).
                delay = self._poll_interval if recheck is None else recheck
                if await self._store.wakeups.wait(seen, delay, stop=stop):
                    recheck = RECHECK_MIN
                elif recheck is not None:
                    recheck = recheck * 2 if recheck * 2 < self._poll_interval else None
        finally:
            await self.aclose()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        """Run as a daemon in a task of this event loop while the block runs.

        For a service that projects in its own process (its lifespan):
        ``async with Projector(store).running():``. A crash of the daemon is
        logged at once, with its traceback, on the `eventstore` logger, so
        it is not silent until shutdown; leaving the block stops the daemon
        (the batch in hand is finished first) and raises its crash, if any.

        Raises:
            ProjectionError, DatabaseError: what ended the daemon (see `run`).
        """
        stop = asyncio.Event()
        daemon = asyncio.create_task(self.run(stop), name="eventstore-projector")
        daemon.add_done_callback(_log_crash)
        try:
            yield self
        finally:
            stop.set()
            await daemon  # raises the crash, or a cancellation

    async def _before_retry(self, retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        logger.warning(
            "projector: %s; retrying in %.1f s",
            outcome.exception() if outcome is not None else "?",
            retry_state.upcoming_sleep,
        )
        # The lock connection may be the one that broke: leadership is
        # decided again on the next try.
        await self._drop_locks()

    @staticmethod
    async def _pause(stop: asyncio.Event, seconds: float) -> None:
        """Sleep up to `seconds`, or until `stop` is set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _drop_locks(self) -> None:
        """Forget the slots led: a new lock connection decides leadership again."""
        locks, self._locks, self._led = self._locks, None, []
        if locks is not None:
            # Closing a lock connection that already failed may fail again;
            # the server frees its locks either way, so say it and go on.
            try:
                await locks.aclose()
            except Exception as exc:
                logger.warning("projector: closing its lock connection failed: %r", exc)

    async def wait_for(self, position: int, *, timeout: float | None = None) -> None:
        """Wait until the event at `position` is folded (read-your-writes).

        Another process (or `run` in another task) does the folding; this
        only watches the checkpoint of the slot holding the event.

        Raises:
            ValidationError: no event has that position.
            WaitTimeout: not folded within `timeout` seconds.
        """
        backend = self._store.projection_context
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
        await self._batches.aclose()
        if self._locks is not None:
            await self._locks.aclose()
        self._locks, self._led = None, []

    async def _prepare(self) -> None:
        """Give each projection its checkpoint rows, unless a rebuild holds it."""
        backend = self._store.projection_context
        await backend.ensure_schema()
        for projection in self._projections:
            name = projection.name
            if name in self._prepared or not self._held.due(name):
                continue
            try:
                async with backend.projection_write(name) as connection:
                    await slots.prepare(connection, projection, self._partitions)
            except errors.RebuildInProgress:
                self._held.hold(name)  # its slots do not start: they wait
                continue
            self._prepared.add(name)
            self._held.release(name)

    async def _share(self) -> None:
        """Lead this process's fair share of each projection's slots (`slots.take_fair_share`)."""
        if self._locks is None:
            self._locks = self._store.projection_context.leader_locks()
        locks = self._locks
        if self._led and not await locks.alive():
            self._led = []  # the lock connection died: the server freed them all
        await slots.take_fair_share(locks, self._groups, self._led)
        self._batches.keep_reads_of(self._led)  # a slot given up reads nothing ahead

    async def _checkpoint(self, slot: Slot) -> Checkpoint:
        async with self._store.projection_context.connect_read() as connection:
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

    async def _start_by_rebuild(self) -> list[BatchReport]:
        """Catch up by a rebuild each projection at the start whose slots are all led here.

        Decided once per projection, when this process first leads all its
        slots (`projections.start_by_rebuild`).
        """
        reports: list[BatchReport] = []
        if self._rebuild_at_start is None:
            return reports
        for projection in self._projections:
            name = projection.name
            if (
                name in self._started
                or name not in self._prepared
                or not self._held.due(name)
            ):
                continue
            mine = [slot for slot in self._slots if slot.projection is projection]
            if not all(slot in self._led for slot in mine):
                continue
            try:
                report = await start_by_rebuild(
                    self._store,
                    projection,
                    [slot.partition.index for slot in mine],
                    at_least=self._rebuild_at_start,
                    stop=self._stop,
                )
            except errors.RebuildInProgress:
                self._held.hold(name)  # another rebuild: its slots wait for it
                continue
            if report is None and self._stop is not None and self._stop.is_set():
                break  # stopped, perhaps mid-rebuild: the next start decides again
            self._started.add(name)
            if report is not None:
                reports.append(
                    BatchReport(
                        events=report.events, position=report.position, caught_up=False
                    )
                )
        return reports

    async def _apply_slot(self, slot: Slot) -> BatchReport:
        """Apply a batch to the slot, unless a rebuild holds its projection."""
        name = slot.projection.name
        if name not in self._prepared or not self._held.due(name):
            return BatchReport(events=0, position=None, caught_up=False)
        size = self._sizes.of(slot)
        ahead = self._sizes.after_full(size)
        try:
            start = await self._checkpoint(slot)
            if TELEMETRY is None or not TELEMETRY.tracing():
                report = await self._batches.apply_next(
                    slot, start, size, next_limit=ahead
                )
            else:
                with TELEMETRY.batch_span(str(slot)) as span:
                    report = await self._batches.apply_next(
                        slot, start, size, next_limit=ahead
                    )
                    span.set_attribute("event.count", report.events)
        except errors.RebuildInProgress:
            # Nothing was applied: the batch is read again after the rebuild,
            # from the checkpoint the swap (or the replay) left.
            self._held.hold(name)
            return BatchReport(events=0, position=None, caught_up=False)
        self._held.release(name)
        self._sizes.note(slot, asked=size, got=report.events)
        return report
