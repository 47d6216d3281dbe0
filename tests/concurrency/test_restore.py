"""A database moved with pg_dump and pg_restore keeps projecting (restore epochs).

The restored cluster's transaction counter starts far below the stored
transaction ids, so without an epoch the new events would sort before every
projection's checkpoint and never be read (migration 0006).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, ExecutionStatus
from eventstore.audit.integrity import LogReport, verify_log, verify_run
from eventstore.audit.verify_processes import _merged
from projections import Projector
from tests.helpers import (
    assert_projection_equals_fold,
    execution_in,
    make_references,
    raw_pg,
    tamper,
    wait_for_horizon,
)
from tests.throwaway_cluster import dump_and_restore, throwaway_cluster

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore.backends.base import Backend

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
            await _runs_verify_across_epochs(store, restored_url, behind[0])


async def _runs_verify_across_epochs(
    store: EventStore, url: str, spanning: UUID
) -> None:
    """Verify cut into runs finds what one pass finds, with runs cut in
    either epoch and a stream (`spanning`) begun in one and ended in the
    other: its first event after a cut chains to its end in the epoch before."""
    await wait_for_horizon(store)
    backend = store.backend
    events = [event async for event in store.read_all()]
    one_pass = await verify_log(backend)
    assert one_pass.ok
    assert one_pass.events == len(events)
    for parts in range(2, len(events), 3):
        assert _found(await _in_runs(backend, parts)) == _found(one_pass), parts
    late = next(
        event
        for event in events
        if event.stream_id == spanning and event.type == "ExecutionCompleted"
    )
    assert late.epoch == 1
    assert any(e.stream_id == spanning and e.epoch == 0 for e in events)
    await tamper(
        url,
        'UPDATE execution_events SET data = \'{"result": {"late": false}}\' '
        f"WHERE position = {late.position}",
    )
    broken = await verify_log(backend)
    assert [(p.stream_id, p.position) for p in broken.problems] == [
        (spanning, late.position)
    ]
    for parts in range(2, len(events), 3):
        assert _found(await _in_runs(backend, parts)) == _found(broken), parts


def _found(report: LogReport) -> tuple[int, int, set[tuple[object, object, str]]]:
    return (
        report.events,
        report.streams,
        {(p.stream_id, p.position, p.reason) for p in report.problems},
    )


async def _in_runs(backend: Backend, parts: int) -> LogReport:
    splits = await backend.log_splits(parts)
    runs = zip([None, *splits], [*splits, None], strict=True)
    return _merged(
        [await verify_run(backend, after=after, until=until) for after, until in runs]
    )
