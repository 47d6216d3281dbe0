"""What cannot be applied is refused with EventNotApplicable, never a bare Python error.

The fold refuses such events, and so does the reading of archive receipts.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from eventstore import (
    EventNotApplicable,
    JSONObject,
    RecordedEvent,
    apply_event,
    fold_events,
    streams_archived_by,
)
from eventstore.events.system_payloads import ARCHIVE_RECEIPTS_STREAM
from tests.unit.test_fold import created, event

if TYPE_CHECKING:
    from eventstore.jsonvalues import JSONValue

BIG = 2**1023  # a JSON integer; twice it is beyond the largest double


@pytest.mark.parametrize(
    ("deltas", "failing"),
    [
        ([BIG, BIG, 0.5], 4),  # the recipe: the second BIG is the poison
        ([1e308, 1e308], 4),  # a float sum that would be infinite
        ([-BIG, -BIG], 4),
        ([BIG, "lots"], 4),  # a string where a number belongs
        ([1, [2]], 4),
    ],
)
def test_a_metric_the_fold_cannot_sum_is_not_applicable(
    deltas: list[JSONValue], failing: int
) -> None:
    events = [created(), event(2, "ExecutionStarted", {"worker_id": "w"}, 1)]
    events += [
        event(3 + i, "ExecutionProgressed", {"step": i, "metrics": {"x": d}}, 2 + i)
        for i, d in enumerate(deltas)
    ]
    with pytest.raises(EventNotApplicable) as folded:
        fold_events(events)
    assert folded.value.version == failing
    assert folded.value.event_id == events[failing - 1].event_id
    assert folded.value.position == events[failing - 1].position
    assert "\n" not in str(folded.value)
    state = fold_events(events[: failing - 1])
    with pytest.raises(EventNotApplicable) as applied:
        apply_event(state, events[failing - 1])
    assert applied.value.event_id == events[failing - 1].event_id


def test_sums_up_to_the_largest_float_are_kept() -> None:
    events = [created(), event(2, "ExecutionStarted", {"worker_id": "w"}, 1)]
    events += [
        event(3, "ExecutionProgressed", {"step": 1, "metrics": {"x": BIG}}, 2),
        event(4, "ExecutionProgressed", {"step": 2, "metrics": {"x": 0.5}}, 3),
    ]
    state = fold_events(events)
    assert state is not None
    assert state.metrics["x"] == float(BIG)


@pytest.mark.parametrize(
    "data",
    [
        {},  # no worker_id
        {"worker_id": "w", "metrics": {"x": None}},
        {"worker_id": "w", "metrics": {"x": {"nested": 1}}},
    ],
)
def test_unreadable_data_is_not_applicable(data: JSONObject) -> None:
    with pytest.raises(EventNotApplicable) as folded:
        fold_events([created(), event(2, "ExecutionStarted", data, 1)])
    assert folded.value.version == 2


def _receipt(data: JSONObject) -> RecordedEvent:
    return event(1, "ArchiveReceipt", data, 0).model_copy(
        update={"stream_id": ARCHIVE_RECEIPTS_STREAM, "stream_type": "system"}
    )


def test_the_streams_a_receipt_names_are_the_ones_to_forget() -> None:
    removed = [uuid.uuid4(), uuid.uuid4()]
    receipt = _receipt(
        {
            "file": "f.jsonl.gz",
            "file_sha256": "0" * 64,
            "manifest_sha256": "1" * 64,
            "finished_before": "2026-01-01T00:00:00+00:00",
            "events": 8,
            "streams": [
                {"stream_id": str(stream), "version": 4, "hash": "2" * 64}
                for stream in removed
            ],
        }
    )
    assert streams_archived_by([created(), receipt]) == removed
    assert streams_archived_by([created()]) == []


def test_a_receipt_that_does_not_read_as_one_is_not_applicable() -> None:
    receipt = _receipt({"file": "f.jsonl.gz", "streams": "all of them"})
    with pytest.raises(EventNotApplicable) as refused:
        streams_archived_by([receipt])
    assert refused.value.event_id == receipt.event_id
    assert "not a readable archive receipt" in str(refused.value)
