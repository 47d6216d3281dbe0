"""`executions.follow`: one run's events as they are appended, until it ends."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Final

import pytest

from eventstore import EventStore, ExecutionNotFound, ExecutionStatus, ValidationError
from tests.helpers import execution_in

if TYPE_CHECKING:
    from eventstore import RecordedEvent
    from tests.helpers import References

WITHIN: Final = 30  # seconds: a deadline, never an expected duration


async def _collect(
    store: EventStore, run: uuid.UUID, *, after_version: int = 0
) -> list[RecordedEvent]:
    async with asyncio.timeout(WITHIN):
        return [
            event
            async for event in store.executions.follow(run, after_version=after_version)
        ]


async def test_a_follower_sees_another_writers_events_as_they_come(
    url: str, store: EventStore, refs: References
) -> None:
    run = await store.executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id, inputs={}
    )
    follower = asyncio.create_task(_collect(store, run))
    # Another store on the same database: on PostgreSQL the follower is woken
    # by the server's notification, not by this process's own appends.
    async with EventStore.open(url) as writer:
        await writer.executions.start(run, worker_id="w")
        for step in range(3):
            await writer.executions.progress(run, step=f"s{step}")
            await asyncio.sleep(0)  # let the follower read between appends
        await writer.executions.label(run, set={"stage": "done"})
        await writer.executions.complete(run, result={"ok": True})
    events = await follower
    assert [event.version for event in events] == [1, 2, 3, 4, 5, 6, 7]
    assert events[-1].type == "ExecutionCompleted"


async def test_following_a_finished_run_ends_at_once(
    store: EventStore, refs: References
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await store.executions.label(run, set={"reviewed": "yes"})
    everything = await _collect(store, run)
    assert [event.type for event in everything] == [
        "ExecutionCreated",
        "ExecutionStarted",
        "ExecutionCompleted",
        "ExecutionLabelled",
    ]
    assert [e.version for e in await _collect(store, run, after_version=2)] == [3, 4]
    assert await _collect(store, run, after_version=4) == []


async def test_a_follower_resumes_after_the_version_it_saw(
    store: EventStore, refs: References
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    follower = asyncio.create_task(_collect(store, run, after_version=2))
    await store.executions.fail(run, error={"type": "Boom", "message": "x"})
    assert [(e.version, e.type) for e in await follower] == [(3, "ExecutionFailed")]


async def test_following_what_is_not_a_run_is_refused(store: EventStore) -> None:
    with pytest.raises(ExecutionNotFound):
        await _collect(store, uuid.uuid4())
    with pytest.raises(ValidationError):
        await _collect(store, "not-an-id")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="after_version"):
        await _collect(store, uuid.uuid4(), after_version=-1)
