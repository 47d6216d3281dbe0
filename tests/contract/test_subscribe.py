"""Subscriptions: catch up from a checkpoint, then follow live appends."""

from __future__ import annotations

import asyncio
import uuid

from eventstore import EventStore, NewEvent, RecordedEvent
from tests.helpers import eventually


async def test_catch_up_then_live_with_filters(store: EventStore, url: str) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    await store.append(first, [NewEvent(type="A", data={"n": 0})], stream_type="note")
    await store.append(second, [NewEvent(type="B", data={"n": 1})], stream_type="note")

    received: list[RecordedEvent] = []
    only_first: list[RecordedEvent] = []
    only_b: list[RecordedEvent] = []

    async def collect(into: list[RecordedEvent], count: int, **filters: object) -> None:
        async with store.subscribe(**filters) as events:  # type: ignore[arg-type]
            async for event in events:
                into.append(event)
                if len(into) == count:
                    return

    tasks = [
        asyncio.create_task(collect(received, 4)),
        asyncio.create_task(collect(only_first, 2, stream_id=first)),
        asyncio.create_task(collect(only_b, 2, types=["B"])),
    ]
    # Every subscriber has read the log so far: what follows reaches it live.
    await eventually(
        lambda: (len(received), len(only_first), len(only_b)) == (2, 1, 1),
        "caught up",
    )
    # Live: one append through this store, one through another (polled).
    await store.append(first, [NewEvent(type="A", data={"n": 2})], stream_type="note")
    async with EventStore.open(url) as other:
        await other.append(
            second, [NewEvent(type="B", data={"n": 3})], stream_type="note"
        )
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)

    assert [e.data["n"] for e in received] == [0, 1, 2, 3]
    assert [e.data["n"] for e in only_first] == [0, 2]
    assert [e.data["n"] for e in only_b] == [1, 3]


async def test_subscribe_resumes_after_a_checkpoint_or_position(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    await store.append(
        stream,
        [NewEvent(type="A", data={"n": n}) for n in range(5)],
        stream_type="note",
    )
    events = [e async for e in store.read_stream(stream)]
    for after in (events[2].checkpoint, events[2].position):
        subscription = store.subscribe(after=after)
        got = [await anext(subscription) for _ in range(2)]
        await subscription.aclose()
        assert [e.data["n"] for e in got] == [3, 4]
        assert subscription.checkpoint == events[4].checkpoint
