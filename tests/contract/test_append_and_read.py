"""The log on both backends: append, optimistic concurrency, idempotency, reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from eventstore import (
    AppendResult,
    Checkpoint,
    ConcurrencyError,
    EventStore,
    ExecutionStarted,
    IdempotencyConflict,
    NewEvent,
    ValidationError,
)
from tests.helpers import count_events, wait_for_horizon


def note(n: int, **extra: object) -> NewEvent:
    return NewEvent(type="Note", data={"n": n, **extra})


async def test_append_to_a_new_stream_and_read_it_back(store: EventStore) -> None:
    stream = uuid.uuid4()
    occurred = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event = NewEvent(
        type="Note",
        data={"text": "hello", "nested": {"b": 1, "a": [1, 2.5]}},
        metadata={"actor": "tester", "correlation_id": "c-1", "tenant": "acme"},
        occurred_at=occurred,
    )
    result = await store.append(stream, [event], expected_version=0, stream_type="note")
    assert result.version == 1
    assert len(result.positions) == 1

    [recorded] = [e async for e in store.read_stream(stream)]
    assert recorded.stream_id == stream
    assert recorded.version == 1
    assert recorded.position == result.positions[0]
    assert recorded.event_id == event.event_id
    assert recorded.type == "Note"
    assert recorded.stream_type == "note"
    assert recorded.data == {"text": "hello", "nested": {"a": [1, 2.5], "b": 1}}
    assert recorded.metadata.actor == "tester"
    assert recorded.metadata.correlation_id == "c-1"
    assert recorded.metadata.model_extra == {"tenant": "acme"}
    assert recorded.occurred_at == occurred
    assert recorded.recorded_at.tzinfo is not None
    assert len(recorded.hash) == 32


async def test_several_events_append_atomically_in_order(store: EventStore) -> None:
    stream = uuid.uuid4()
    result = await store.append(
        stream, [note(1), note(2), note(3)], expected_version=0, stream_type="note"
    )
    assert result.version == 3
    assert list(result.positions) == sorted(result.positions)
    events = [e async for e in store.read_stream(stream)]
    assert [e.version for e in events] == [1, 2, 3]
    assert [e.data["n"] for e in events] == [1, 2, 3]


async def test_expected_version_mismatch_raises_and_writes_nothing(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    await store.append(
        stream, [note(1), note(2)], expected_version=0, stream_type="note"
    )
    before = await count_events(store)
    with pytest.raises(ConcurrencyError) as caught:
        await store.append(stream, [note(3)], expected_version=1, stream_type="note")
    assert caught.value.stream_id == stream
    assert caught.value.expected == 1
    assert caught.value.actual == 2
    assert str(stream) in str(caught.value)
    with pytest.raises(ConcurrencyError):
        await store.append(stream, [note(3)], expected_version=0, stream_type="note")
    assert await count_events(store) == before


async def test_expected_version_zero_on_a_new_stream_and_none_for_any(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    with pytest.raises(ConcurrencyError) as caught:
        await store.append(stream, [note(1)], expected_version=3, stream_type="note")
    assert caught.value.actual == 0
    assert (
        await store.append(stream, [note(1)], expected_version=None, stream_type="note")
    ).version == 1
    assert (await store.append(stream, [note(2)], stream_type="note")).version == 2
    assert (
        await store.append(stream, [note(3)], expected_version=2, stream_type="note")
    ).version == 3


async def test_reappending_recorded_events_returns_the_original_result(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    events = [note(1), note(2)]
    first = await store.append(stream, events, expected_version=0, stream_type="note")
    await store.append(stream, [note(3)], expected_version=2, stream_type="note")
    before = await count_events(store)
    # Checked before expected_version: the stale expectation does not matter.
    again = await store.append(stream, events, expected_version=0, stream_type="note")
    assert again == first
    assert again.duplicate
    assert not first.duplicate
    assert await count_events(store) == before


async def test_an_event_id_reused_for_other_content_is_refused(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    original = note(1)
    await store.append(stream, [original], expected_version=0, stream_type="note")
    before = await count_events(store)
    forged = NewEvent(type="Note", data={"n": 2}, event_id=original.event_id)
    with pytest.raises(IdempotencyConflict) as caught:
        await store.append(stream, [forged], stream_type="note")
    assert caught.value.event_id == original.event_id
    assert "content differs" in str(caught.value)
    with pytest.raises(IdempotencyConflict, match="belongs to stream"):
        await store.append(uuid.uuid4(), [original], stream_type="note")
    with pytest.raises(IdempotencyConflict, match="only some"):
        await store.append(stream, [original, note(5)], stream_type="note")
    assert not isinstance(caught.value, ValidationError)  # a conflict, not bad input
    assert await count_events(store) == before


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "nothing to append"),
        (["not an event"], "NewEvent"),
    ],
)
async def test_malformed_appends_are_refused(
    store: EventStore, events: list[NewEvent], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await store.append(uuid.uuid4(), events, stream_type="note")
    assert await count_events(store) == 0


async def test_bad_arguments_are_refused_and_nothing_is_written(
    store: EventStore,
) -> None:
    event = note(1)
    with pytest.raises(ValidationError, match="UUID"):
        await store.append("not-a-uuid", [event], stream_type="note")
    with pytest.raises(ValidationError, match="twice"):
        await store.append(uuid.uuid4(), [event, event], stream_type="note")
    with pytest.raises(ValidationError, match="expected_version"):
        await store.append(
            uuid.uuid4(), [event], expected_version=-1, stream_type="note"
        )
    with pytest.raises(ValidationError, match="stream type"):
        await store.append(uuid.uuid4(), [event], stream_type="Bad Type")
    assert await count_events(store) == 0


async def test_registered_payloads_are_validated_before_anything_is_written(
    store: EventStore,
) -> None:
    with pytest.raises(ValidationError, match="worker_id"):
        NewEvent(type="ExecutionStarted", data={"worker_id": 17})
    with pytest.raises(ValidationError, match="surprise: Extra inputs"):
        NewEvent(type="ExecutionStarted", data={"worker_id": "w", "surprise": 1})
    with pytest.raises(ValidationError, match="not a JSON value"):
        NewEvent(type="Note", data={"when": datetime.now(UTC)})
    with pytest.raises(ValidationError, match="timezone-aware"):
        NewEvent(type="Note", data={}, occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValidationError, match="metadata"):
        NewEvent(type="Note", data={}, metadata={"actor": ["not", "a", "string"]})
    with pytest.raises(ValidationError, match="not a JSON value"):
        NewEvent(type="Note", data={}, metadata={"free": {1, 2}})
    with pytest.raises(ValidationError, match="event type"):
        NewEvent(type="has spaces", data={})
    assert await count_events(store) == 0
    started = NewEvent.of(ExecutionStarted(worker_id="w"))
    assert started.type == "ExecutionStarted"
    assert started.schema_version == 1


async def test_read_all_is_in_global_order_and_resumes_after_a_checkpoint(
    store: EventStore,
) -> None:
    streams = [uuid.uuid4() for _ in range(3)]
    for round_ in range(3):
        for stream in streams:
            await store.append(stream, [note(round_)], stream_type="note")
    # Another test's open transaction on the server may hold the horizon back.
    await wait_for_horizon(store)
    events = [e async for e in store.read_all(batch_size=2)]
    assert len(events) == 9
    assert [e.checkpoint for e in events] == sorted(e.checkpoint for e in events)
    assert all(isinstance(e.checkpoint, Checkpoint) for e in events)
    middle = events[4]
    rest = [e async for e in store.read_all(after=middle.checkpoint)]
    assert [e.event_id for e in rest] == [e.event_id for e in events[5:]]
    by_position = [e async for e in store.read_all(after=middle.position)]
    assert [e.event_id for e in by_position] == [e.event_id for e in events[5:]]
    assert [e async for e in store.read_all(after=events[-1].checkpoint)] == []


async def test_read_stream_of_an_unknown_stream_is_empty(store: EventStore) -> None:
    assert [e async for e in store.read_stream(uuid.uuid4())] == []


async def test_system_streams_are_the_stores_own(store: EventStore) -> None:
    stream = uuid.uuid4()
    with pytest.raises(ValidationError, match="system streams"):
        await store.append(stream, [note(1)], stream_type="system")
    assert [e async for e in store.read_stream(stream)] == []
    await store.log.append_system(stream, [note(1)], expected_version=0)
    [event] = [e async for e in store.read_stream(stream)]
    assert event.stream_type == "system"


async def test_append_result_is_a_value(store: EventStore) -> None:
    result = await store.append(uuid.uuid4(), [note(1)], stream_type="note")
    assert result == AppendResult(version=1, positions=result.positions)
