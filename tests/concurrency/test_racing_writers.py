"""Real concurrent writers on PostgreSQL: races are decided by the log, once."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import pytest

from eventstore import (
    ConcurrencyError,
    EventStore,
    ExecutionStatus,
    InvalidTransition,
    NewEvent,
    StoreSettings,
)
from eventstore.audit.replay import verify_stream
from tests.helpers import References, execution_in

pytestmark = pytest.mark.postgres


async def open_stores(stack: AsyncExitStack, url: str, count: int) -> list[EventStore]:
    """Several independent stores, as several service processes would have."""
    settings = StoreSettings(pool_size=8)
    return [
        await stack.enter_async_context(EventStore.open(url, settings=settings))
        for _ in range(count)
    ]


async def test_twenty_concurrent_starts_exactly_one_wins(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    execution_id = await execution_in(pg_store, pg_refs, ExecutionStatus.PENDING)
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, pg_url, 4)
        for store in stores:  # every store remembers the pending state
            await store.executions.get(execution_id)
        outcomes = await asyncio.gather(
            *(
                stores[n % 4].executions.start(execution_id, worker_id=f"worker-{n}")
                for n in range(20)
            ),
            return_exceptions=True,
        )
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(o, InvalidTransition) for o in losers), losers
    assert all(
        o.status == "running" for o in losers if isinstance(o, InvalidTransition)
    )
    history = await pg_store.executions.history(execution_id)
    assert [e.type for e in history] == ["ExecutionCreated", "ExecutionStarted"]
    state = await pg_store.executions.get(execution_id)
    assert state.worker_id == history[1].data["worker_id"]


async def test_racing_outcomes_record_exactly_one_terminal_event(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, pg_url, 3)
        for _ in range(10):
            execution_id = await execution_in(
                pg_store, pg_refs, ExecutionStatus.RUNNING
            )
            complete, cancel, fail = (
                stores[0].executions.complete(execution_id, result=1),
                stores[1].executions.cancel(execution_id),
                stores[2].executions.fail(
                    execution_id, error={"type": "E", "message": "m"}
                ),
            )
            outcomes = await asyncio.gather(
                complete, cancel, fail, return_exceptions=True
            )
            assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
            assert sum(isinstance(o, InvalidTransition) for o in outcomes) == 2
            history = await pg_store.executions.history(execution_id)
            assert len(history) == 3
            assert (await pg_store.executions.get(execution_id)).is_terminal


async def test_concurrent_appends_to_one_stream_without_expectation_all_land(
    pg_store: EventStore, pg_url: str
) -> None:
    stream = uuid.uuid4()
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, pg_url, 4)
        results = await asyncio.gather(
            *(
                stores[n % 4].append(
                    stream, [NewEvent(type="Tick", data={"n": n})], stream_type="tick"
                )
                for n in range(40)
            )
        )
    assert sorted(r.version for r in results) == list(range(1, 41))
    events = [e async for e in pg_store.read_stream(stream)]
    assert sorted(int(str(e.data["n"])) for e in events) == list(range(40))
    await verify_stream(pg_store.backend, stream)


async def test_concurrent_appends_with_the_same_expectation_one_wins(
    pg_store: EventStore, pg_url: str
) -> None:
    stream = uuid.uuid4()
    await pg_store.append(
        stream, [NewEvent(type="Tick", data={})], expected_version=0, stream_type="tick"
    )
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, pg_url, 4)
        outcomes = await asyncio.gather(
            *(
                stores[n % 4].append(
                    stream,
                    [NewEvent(type="Tick", data={"n": n})],
                    expected_version=1,
                    stream_type="tick",
                )
                for n in range(12)
            ),
            return_exceptions=True,
        )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    conflicts = [o for o in outcomes if isinstance(o, ConcurrencyError)]
    assert len(conflicts) == 11
    assert all(c.expected == 1 and c.actual == 2 for c in conflicts)
    await verify_stream(pg_store.backend, stream)


async def test_the_same_event_appended_concurrently_is_recorded_once(
    pg_store: EventStore, pg_url: str
) -> None:
    stream = uuid.uuid4()
    event = NewEvent(type="Tick", data={"once": True})
    async with AsyncExitStack() as stack:
        stores = await open_stores(stack, pg_url, 4)
        results = await asyncio.gather(
            *(
                stores[n % 4].append(stream, [event], stream_type="tick")
                for n in range(16)
            )
        )
    assert {r.positions for r in results} == {results[0].positions}
    assert sum(not r.duplicate for r in results) == 1
    assert len([e async for e in pg_store.read_stream(stream)]) == 1


async def test_writers_that_remember_the_same_head_race_cleanly(pg_url: str) -> None:
    """Both stores know version 1 and its hash; one appends version 2, the other loses."""
    stream = uuid.uuid4()
    async with AsyncExitStack() as stack:
        first, second = await open_stores(stack, pg_url, 2)
        await first.append(
            stream,
            [NewEvent(type="Tick", data={"n": 1})],
            expected_version=0,
            stream_type="tick",
        )
        assert (
            len([e async for e in second.read_stream(stream)]) == 1
        )  # now both know the head
        outcomes = await asyncio.gather(
            first.append(
                stream,
                [NewEvent(type="Tick", data={"n": 2})],
                expected_version=1,
                stream_type="tick",
            ),
            second.append(
                stream,
                [NewEvent(type="Tick", data={"n": 3})],
                expected_version=1,
                stream_type="tick",
            ),
            return_exceptions=True,
        )
        [conflict] = [o for o in outcomes if isinstance(o, ConcurrencyError)]
        assert (conflict.expected, conflict.actual) == (1, 2)
        # The loser's memory of the head is stale; its next append still lands right.
        loser = second if outcomes[1] is conflict else first
        result = await loser.append(
            stream,
            [NewEvent(type="Tick", data={"n": 4})],
            expected_version=2,
            stream_type="tick",
        )
        assert result.version == 3
        await verify_stream(first.backend, stream)
