"""The fold refuses what it cannot apply with EventNotApplicable, never a bare Python error."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from eventstore import EventNotApplicable, JSONObject, apply_event, fold_events
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
