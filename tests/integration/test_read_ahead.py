"""A slot's next batch read ahead is used only when it is the batch asked for (both backends)."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from eventstore import Checkpoint, DatabaseUnavailable, ExecutionStatus, NewEvent
from eventstore.partitions import WHOLE_LOG, Partition
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.read_ahead import ReadAhead
from projections.slots import Slot
from tests.helpers import assert_projection_equals_fold, execution_in, wait_for_horizon

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References

START = Checkpoint(0, 0)


async def _notes(store: EventStore, count: int) -> None:
    for _ in range(count):
        await store.append(
            uuid.uuid4(), [NewEvent(type="Note", data={})], stream_type="note"
        )
    await wait_for_horizon(store)


def _reads_of(store: EventStore) -> tuple[ReadAhead, Slot]:
    """A read ahead, and the slot of the executions projection over the whole log."""
    context = store.projection_context
    return ReadAhead(context), Slot(ExecutionsProjection(context), WHOLE_LOG)


async def _arrived(reads: ReadAhead, slot: Slot) -> None:
    """Wait for the slot's read ahead to finish (its task is private to ReadAhead)."""
    _, _, reading = reads._reads[slot.lock_name]
    await asyncio.wait_for(asyncio.shield(reading), timeout=30)


async def test_a_full_batch_read_ahead_is_what_the_log_held_then(
    store: EventStore,
) -> None:
    reads, slot = _reads_of(store)
    await _notes(store, 3)
    reads.start(slot, START, 3)
    await _arrived(reads, slot)
    await _notes(store, 2)  # appended after the read ahead: not in it
    batch = await reads.read(slot, START, 3)
    assert [event.position for event in batch] == [1, 2, 3]
    # Nothing is left ahead: the next read asks the log, which holds all five.
    again = await reads.read(slot, START, 10)
    assert [event.position for event in again] == [1, 2, 3, 4, 5]


async def test_a_short_batch_read_ahead_is_read_again(store: EventStore) -> None:
    """A short batch says "caught up": only a read made now may say it."""
    reads, slot = _reads_of(store)
    await _notes(store, 3)
    reads.start(slot, START, 10)
    await _arrived(reads, slot)
    await _notes(store, 2)  # committed before the read below: it must see them
    batch = await reads.read(slot, START, 10)
    assert [event.position for event in batch] == [1, 2, 3, 4, 5]


async def test_a_batch_read_ahead_for_another_place_or_size_is_dropped(
    store: EventStore,
) -> None:
    reads, slot = _reads_of(store)
    await _notes(store, 4)
    first = (await reads.read(slot, START, 1))[0].checkpoint
    reads.start(slot, first, 2)
    await _arrived(reads, slot)
    # Another projector moved the checkpoint: the read ahead is not that batch.
    first_two = await store.projection_context.read_all_as_stored(START, limit=2)
    moved = await reads.read(slot, first_two[-1].checkpoint, 2)
    assert [event.position for event in moved] == [3, 4]
    # Another size than the one read ahead: read again at that size.
    reads.start(slot, START, 2)
    await _arrived(reads, slot)
    assert [event.position for event in await reads.read(slot, START, 3)] == [1, 2, 3]


async def test_closing_stops_the_reads_ahead(store: EventStore) -> None:
    reads, slot = _reads_of(store)
    await _notes(store, 2)
    reads.start(slot, START, 10)
    _, _, reading = reads._reads[slot.lock_name]
    await reads.aclose()
    assert reading.done()
    assert not reads._reads
    # Reading after closing still works: it asks the log.
    assert len(await reads.read(slot, START, 10)) == 2


async def test_a_projector_reading_ahead_while_others_append_equals_the_fold(
    store: EventStore, refs: References
) -> None:
    """Catching up in batches read ahead while writers append: exact, nothing twice.

    And `run_until_caught_up` after the writers finished folds everything
    they wrote: a batch read ahead before their last appends is not taken
    for "caught up".
    """
    for _ in range(20):
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)

    async def writer() -> None:
        for status in [*ExecutionStatus] * 2:
            await execution_in(store, refs, status)

    async with Projector(store, batch_size=3) as projector:
        for _ in range(5):
            writing = asyncio.create_task(writer())
            while not writing.done():
                await projector.run_once()
            await writing
            await projector.run_until_caught_up()
            await assert_projection_equals_fold(store)


class _FailsOnce(ReadAhead):
    """A read ahead whose first read fails as a dropped connection does."""

    failures = 0

    async def _read(self, slot: Slot, after: Checkpoint, limit: int) -> list[Any]:
        if not self.failures:
            self.failures += 1
            raise DatabaseUnavailable(url="test", reason="connection lost")
        return await super()._read(slot, after, limit)


async def test_a_read_ahead_that_failed_is_read_again(store: EventStore) -> None:
    context = store.projection_context
    reads = _FailsOnce(context)
    slot = Slot(ExecutionsProjection(context), WHOLE_LOG)
    await _notes(store, 3)
    reads.start(slot, START, 3)
    _, _, reading = reads._reads[slot.lock_name]
    await asyncio.wait([reading])
    assert isinstance(reading.exception(), DatabaseUnavailable)
    batch = await reads.read(slot, START, 3)  # not the old error: read now
    assert [event.position for event in batch] == [1, 2, 3]


class _SlowToStop(ReadAhead):
    """A read that, cancelled, takes a while to give its connection back."""

    stopping = asyncio.Event()

    async def _read(self, slot: Slot, after: Checkpoint, limit: int) -> list[Any]:
        try:
            await asyncio.Event().wait()
        finally:
            self.stopping.set()
            await asyncio.shield(asyncio.sleep(0.2))
        return []


async def test_a_cancelled_close_is_cancelled_and_leaves_no_read_behind(
    store: EventStore,
) -> None:
    context = store.projection_context
    reads = _SlowToStop(context)
    reads.stopping = asyncio.Event()
    slot = Slot(ExecutionsProjection(context), WHOLE_LOG)
    reads.start(slot, START, 3)
    _, _, reading = reads._reads[slot.lock_name]
    await asyncio.sleep(0)  # the read starts
    closing = asyncio.create_task(reads.aclose())
    await asyncio.wait_for(reads.stopping.wait(), timeout=30)
    closing.cancel()  # the caller is cancelled while the read winds down
    await asyncio.wait([closing])
    assert closing.cancelled()  # the caller's cancellation was not swallowed
    await asyncio.wait_for(asyncio.wait([reading]), timeout=30)
    assert reading.cancelled()


async def test_reads_ahead_of_slots_given_up_are_dropped(store: EventStore) -> None:
    context = store.projection_context
    reads = ReadAhead(context)
    kept, given_up = (
        Slot(ExecutionsProjection(context), Partition(count=2, index=index))
        for index in range(2)
    )
    await _notes(store, 2)
    reads.start(kept, START, 10)
    reads.start(given_up, START, 10)
    _, _, dropped = reads._reads[given_up.lock_name]
    reads.keep_only([kept])
    assert set(reads._reads) == {kept.lock_name}
    await asyncio.wait_for(asyncio.wait([dropped]), timeout=30)
    await reads.aclose()


async def test_a_closed_projector_leaves_no_read_running(
    store: EventStore, refs: References
) -> None:
    for _ in range(6):
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    async with Projector(store, batch_size=3) as projector:
        await projector.run_once()  # a full batch: the next one is read ahead
    running = [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("eventstore-read-ahead") and not task.done()
    ]
    assert running == []
