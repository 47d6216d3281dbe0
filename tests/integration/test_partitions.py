"""Partitioned projection, leadership within one process, status and wait_for (both backends)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import ConfigurationError, ExecutionStatus, NewEvent, WaitTimeout
from eventstore.events.checkpoint import Checkpoint
from eventstore.partitions import Partition
from eventstore.schema import executions, projection_checkpoints
from projections import Projector
from projections.slot_status import projection_status
from tests.helpers import (
    assert_projection_equals_fold,
    execution_in,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References


def test_the_partition_rule_is_the_uuids_low_bits() -> None:
    import uuid

    stream = uuid.UUID("00000000-0000-0000-0000-0000000000ff")
    assert Partition(255 % 4, 4).holds(stream)
    assert not Partition(0, 4).holds(stream)
    with pytest.raises(ValueError, match="invalid partition"):
        Partition(4, 4)


async def test_each_databases_partitioned_reads_follow_the_rule(
    store: EventStore,
) -> None:
    """The SQL of each backend puts every stream where `Partition.holds` does.

    The low 32 bits are chosen at the edges: all ones, the top bit alone
    (a sign in 32-bit arithmetic), zero, and bits in every byte.
    """
    import uuid

    lows = [0xFFFFFFFF, 0x80000000, 0, 0x01020304, 0xFF00FF00, 0x7FFFFFFF, 255]
    streams = [uuid.UUID(int=(n + 1) << 64 | low) for n, low in enumerate(lows)]
    streams += [uuid.uuid4() for _ in range(9)]
    for stream in streams:
        await store.append(stream, [NewEvent(type="Note", data={})], stream_type="note")
    await wait_for_horizon(store)
    head = await store.backend.head_checkpoint()
    assert head is not None
    for count in (1, 2, 3, 7, 64):
        for index in range(count):
            partition = Partition(index, count)
            rows = await store.backend.read_all_as_stored(
                None, limit=100, partition=partition
            )
            expected = {stream for stream in streams if partition.holds(stream)}
            assert {row.stream_id for row in rows} == expected, partition
            backlog, _ = await store.backend.backlog(
                Checkpoint(0, 0), partition=partition
            )
            assert backlog == len(expected), partition


async def test_a_partitioned_projection_equals_the_fold(
    store: EventStore, refs: References
) -> None:
    for status in ExecutionStatus:
        for _ in range(3):
            await execution_in(store, refs, status)
    await wait_for_horizon(store)
    async with Projector(store, partitions=3, batch_size=4) as projector:
        applied = await projector.run_until_caught_up()
        assert applied == await store.log.count_events(), await projection_status(store)
    await assert_projection_equals_fold(store)
    report = await projection_status(store)
    assert [(s.partition, s.partitions) for s in report.slots] == [
        (0, 3),
        (1, 3),
        (2, 3),
    ]
    assert all(s.lag_events == 0 for s in report.slots)


async def test_two_projectors_share_the_partitions(
    store: EventStore, refs: References
) -> None:
    first = Projector(store, partitions=4)
    second = Projector(store, partitions=4)
    try:
        await first.run_once()
        assert len(first.led) == 4  # alone: all of them
        await second.run_once()  # a second member: nothing is free yet
        await first.run_once()  # the first gives up what exceeds its share
        await second.run_once()
        assert len(first.led) == 2
        assert len(second.led) == 2
        assert set(first.led).isdisjoint(second.led)
        status = await projection_status(store)
        assert all(s.leader is not None for s in status.slots)
        await first.aclose()  # the first goes away: the second takes all
        await second.run_once()
        assert len(second.led) == 4
    finally:
        await first.aclose()
        await second.aclose()
    del refs


async def test_the_partition_count_changes_only_where_the_partitions_stand_together(
    store: EventStore, refs: References
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    await Projector(store).run_until_caught_up()
    # Unpartitioned and caught up: it may be split, each partition starting there.
    await Projector(store, partitions=2).run_until_caught_up()
    await execution_in(store, refs, ExecutionStatus.FAILED)
    await execution_in(store, refs, ExecutionStatus.RUNNING)
    await wait_for_horizon(store)
    await Projector(store, partitions=2).run_until_caught_up()
    await assert_projection_equals_fold(store)
    places = {s.checkpoint_position for s in (await projection_status(store)).slots}
    if len(places) > 1:  # the partitions now stand apart: only a rebuild re-splits
        with pytest.raises(ConfigurationError, match="means a rebuild"):
            await Projector(store, partitions=3).run_until_caught_up()


async def test_wait_for_gives_read_your_writes(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    position = (await store.executions.history(execution_id))[-1].position
    watcher = Projector(store, partitions=2)
    with pytest.raises(WaitTimeout):
        await watcher.wait_for(position, timeout=0.2)
    waiting = asyncio.create_task(watcher.wait_for(position, timeout=30))
    await wait_for_horizon(store)
    await Projector(store, partitions=2).run_until_caught_up()
    await waiting
    await watcher.aclose()


async def test_projectors_starting_together_create_the_partitions_once(
    store: EventStore, refs: References
) -> None:
    # Four processes started at once on a projection nobody ran: each finds
    # no checkpoint row and creates them; the later ones used to fail on the
    # first one's key (a UniqueViolation) instead of finding its rows.
    for status in ExecutionStatus:
        await execution_in(store, refs, status)
    await wait_for_horizon(store)
    for _ in range(5):
        async with store.backend.engine.begin() as connection:
            await connection.execute(sa.delete(projection_checkpoints))
            await connection.execute(sa.delete(executions))
        projectors = [Projector(store, partitions=4) for _ in range(4)]
        try:
            await asyncio.gather(*(p.run_once() for p in projectors))
            async with store.backend.connect_read() as connection:
                rows = (
                    await connection.execute(sa.select(projection_checkpoints))
                ).all()
            assert sorted(row.partition for row in rows) == [0, 1, 2, 3]
        finally:
            for projector in projectors:
                await projector.aclose()
    async with Projector(store, partitions=4) as projector:
        await projector.run_until_caught_up()
    await assert_projection_equals_fold(store)
