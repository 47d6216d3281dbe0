"""The store's own upcaster: ExecutionProgressed v1 (flat usage) to v2 (nested metrics)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from eventstore import (
    EventPayload,
    ExecutionProgressed,
    NewEvent,
    RecordedEvent,
    ValidationError,
    register_payload,
)
from eventstore.chains import event_hash
from eventstore.events import register_upcaster, upcast
from eventstore.events.envelope import EventMetadata
from eventstore.events.lifecycle_upcasters import execution_progressed_v1_to_v2
from eventstore.hashing import GENESIS_HASH, canonical_json, chain_hash
from eventstore.hashing import canonical_event as canonical_text
from eventstore.log import upcast_event

V1: dict[str, Any] = {
    "step": "retrieve",
    "detail": {"docs": [1, 2], "query": "q3 revenue"},
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "cost_usd": 0.0021,
}


def test_progressed_is_at_version_2_and_writers_refuse_version_1() -> None:
    assert ExecutionProgressed.schema_version == 2
    assert NewEvent.of(ExecutionProgressed(step="s")).schema_version == 2
    with pytest.raises(ValidationError, match="schema_version 2, not 1"):
        NewEvent(type="ExecutionProgressed", data=V1, schema_version=1)


def test_v1_usage_is_nested_under_metrics() -> None:
    version, data = upcast("ExecutionProgressed", 1, V1)
    assert version == 2
    assert data == {
        "step": "retrieve",
        "detail": {"docs": [1, 2], "query": "q3 revenue"},
        "metrics": {"prompt_tokens": 120, "completion_tokens": 30, "cost_usd": 0.0021},
    }
    # Exactly what a v2 writer records for the same report.
    written = NewEvent.of(
        ExecutionProgressed(
            step="retrieve",
            detail=V1["detail"],
            metrics={"prompt_tokens": 120, "completion_tokens": 30, "cost_usd": 0.0021},
        )
    )
    assert data == written.data


def test_unreported_usage_stays_absent_and_detail_defaults_to_none() -> None:
    assert upcast("ExecutionProgressed", 1, {"step": 3}) == (
        2,
        {"step": 3, "detail": None, "metrics": {}},
    )
    assert upcast("ExecutionProgressed", 1, {"step": "s", "prompt_tokens": 0}) == (
        2,
        {"step": "s", "detail": None, "metrics": {"prompt_tokens": 0}},
    )
    assert upcast("ExecutionProgressed", 1, {"step": "s", "cost_usd": 2}) == (
        2,
        {"step": "s", "detail": None, "metrics": {"cost_usd": 2}},
    )


def test_the_upcaster_is_pure() -> None:
    stored = copy.deepcopy(V1)
    first = execution_progressed_v1_to_v2(stored)
    assert stored == V1  # the input is untouched
    first["detail"]["docs"].append(3)
    first["metrics"]["prompt_tokens"] = 0
    assert stored == V1  # and not reachable through the output
    assert (
        execution_progressed_v1_to_v2(stored) == upcast("ExecutionProgressed", 1, V1)[1]
    )


def test_current_data_passes_through_untouched() -> None:
    current = {"step": "s", "detail": None, "metrics": {"prompt_tokens": 1}}
    version, data = upcast("ExecutionProgressed", 2, current)
    assert version == 2
    assert data is current


@pytest.mark.parametrize(
    ("v1", "problem"),
    [
        ({"detail": "no step"}, "step: Field required"),
        ({"name": "retrieve"}, "name: Extra inputs are not permitted"),
        ({"step": "s", "metrics": {"prompt_tokens": 1}}, "metrics: Extra inputs"),
        ({"step": "s", "prompt_tokens": "12"}, "prompt_tokens"),
        ({"step": "s", "prompt_tokens": 1.5}, "prompt_tokens"),
        ({"step": "s", "completion_tokens": True}, "completion_tokens"),
        ({"step": "s", "completion_tokens": -1}, "greater than or equal to 0"),
        ({"step": "s", "cost_usd": None}, "cost_usd"),
        ({"step": "s", "cost_usd": -0.5}, "cost_usd"),
        ({"step": None}, "step"),
    ],
)
def test_a_v1_payload_that_cannot_be_lifted_is_refused(
    v1: dict[str, Any], problem: str
) -> None:
    stored = copy.deepcopy(v1)
    with pytest.raises(ValidationError) as caught:
        upcast("ExecutionProgressed", 1, stored)
    message = str(caught.value)
    assert message.startswith(
        "invalid ExecutionProgressed v1 data (cannot upcast it to v2)"
    )
    assert problem in message
    assert stored == v1


def test_the_upcaster_is_registered_once() -> None:
    with pytest.raises(ValidationError, match="already registered"):
        register_upcaster("ExecutionProgressed", 1)(execution_progressed_v1_to_v2)


def stored_v1_event(data: dict[str, Any]) -> RecordedEvent:
    """A v1 event as the backends read it back, with its hash over the stored form."""
    stream, event_id = uuid.uuid4(), uuid.uuid4()
    occurred = datetime(2025, 6, 1, 12, tzinfo=UTC)
    text = canonical_text(
        stream_id=stream,
        version=1,
        event_id=event_id,
        event_type="ExecutionProgressed",
        schema_version=1,
        data_json=canonical_json(data),
        metadata_json="{}",
        occurred_at=occurred,
    )
    return RecordedEvent.model_construct(
        position=1,
        stream_id=stream,
        version=1,
        stream_type="execution",
        event_id=event_id,
        type="ExecutionProgressed",
        schema_version=1,
        data=data,
        metadata=EventMetadata(),
        occurred_at=occurred,
        recorded_at=occurred,
        transaction_id=None,
        hash=chain_hash(GENESIS_HASH, text),
    )


def test_reads_see_v2_while_the_hash_covers_the_stored_v1_form() -> None:
    stored = stored_v1_event(copy.deepcopy(V1))
    current = upcast_event(stored)
    assert current.schema_version == 2
    assert current.payload() == ExecutionProgressed(
        step="retrieve",
        detail=V1["detail"],
        metrics={"prompt_tokens": 120, "completion_tokens": 30, "cost_usd": 0.0021},
    )
    assert current.hash == stored.hash  # the recorded hash travels unchanged
    assert stored.schema_version == 1
    assert stored.data == V1
    assert event_hash(GENESIS_HASH, stored) == stored.hash
    # Recomputed from the upcast form it would not match: verify the stored rows.
    assert event_hash(GENESIS_HASH, current) != stored.hash


@register_payload
class Careless(EventPayload):
    """A test type whose v1 upcaster assumes a key and another returns no dict."""

    event_type: ClassVar[str] = "TestCarelessUpcast"
    schema_version: ClassVar[int] = 3

    name: str


@register_upcaster("TestCarelessUpcast", 1)
def _careless_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"name": data["title"]}


@register_upcaster("TestCarelessUpcast", 2)
def _careless_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return data["name"]  # type: ignore[no-any-return]  # deliberately not a dict


def test_any_upcaster_failure_is_the_stores_error_naming_type_and_version() -> None:
    with pytest.raises(
        ValidationError, match="cannot upcast TestCarelessUpcast v1 data: KeyError"
    ):
        upcast("TestCarelessUpcast", 1, {})
    with pytest.raises(
        ValidationError, match="upcaster of TestCarelessUpcast v2 returned str"
    ):
        upcast("TestCarelessUpcast", 1, {"title": "t"})
