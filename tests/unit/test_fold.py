"""The pure fold: statuses, timestamps, durations and summed metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import (
    ExecutionStatus,
    JSONObject,
    RecordedEvent,
    ValidationError,
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
    with pytest.raises(ValidationError):
        fold_events(events)
