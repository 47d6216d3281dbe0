"""A projector that starts while a rebuild holds its projection (issue 11).

A partitioned projector started during a rebuild's swap deadlocked with it
on PostgreSQL: the swap locked the checkpoint rows in key order, the
starting projector (`slots.prepare`) in the order its scan met them, which
is heap order once the table has statistics. Partition 0's batch in
flight held the row both wanted first; when it ended, each side held a row
the other waited for ("deadlock detected"). A projector that changed the
partition count meanwhile re-created the rows out of the swap's sight and
applied to the table being swapped, from checkpoints the swap never moved.

Now the swap holds the projection's gate first: the projector does not
start, waits outside the database, and `project --status` says so. The
waits are real: another connection holds a checkpoint row as a batch in
flight would (PostgreSQL) or the writer lock as any writer would (SQLite).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from typing import TYPE_CHECKING, Final

import pytest

from eventstore import EventStore, StoreSettings
from eventstore.backends.leadership import process_identity
from eventstore.cli.demo_workload import run_workload
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.rebuild import RebuildReport, run_rebuild
from projections.slot_status import ProjectionStatus, projection_status
from tests.cli.runner import run_cli
from tests.helpers import count_positions, raw_pg, wait_for_horizon
from tests.rebuild_support import assert_clean_schema, assert_table_is_the_fold

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    import asyncpg

WITHIN: Final = 60  # seconds: a deadline, never an expected duration
SETTINGS: Final = StoreSettings(pool_size=6)
LOCK_WAITERS: Final = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def _quiet(_: object) -> None:
    """The workload's progress display, silenced."""


async def _a_log_projected_then_more(url: str, *, partitions: int) -> None:
    """Runs projected `partitions` ways, then more runs nobody projected yet."""
    async with EventStore.open(url, settings=SETTINGS) as store:
        await run_workload(store, executions=60, workers=4, seed=11, on_change=_quiet)
        projector = Projector(store, partitions=partitions, batch_size=25)
        await projector.run_until_caught_up()
        await run_workload(store, executions=30, workers=4, seed=12, on_change=_quiet)
        await wait_for_horizon(store)


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Return once `condition` holds; fail after WITHIN seconds."""
    try:
        async with asyncio.timeout(WITHIN):
            while True:
                if await condition():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not within {WITHIN} s: {what}")


async def lock_waiters(admin: asyncpg.Connection) -> set[int]:
    """The backends of the test's database that wait for a lock."""
    return {row[0] for row in await admin.fetch(LOCK_WAITERS)}


async def status_of(url: str) -> ProjectionStatus:
    async with EventStore.open(url) as store:
        return await projection_status(store)


def executions_slots(status: ProjectionStatus) -> list[tuple[int, str, int | None]]:
    """(partition, state, rebuild holder pid) of each slot of the executions projection."""
    return [
        (slot.partition, slot.state, slot.rebuild_holder_pid)
        for slot in status.slots
        if slot.projection == "executions"
    ]


async def assert_the_cli_shows_them_waiting(url: str, holder_pid: int) -> None:
    """`project --status`, text and --json, names the rebuild each slot waits for."""
    # In a thread: the event loop keeps serving the rebuild and the projector.
    text = await asyncio.to_thread(run_cli, "project", "--status", "--url", url)
    assert text.returncode == 0, text.stderr
    waiting = f"waiting for rebuild by {process_identity()} (pid {holder_pid})"
    assert text.stdout.count(waiting) == 4, text.stdout
    shown = await asyncio.to_thread(
        run_cli, "project", "--status", "--json", "--url", url
    )
    assert shown.returncode == 0, shown.stderr
    assert [
        (slot["state"], slot["rebuild_holder"], slot["rebuild_holder_pid"])
        for slot in json.loads(shown.stdout)["slots"]
        if slot["projection"] == "executions"
    ] == [("waiting for rebuild", process_identity(), holder_pid)] * 4


async def finish(
    tasks: list[asyncio.Task[RebuildReport] | asyncio.Task[int]],
) -> None:
    """Await the tasks within WITHIN seconds; cancel what is left."""
    try:
        async with asyncio.timeout(WITHIN):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


@contextlib.asynccontextmanager
async def a_batch_in_flight(url: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Hold the checkpoint row of the executions' partition 0, as its batch does.

    Yields the call that ends that transaction.
    """
    batch = await raw_pg(url)
    try:
        transaction = batch.transaction()
        await transaction.start()
        await batch.execute(
            "SELECT 1 FROM projection_checkpoints "
            "WHERE name = 'executions' AND partition = 0 FOR UPDATE"
        )
        yield transaction.rollback
    finally:
        await batch.close()


async def put_partition_zero_after_another(admin: asyncpg.Connection) -> None:
    """Let a sequential scan meet partition 0's checkpoint row after another one.

    Autovacuum analyzes this small, busy table; the planner then scans it
    sequentially, in heap order, where each row stands where its last update
    put it. That is how production met the deadlock: the starting projector
    locked other partitions' rows before it reached partition 0's.
    """
    await admin.execute("ANALYZE projection_checkpoints")
    for _ in range(100):
        first = await admin.fetchval(
            "SELECT partition FROM projection_checkpoints "
            "WHERE name = 'executions' ORDER BY ctid LIMIT 1"
        )
        if first != 0:
            return
        # What partition 0's next batch does to the row: a new version.
        await admin.execute(
            "UPDATE projection_checkpoints SET updated_at = updated_at "
            "WHERE name = 'executions' AND partition = 0"
        )
    pytest.fail("partition 0's checkpoint row stays first in the heap")


@pytest.mark.postgres
async def test_a_partitioned_projector_started_during_the_swap_waits_for_it(
    pg_url: str,
) -> None:
    await _a_log_projected_then_more(pg_url, partitions=4)
    admin = await raw_pg(pg_url)
    try:
        await put_partition_zero_after_another(admin)
        async with (
            a_batch_in_flight(pg_url) as end_the_batch,
            EventStore.open(pg_url, settings=SETTINGS) as rebuilding,
            EventStore.open(pg_url, settings=SETTINGS) as projecting,
        ):
            rebuild = asyncio.create_task(
                run_rebuild(rebuilding, ExecutionsProjection(rebuilding.backend))
            )

            async def swap_waits() -> bool:
                return bool(await lock_waiters(admin))

            await wait_until(swap_waits, "the swap waits for partition 0's batch")
            projector = Projector(projecting, partitions=4)
            started = asyncio.create_task(projector.run_until_caught_up())

            async def projector_went_as_far_as_it_can() -> bool:
                # Before the fix it waited for a checkpoint row; now it leads
                # its slots and waits outside the database.
                if len(await lock_waiters(admin)) > 1:
                    return True
                slots = (await status_of(pg_url)).slots
                return sum(bool(slot.leader) for slot in slots) == 4

            await wait_until(projector_went_as_far_as_it_can, "the projector starts")
            waiters = await lock_waiters(admin)
            during = await status_of(pg_url)
            if len(waiters) == 1:
                # Otherwise the projector is in a lock queue: that is
                # asserted once both ended, so a deadlock shows as such.
                await assert_the_cli_shows_them_waiting(pg_url, min(waiters))
            await end_the_batch()
            await finish([rebuild, started])
        report, applied = rebuild.result(), started.result()
    finally:
        await admin.close()
    assert report.swapped
    [swap] = waiters  # the projector waited in no lock queue
    assert executions_slots(during) == [
        (partition, "waiting for rebuild", swap) for partition in range(4)
    ]
    assert {slot.rebuild_holder for slot in during.slots if slot.rebuild_holder} == {
        process_identity()
    }
    # The swap folded everything: the projector had nothing left to apply,
    # and applied nothing to the table being swapped.
    assert applied == 0
    after = await status_of(pg_url)
    assert [slot.checkpoint_position for slot in after.slots] == [report.position] * 4
    assert all(slot.state != "waiting for rebuild" for slot in after.slots)
    async with EventStore.open(pg_url) as store:
        assert report.position == await count_positions(store)
        await assert_table_is_the_fold(store)
        await assert_clean_schema(store)


@pytest.mark.postgres
async def test_a_projector_that_splits_the_projection_during_the_swap(
    pg_url: str,
) -> None:
    """It re-creates the checkpoint rows: before the fix the swap never saw them."""
    await _a_log_projected_then_more(pg_url, partitions=1)
    admin = await raw_pg(pg_url)
    try:
        async with (
            a_batch_in_flight(pg_url) as end_the_batch,
            EventStore.open(pg_url, settings=SETTINGS) as rebuilding,
            EventStore.open(pg_url, settings=SETTINGS) as projecting,
        ):
            started = asyncio.create_task(
                Projector(projecting, partitions=4).run_until_caught_up()
            )

            def waiting(count: int) -> Callable[[], Awaitable[bool]]:
                async def condition() -> bool:
                    return len(await lock_waiters(admin)) >= count

                return condition

            await wait_until(waiting(1), "the projector waits for the batch")
            rebuild = asyncio.create_task(
                run_rebuild(rebuilding, ExecutionsProjection(rebuilding.backend))
            )
            await wait_until(waiting(2), "the swap waits too")
            await end_the_batch()
            await finish([started, rebuild])
        report, applied = rebuild.result(), started.result()
    finally:
        await admin.close()
    assert report.swapped
    assert applied == 0  # before the fix: the events the shadow had folded
    after = await status_of(pg_url)
    assert [
        (slot.partition, slot.partitions, slot.checkpoint_position)
        for slot in after.slots
    ] == [(partition, 4, report.position) for partition in range(4)]
    async with EventStore.open(pg_url) as store:
        await assert_table_is_the_fold(store)
        await assert_clean_schema(store)


@pytest.mark.sqlite
async def test_a_projector_started_during_a_rebuild_in_place_waits_for_it(
    sqlite_url: str,
) -> None:
    """SQLite replays in one write transaction: the writer lock kept it safe already.

    The projector now waits before it queues for that lock (as long as the
    rebuild lasts), and `project --status` says why.
    """
    await _a_log_projected_then_more(sqlite_url, partitions=4)
    writer = sqlite3.connect(
        sqlite_url.removeprefix("sqlite:///"), isolation_level=None
    )
    try:
        writer.execute("BEGIN IMMEDIATE")  # a writer in flight
        async with (
            EventStore.open(sqlite_url) as rebuilding,
            EventStore.open(sqlite_url) as projecting,
        ):
            rebuild = asyncio.create_task(
                run_rebuild(rebuilding, ExecutionsProjection(rebuilding.backend))
            )

            async def rebuild_holds_it() -> bool:
                slots = executions_slots(await status_of(sqlite_url))
                return all(state == "waiting for rebuild" for _, state, _ in slots)

            await wait_until(rebuild_holds_it, "the rebuild holds the projection")
            projector = Projector(projecting, partitions=4)
            started = asyncio.create_task(projector.run_until_caught_up())

            async def projector_waits() -> bool:
                return len(projector.waiting) == 4

            await wait_until(projector_waits, "the projector waits for the rebuild")
            during = await status_of(sqlite_url)
            await assert_the_cli_shows_them_waiting(sqlite_url, os.getpid())
            writer.execute("ROLLBACK")
            await finish([rebuild, started])
        report, applied = rebuild.result(), started.result()
    finally:
        writer.close()
    assert not report.swapped  # replayed in place
    assert executions_slots(during) == [
        (partition, "waiting for rebuild", os.getpid()) for partition in range(4)
    ]
    assert applied == 0
    after = await status_of(sqlite_url)
    assert [slot.checkpoint_position for slot in after.slots] == [report.position] * 4
    assert all(slot.state == "no leader" for slot in after.slots)
    async with EventStore.open(sqlite_url) as store:
        assert report.position == await count_positions(store)
        await assert_table_is_the_fold(store)
