"""The pure fold: statuses, timestamps, durations and summed metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError as PydanticValidationError

from eventstore import (
    EventNotApplicable,
    ExecutionState,
    ExecutionStatus,
    JSONObject,
    RecordedEvent,
    ValidationError,
    apply_event,
    fold_events,
)
from eventstore.events.envelope import EventMetadata

START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
STREAM = uuid.uuid4()
IDS: JSONObject = {
    "message_id": str(uuid.uuid4()),
    "graph_id": str(uuid.uuid4()),
    "thread_id": str(uuid.uuid4()),
}


def event(version: int, event_type: str, data: JSONObject, ms: float) -> RecordedEvent:
    return RecordedEvent.model_construct(
        position=100 + version,
        stream_id=STREAM,
        version=version,
        stream_type="execution",
        event_id=uuid.uuid4(),
        type=event_type,
        schema_version=1,
        data=data,
        metadata=EventMetadata(),
        occurred_at=START + timedelta(milliseconds=ms),
        recorded_at=START,
        transaction_id=None,
        hash=b"",
    )


def created(ms: float = 0) -> RecordedEvent:
    return event(1, "ExecutionCreated", {**IDS, "inputs": {"q": 1}, "attempt": 2}, ms)


def test_a_full_run() -> None:
    state = fold_events(
        [
            created(),
            event(2, "ExecutionStarted", {"worker_id": "w"}, 1500.4),
            event(
                3,
                "ExecutionProgressed",
                {"step": "a", "metrics": {"prompt_tokens": 10, "cost_usd": 0.1}},
                2000,
            ),
            event(4, "ExecutionCancellationRequested", {"reason": None}, 2100),
            event(5, "ExecutionCancellationRequested", {"reason": "again"}, 2200),
            event(
                6,
                "ExecutionProgressed",
                {
                    "step": "b",
                    "metrics": {"prompt_tokens": 5, "cost_usd": 0.2, "x": -1},
                },
                2500,
            ),
            event(
                7,
                "ExecutionCompleted",
                {"result": [1], "metrics": {"completion_tokens": 7}},
                4000.9,
            ),
        ]
    )
    assert state is not None
    assert state.status is ExecutionStatus.COMPLETED
    assert state.attempt == 2
    assert state.inputs == {"q": 1}
    assert state.queue_ms == 1500
    assert state.run_ms == 2500
    assert state.total_ms == 4000
    assert state.steps_completed == 2
    assert state.metrics == pytest.approx(
        {"prompt_tokens": 15, "cost_usd": 0.3, "x": -1, "completion_tokens": 7}
    )
    assert state.cancel_requested
    assert state.model_dump()["cancel_requested"] is True
    assert state.cancel_requested_at == START + timedelta(milliseconds=2100)
    assert state.result == [1]
    assert state.version == 7
    assert state.last_position == 107


def test_durations_stay_null_until_both_ends_happened() -> None:
    state = fold_events(
        [created(), event(2, "ExecutionFailed", {"error": {"type": "E"}}, 50)]
    )
    assert state is not None
    assert state.status is ExecutionStatus.FAILED
    assert state.queue_ms is None
    assert state.run_ms is None
    assert state.total_ms == 50
    assert state.error == {"type": "E"}


def test_no_events_fold_to_nothing() -> None:
    assert fold_events([]) is None


@pytest.mark.parametrize(
    "events",
    [
        [event(1, "ExecutionStarted", {"worker_id": "w"}, 0)],
        [created(), event(3, "ExecutionStarted", {"worker_id": "w"}, 0)],
        [created(), event(2, "ExecutionCreated", IDS, 0)],
        [created(), event(2, "Unknown", {}, 0)],
    ],
)
def test_events_the_fold_cannot_apply_are_refused(events: list[RecordedEvent]) -> None:
    with pytest.raises(EventNotApplicable):
        fold_events(events)


def test_folding_leaves_the_earlier_state_as_it_was() -> None:
    """States share nothing mutable: a later fold never changes an earlier one."""
    progressed = event(
        3, "ExecutionProgressed", {"step": "a", "metrics": {"tokens": 10}}, 20
    )
    before = fold_events(
        [created(), event(2, "ExecutionStarted", {"worker_id": "w"}, 10), progressed]
    )
    assert before is not None
    snapshot = before.model_dump()
    after = apply_event(
        before,
        event(4, "ExecutionProgressed", {"step": "b", "metrics": {"tokens": 5}}, 30),
    )
    also = fold_events(
        [event(4, "ExecutionCompleted", {"metrics": {"tokens": 1}}, 40)], before
    )
    assert after.metrics == {"tokens": 15}
    assert also is not None
    assert also.metrics == {"tokens": 11}
    assert before.model_dump() == snapshot
    assert progressed.data == {"step": "a", "metrics": {"tokens": 10}}


def test_a_folded_state_equals_the_validated_model_of_its_fields() -> None:
    state = fold_events(
        [created(), event(2, "ExecutionStarted", {"worker_id": "w"}, 5)]
    )
    assert state is not None
    assert state == ExecutionState.model_validate(state.model_dump())
    assert state.model_copy(update={"attempt": 3}).attempt == 3
    with pytest.raises(PydanticValidationError):
        state.attempt = 4  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    ("events", "bad_version", "words"),
    [
        ([event(1, "ExecutionStarted", {"worker_id": "w"}, 0)], 1, "starts with"),
        (
            [created(), event(3, "ExecutionStarted", {"worker_id": "w"}, 0)],
            3,
            "does not follow",
        ),
        ([created(), event(2, "ExecutionStarted", {}, 0)], 2, "KeyError"),
        (
            [created(), event(2, "ExecutionProgressed", {"metrics": {"t": "x"}}, 0)],
            2,
            "TypeError",
        ),
        ([event(1, "ExecutionCreated", {"message_id": "nope"}, 0)], 1, "message_id"),
    ],
)
def test_an_event_the_fold_cannot_apply_is_named(
    events: list[RecordedEvent], bad_version: int, words: str
) -> None:
    with pytest.raises(EventNotApplicable) as raised:
        fold_events(events)
    assert raised.value.version == bad_version
    assert raised.value.position == 100 + bad_version
    assert raised.value.event_id == events[-1].event_id
    assert raised.value.stream_id == STREAM
    assert words in str(raised.value)
    # A finding about what is stored, not a caller's malformed input.
    assert not isinstance(raised.value, ValidationError)
