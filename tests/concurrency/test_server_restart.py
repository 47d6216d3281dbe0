"""A real server restart while 8 writers append and a projector tails the log (issue 11).

The test's own cluster (tests/throwaway_cluster.py) is stopped at once, as a
crash would stop it, and started again, twice, while writers drive runs
through the lifecycle and a projector daemon follows the log. Every session
dies: the pools', the listener's, the projector's lock connection. The
writers see only `DatabaseUnavailable` (or a transient conflict), retry, and
finish; the projector resumes by itself; nothing is lost or doubled; and
the listener listens again, so a wake-up arrives sooner than any poll.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import (
    DatabaseError,
    EventStore,
    ExecutionState,
    ExecutionStatus,
    NewEvent,
    StoreSettings,
    schema,
)
from eventstore.audit.integrity import verify_log
from projections import ExecutionsView, Projector
from tests.helpers import (
    assert_projection_equals_fold,
    eventually,
    make_references,
    wait_for_horizon,
)
from tests.throwaway_cluster import throwaway_cluster

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.helpers import References

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WRITERS = 8
RUNS_PER_WRITER = 10
EVENTS_PER_RUN = 4  # created, started, progressed, completed
WITHIN = 120.0  # seconds for anything that waits on a reconnect
PROMPTLY = 5.0  # well under the 30 s poll: only a wake-up delivers this fast
LOST: Counter[str] = Counter()  # transient errors the writers met, by class


async def _until_it_answers(call: Callable[[], Awaitable[object]]) -> object:
    """`call()` again after each transient database error (the server restarting)."""
    async with asyncio.timeout(WITHIN):
        delay = 0.05
        while True:
            try:
                return await call()
            except DatabaseError as exc:
                if not exc.transient:
                    raise
                LOST[type(exc).__name__] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


async def _drive(store: EventStore, refs: References, key: str) -> uuid.UUID:
    """One run through its lifecycle, each step applied exactly once.

    A step whose connection died may or may not have committed. The run has
    one writer, so its version tells: a step is sent again only while the
    version it was sent at is still the run's.
    """
    executions = store.executions
    created = await _until_it_answers(
        lambda: executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id, idempotency_key=key
        )
    )
    assert isinstance(created, uuid.UUID)
    run = created
    steps: list[Callable[[], Awaitable[ExecutionState]]] = [
        lambda: executions.start(run, worker_id=key),
        lambda: executions.progress(run, step="work", metrics={"prompt_tokens": 1}),
        lambda: executions.complete(run, result=key),
    ]
    for version, step in enumerate(steps, start=1):
        while True:
            try:
                await step()
                break
            except DatabaseError as exc:
                if not exc.transient:
                    raise
                LOST[type(exc).__name__] += 1
            state = await _until_it_answers(lambda: executions.get(run))
            assert isinstance(state, ExecutionState)
            if state.version > version:
                break  # it committed before the connection died
    return run


async def _events_per_stream(store: EventStore) -> Counter[uuid.UUID]:
    table = schema.execution_events
    async with store.backend.connect_read() as connection:
        rows = await connection.execute(
            sa.select(table.c.stream_id, sa.func.count())
            .where(table.c.stream_type == "execution")
            .group_by(table.c.stream_id)
        )
        return Counter({stream: int(count) for stream, count in rows})


async def test_writers_and_the_projector_ride_out_server_restarts() -> None:
    LOST.clear()
    with throwaway_cluster() as cluster:
        url = cluster.url("postgres")
        settings = StoreSettings(
            pool_size=WRITERS + 2, poll_interval=30, connect_timeout=5
        )
        async with EventStore.open(url, settings=settings) as store:
            await store.migrate()
            refs = await make_references(store)
            projector = Projector(store, poll_interval=0.5)
            stop = asyncio.Event()
            daemon = asyncio.create_task(projector.run(stop))

            async def writer(n: int) -> list[uuid.UUID]:
                return [
                    await _drive(store, refs, f"writer-{n}-run-{i}")
                    for i in range(RUNS_PER_WRITER)
                ]

            writers = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
            try:
                for restart, after_events in enumerate((60, 160)):

                    async def written(at_least: int = after_events) -> bool:
                        counts = await _until_it_answers(
                            lambda: _events_per_stream(store)
                        )
                        assert isinstance(counts, Counter)
                        return sum(counts.values()) >= at_least

                    await eventually(
                        written, f"written before restart {restart}", within=WITHIN
                    )
                    await asyncio.to_thread(cluster.restart)
                async with asyncio.timeout(WITHIN):
                    finished = await asyncio.gather(*writers)
                runs = [run for batch in finished for run in batch]
                assert LOST["DatabaseUnavailable"] > 0, "the restarts reached no writer"
                assert len(set(runs)) == WRITERS * RUNS_PER_WRITER

                # Nothing lost, nothing doubled: every run holds its 4 events
                # once. (The first read after a restart may meet a pooled
                # session the restart killed: DatabaseUnavailable, retried.)
                counts = await _until_it_answers(lambda: _events_per_stream(store))
                assert isinstance(counts, Counter)
                assert set(counts) == set(runs)
                assert set(counts.values()) == {EVENTS_PER_RUN}

                # The projector resumed by itself and folded every run.
                view = ExecutionsView(store)

                async def all_projected() -> bool:
                    completed = await view.list(status="completed", limit=1000)
                    return len(completed.items) == len(runs)

                await eventually(all_projected, "projected every run", within=WITHIN)
                assert not daemon.done()
                await assert_projection_equals_fold(store)
                await wait_for_horizon(store)
                report = await verify_log(store.backend)
                assert report.ok, report.problems

                # The listener listens again: another store's append wakes
                # this one well before its 30 s poll would.
                await eventually(
                    lambda: store.wakeups.listening, "listening again", within=WITHIN
                )
                seen = store.wakeups.generation
                async with EventStore.open(url) as other:
                    await other.append(
                        uuid.uuid4(),
                        [NewEvent(type="Note", data={})],
                        stream_type="note",
                    )
                await eventually(
                    lambda: store.wakeups.generation > seen, "woken", within=PROMPTLY
                )
                everything = await view.list(limit=1000)
                assert {s.status for s in everything.items} == {
                    ExecutionStatus.COMPLETED
                }
            finally:
                stop.set()
                for task in writers:
                    task.cancel()
                await asyncio.gather(*writers, return_exceptions=True)
                async with asyncio.timeout(WITHIN):
                    await daemon
