"""A database moved with pg_dump and pg_restore keeps projecting (restore epochs).

The restored cluster's transaction counter starts far below the stored
transaction ids, so without an epoch the new events would sort before every
projection's checkpoint and never be read (migration 0006).
"""

from __future__ import annotations

import pytest

from eventstore import EventStore, ExecutionStatus
from projections import Projector
from tests.helpers import (
    assert_projection_equals_fold,
    execution_in,
    make_references,
    raw_pg,
)
from tests.throwaway_cluster import dump_and_restore, throwaway_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def _burn_transaction_ids(url: str, above: int) -> None:
    """Make sure the source's transaction counter is well above a fresh cluster's."""
    connection = await raw_pg(url)
    try:
        while (
            int(await connection.fetchval("SELECT pg_current_xact_id()::text")) < above
        ):
            await connection.fetchval("SELECT pg_current_xact_id()")
    finally:
        await connection.close()


async def test_a_restored_store_goes_on_projecting(pg_url: str) -> None:
    await _burn_transaction_ids(pg_url, above=20_000)
    async with EventStore.open(pg_url) as store:
        refs = await make_references(store)
        before_dump = [
            await execution_in(store, refs, ExecutionStatus.COMPLETED) for _ in range(5)
        ]
        await Projector(store).run_until_caught_up()
        # Written after the projection caught up: a projection that is behind.
        behind = [
            await execution_in(store, refs, ExecutionStatus.RUNNING) for _ in range(2)
        ]
        stored_last = max(
            [event.transaction_id or 0 async for event in store.read_all()]
        )
    with throwaway_cluster() as cluster:
        dump_and_restore(pg_url, cluster, "restored")
        restored_url = cluster.url("restored")
        probe = await raw_pg(restored_url)
        try:
            counter = int(await probe.fetchval("SELECT pg_current_xact_id()::text"))
        finally:
            await probe.close()
        assert counter < stored_last, "the restore must set the counter back"
        async with EventStore.open(restored_url) as store:
            after_restore = [
                await execution_in(store, refs, ExecutionStatus.COMPLETED)
                for _ in range(3)
            ]
            for run in behind:
                await store.executions.complete(run, result={"late": True})
            applied = await Projector(store).run_until_caught_up()
            assert applied >= 3 * 4 + 2  # the new runs and the late completions
            await assert_projection_equals_fold(store)
            events = [event async for event in store.read_all()]
            checkpoints = [event.checkpoint for event in events]
            assert checkpoints == sorted(checkpoints)
            new = [e for e in events if e.stream_id in set(after_restore)]
            assert new
            assert all(e.epoch == 1 for e in new)
            assert all(e.epoch == 0 for e in events if e.stream_id in set(before_dump))
        # Opening again finds the epoch in place: no second bump.
        async with EventStore.open(restored_url) as store:
            await execution_in(store, refs, ExecutionStatus.PENDING)
            assert {e.epoch async for e in store.read_all()} == {0, 1}
            await Projector(store).run_until_caught_up()
            await assert_projection_equals_fold(store)
