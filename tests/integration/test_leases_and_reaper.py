"""Heartbeats renew leases (not events); the reaper fails what went quiet, once.

The reaper reads the log, not the projection, and a heartbeat racing it
either wins (the run stays) or is refused (the run is failed), never both.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from eventstore import (
    EventStore,
    ExecutionCreated,
    ExecutionNotFound,
    ExecutionStarted,
    ExecutionStatus,
    InvalidTransition,
    NewEvent,
    ValidationError,
)
from eventstore.leases import Leases
from eventstore.reaper import find_candidates, reap, reap_one
from eventstore.schema import execution_leases
from projections import Projector
from tests.cli.runner import run_cli
from tests.helpers import References, count_events, execution_in

LONG_AGO = datetime.now(UTC) - timedelta(hours=3)


async def backdated(store: EventStore, refs: References, *, started: bool) -> uuid.UUID:
    """An execution whose events happened hours ago (as a crashed worker leaves it)."""
    execution_id = uuid.uuid4()
    events = [
        NewEvent.of(
            ExecutionCreated(
                message_id=refs.message.id,
                graph_id=refs.graph.id,
                thread_id=refs.thread.id,
            ),
            occurred_at=LONG_AGO,
        )
    ]
    if started:
        events.append(
            NewEvent.of(ExecutionStarted(worker_id="lost-worker"), occurred_at=LONG_AGO)
        )
    await store.append(execution_id, events, expected_version=0)
    return execution_id


async def age_lease(store: EventStore, execution_id: uuid.UUID) -> None:
    async with store.backend.begin_write() as connection:
        await connection.execute(
            sa.update(execution_leases)
            .where(execution_leases.c.execution_id == execution_id)
            .values(heartbeat_at=LONG_AGO)
        )


async def test_heartbeat_renews_a_lease_and_writes_no_event(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    events = await count_events(store)
    state = await store.executions.heartbeat(execution_id, worker_id="worker-1")
    assert state.status is ExecutionStatus.RUNNING
    first = await store.executions._leases.get(execution_id)
    await store.executions.request_cancel(execution_id)
    again = await store.executions.heartbeat(execution_id, worker_id="worker-1")
    assert again.cancel_requested  # the worker learns it should stop
    second = await store.executions._leases.get(execution_id)
    assert first is not None
    assert second is not None
    assert second.heartbeat_at >= first.heartbeat_at
    assert second.worker_id == "worker-1"
    assert await count_events(store) == events + 1  # only the cancellation request


@pytest.mark.parametrize("status", [ExecutionStatus.PENDING, ExecutionStatus.COMPLETED])
async def test_only_running_executions_heartbeat(
    store: EventStore, refs: References, status: ExecutionStatus
) -> None:
    execution_id = await execution_in(store, refs, status)
    with pytest.raises(InvalidTransition) as caught:
        await store.executions.heartbeat(execution_id, worker_id="w")
    assert caught.value.event_type == "heartbeat"
    with pytest.raises(ExecutionNotFound):
        await store.executions.heartbeat(uuid.uuid4(), worker_id="w")
    with pytest.raises(ValidationError, match="worker_id"):
        await store.executions.heartbeat(execution_id, worker_id="")


async def test_the_reaper_fails_exactly_what_went_quiet(
    store: EventStore, refs: References
) -> None:
    quiet = await backdated(store, refs, started=True)
    await store.executions.heartbeat(quiet, worker_id="w-quiet")
    await age_lease(store, quiet)  # it heartbeated, then went quiet
    alive = await backdated(
        store, refs, started=True
    )  # started long ago, still beating
    await store.executions.heartbeat(alive, worker_id="w-alive")
    never_beat = await backdated(store, refs, started=True)
    fresh_start = await execution_in(store, refs, ExecutionStatus.RUNNING)
    old_pending = await backdated(store, refs, started=False)
    new_pending = await execution_in(store, refs, ExecutionStatus.PENDING)
    await Projector(store).run_until_caught_up()

    report = await reap(store, stale_after=timedelta(minutes=5))
    assert set(report.stale) == {quiet, never_beat}
    assert report.expired_pending == []
    for execution_id in (quiet, never_beat):
        state = await store.executions.get(execution_id)
        assert state.status is ExecutionStatus.FAILED
        assert state.error is not None
        assert state.error["type"] == "Timeout"
        last = (await store.executions.history(execution_id))[-1]
        assert last.metadata.actor == "reaper"
    for execution_id in (alive, fresh_start):
        assert (
            await store.executions.get(execution_id)
        ).status is ExecutionStatus.RUNNING

    await Projector(store).run_until_caught_up()
    again = await reap(
        store, stale_after=timedelta(minutes=5), pending_after=timedelta(hours=1)
    )
    assert again.stale == []
    assert again.expired_pending == [old_pending]
    assert (await store.executions.get(old_pending)).status is ExecutionStatus.FAILED
    assert (await store.executions.get(new_pending)).status is ExecutionStatus.PENDING


async def test_two_reapers_at_once_fail_each_execution_once(
    store: EventStore, refs: References, url: str
) -> None:
    quiet = [await backdated(store, refs, started=True) for _ in range(6)]
    await Projector(store).run_until_caught_up()
    async with EventStore.open(url) as other:
        reports = await asyncio.gather(
            reap(store, stale_after=timedelta(minutes=1)),
            reap(other, stale_after=timedelta(minutes=1)),
        )
    failed = reports[0].stale + reports[1].stale
    assert sorted(failed) == sorted(quiet)  # each once, by one reaper or the other
    for execution_id in quiet:
        history = await store.executions.history(execution_id)
        assert [e.type for e in history].count("ExecutionFailed") == 1


async def test_cleanup_from_the_command_line(
    store: EventStore, refs: References, url: str
) -> None:
    quiet = await backdated(store, refs, started=True)
    await Projector(store).run_until_caught_up()
    done = run_cli("cleanup", "--stale-after", "10m", "--url", url)
    assert done.returncode == 0, done.stderr
    assert f"failed stale execution {quiet}" in done.stdout
    for args, text in (
        (["--stale-after", "soon"], "invalid --stale-after"),
        (["--pending-after", "0s"], "invalid --pending-after"),
    ):
        bad = run_cli("cleanup", *args, "--url", url)
        assert bad.returncode == 2
        assert text in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1


async def test_a_bare_cleanup_fails_runs_quiet_for_the_configured_timeout(
    store: EventStore, refs: References, url: str
) -> None:
    quiet = await backdated(store, refs, started=True)  # hours ago
    fresh = await execution_in(store, refs, ExecutionStatus.RUNNING)  # just now
    await Projector(store).run_until_caught_up()

    done = run_cli("cleanup", "--url", url, "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stale_failed"] == [str(quiet)]
    assert (await store.executions.get(quiet)).status is ExecutionStatus.FAILED
    assert (await store.executions.get(fresh)).status is ExecutionStatus.RUNNING


async def test_the_reaper_reads_the_log_not_the_projection(
    store: EventStore, refs: References
) -> None:
    """No projector ever ran: the executions table is empty, the reaper exact."""
    quiet = await backdated(store, refs, started=True)
    await store.executions.heartbeat(quiet, worker_id="w-quiet")
    await age_lease(store, quiet)
    never_beat = await backdated(store, refs, started=True)
    beating = await backdated(store, refs, started=True)
    await store.executions.heartbeat(beating, worker_id="w-beating")
    old_pending = await backdated(store, refs, started=False)
    ended = await backdated(store, refs, started=True)
    await store.executions.complete(ended, result="done")
    events = await count_events(store)

    report = await reap(
        store, stale_after=timedelta(minutes=5), pending_after=timedelta(hours=1)
    )

    assert sorted(report.stale) == sorted([quiet, never_beat])
    assert report.expired_pending == [old_pending]
    assert await count_events(store) == events + 3  # one ExecutionFailed each
    assert (await store.executions.get(beating)).status is ExecutionStatus.RUNNING
    assert (await store.executions.get(ended)).status is ExecutionStatus.COMPLETED


async def test_a_heartbeat_after_the_check_keeps_the_run(
    store: EventStore, refs: References
) -> None:
    """The race of issue 10: the reaper found the lease stale, then a heartbeat came."""
    execution_id = await backdated(store, refs, started=True)
    await store.executions.heartbeat(execution_id, worker_id="w")
    await age_lease(store, execution_id)
    [candidate] = await find_candidates(store, stale_after=timedelta(minutes=5))
    assert candidate.execution_id == execution_id

    await store.executions.heartbeat(execution_id, worker_id="w")  # just in time

    assert not await reap_one(store, candidate)
    assert (await store.executions.get(execution_id)).status is ExecutionStatus.RUNNING
    assert "ExecutionFailed" not in [
        e.type for e in await store.executions.history(execution_id)
    ]


@pytest.mark.parametrize("leased", [True, False])
async def test_a_heartbeat_after_the_claim_is_refused(
    store: EventStore, refs: References, leased: bool
) -> None:
    """Once claimed, a run refuses heartbeats, and a later pass fails it even if
    the reaper that claimed it stopped before the append."""
    execution_id = await backdated(store, refs, started=True)
    if leased:
        await store.executions.heartbeat(execution_id, worker_id="w")
        await age_lease(store, execution_id)
    state = await store.executions.get(execution_id)
    assert state.started_at is not None
    assert await Leases(store.backend).claim(
        execution_id,
        worker_id="w",
        quiet_since=state.started_at,
        stale_before=datetime.now(UTC) - timedelta(minutes=5),
    )

    with pytest.raises(InvalidTransition, match="reaper") as caught:
        await store.executions.heartbeat(execution_id, worker_id="w")
    assert caught.value.event_type == "heartbeat"
    # A pass with a longer timeout still finishes what the claim decided.
    report = await reap(store, stale_after=timedelta(hours=1))
    assert report.stale == [execution_id]
    with pytest.raises(InvalidTransition):
        await store.executions.heartbeat(execution_id, worker_id="w")


async def test_a_fresh_lease_cannot_be_claimed(
    store: EventStore, refs: References
) -> None:
    execution_id = await backdated(store, refs, started=True)
    await store.executions.heartbeat(execution_id, worker_id="w")
    assert not await Leases(store.backend).claim(
        execution_id,
        worker_id="w",
        quiet_since=LONG_AGO,
        stale_before=datetime.now(UTC) - timedelta(minutes=5),
    )
    await store.executions.heartbeat(execution_id, worker_id="w")  # still its own


RACING_RUNS = 24


async def test_heartbeats_racing_reapers_win_or_lose_never_both(
    store: EventStore, refs: References, url: str
) -> None:
    """Every lease is stale; one heartbeat per run and two reapers run at once,
    each on its own store (its own connections). For every run exactly one of
    them wins: the heartbeat returned and the run still runs, or the heartbeat
    was refused (or came too late) and the run failed once."""
    runs = [await backdated(store, refs, started=True) for _ in range(RACING_RUNS)]
    for execution_id in runs:
        await store.executions.heartbeat(execution_id, worker_id="w")
        await age_lease(store, execution_id)

    async def beat(worker: EventStore, execution_id: uuid.UUID) -> bool:
        try:
            await worker.executions.heartbeat(execution_id, worker_id="w")
        except InvalidTransition:
            return False
        return True

    async with (
        EventStore.open(url) as workers,
        EventStore.open(url) as first,
        EventStore.open(url) as second,
    ):
        reapers = [
            asyncio.create_task(reap(reaper, stale_after=timedelta(minutes=5)))
            for reaper in (first, second)
        ]
        beats = await asyncio.gather(*(beat(workers, i) for i in runs))
        reports = await asyncio.gather(*reapers)
    reaped = [i for report in reports for i in report.stale]
    assert len(reaped) == len(set(reaped))  # each failed by one reaper at most
    for execution_id, kept in zip(runs, beats, strict=True):
        history = [e.type for e in await store.executions.history(execution_id)]
        failed = history.count("ExecutionFailed")
        assert failed == (0 if kept else 1), (execution_id, kept, history)
        assert (execution_id in reaped) == (not kept)


async def test_the_leases_of_ended_runs_are_forgotten(
    store: EventStore, refs: References
) -> None:
    ended = await backdated(store, refs, started=True)
    await store.executions.heartbeat(ended, worker_id="w")
    await store.executions.complete(ended, result="done")
    await age_lease(store, ended)
    running = await backdated(store, refs, started=True)
    await store.executions.heartbeat(running, worker_id="w")
    leases = Leases(store.backend)

    assert (await reap(store, stale_after=timedelta(minutes=5))).stale == []

    assert await leases.get(ended) is None
    assert await leases.get(running) is not None
