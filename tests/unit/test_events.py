"""Envelopes, the payload registry and upcasting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError as PydanticValidationError

from eventstore import (
    ErrorInfo,
    EventPayload,
    ExecutionFailed,
    ExecutionProgressed,
    ExecutionStarted,
    NewEvent,
    RecordedEvent,
    ValidationError,
    jsonvalues,
    register_payload,
    register_upcaster,
)
from eventstore.events import PAYLOAD_TYPES, upcast
from eventstore.events.envelope import EventMetadata, stored_metadata_parser
from eventstore.log import upcast_event
from tests.helpers import typed_json


@register_payload
class ReviewRequested(EventPayload):
    """A payload at version 3, whose v1 and v2 shapes are upcast on read."""

    event_type: ClassVar[str] = "TestReviewRequested"
    schema_version: ClassVar[int] = 3

    reviewer: str
    priority: int


@register_upcaster("TestReviewRequested", 1)
def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"reviewer": data["who"], "urgent": data.get("urgent", False)}


@register_upcaster("TestReviewRequested", 2)
def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return {"reviewer": data["reviewer"], "priority": 1 if data["urgent"] else 3}


@register_payload
class BadlyNamed(EventPayload):
    """Registered under a name the log refuses (quotes are not allowed)."""

    event_type: ClassVar[str] = 'Test"Quoted'


def test_the_seven_lifecycle_payloads_are_registered() -> None:
    assert {
        "ExecutionCreated",
        "ExecutionStarted",
        "ExecutionProgressed",
        "ExecutionCompleted",
        "ExecutionFailed",
        "ExecutionCancellationRequested",
        "ExecutionCancelled",
    } <= set(PAYLOAD_TYPES)
    assert all(PAYLOAD_TYPES[name].schema_version >= 1 for name in PAYLOAD_TYPES)


def test_old_versions_are_upcast_step_by_step() -> None:
    assert upcast("TestReviewRequested", 1, {"who": "ana", "urgent": True}) == (
        3,
        {"reviewer": "ana", "priority": 1},
    )
    assert upcast("TestReviewRequested", 3, {"reviewer": "b", "priority": 2}) == (
        3,
        {"reviewer": "b", "priority": 2},
    )
    assert upcast("Unregistered", 1, {"a": 1}) == (1, {"a": 1})
    stored = RecordedEvent.model_construct(
        position=1,
        stream_id=uuid.uuid4(),
        version=1,
        stream_type="execution",
        event_id=uuid.uuid4(),
        type="TestReviewRequested",
        schema_version=1,
        data={"who": "c"},
        metadata=EventMetadata(),
        occurred_at=datetime.now(UTC),
        recorded_at=datetime.now(UTC),
        transaction_id=None,
        hash=b"",
    )
    current = upcast_event(stored)
    assert current.schema_version == 3
    assert current.payload() == ReviewRequested(reviewer="c", priority=3)


def test_a_missing_upcaster_and_a_duplicate_registration_are_errors() -> None:
    @register_payload
    class Gap(EventPayload):
        event_type: ClassVar[str] = "TestGap"
        schema_version: ClassVar[int] = 2

    with pytest.raises(ValidationError, match="no upcaster"):
        upcast("TestGap", 1, {})
    with pytest.raises(ValidationError, match="already registered"):
        register_upcaster("TestReviewRequested", 1)(_v1_to_v2)

    class Impostor(EventPayload):
        event_type: ClassVar[str] = "ExecutionStarted"

    with pytest.raises(ValidationError, match="already registered"):
        register_payload(Impostor)


def test_writers_record_the_current_version_only() -> None:
    with pytest.raises(ValidationError, match="schema_version 3"):
        NewEvent(type="TestReviewRequested", data={"who": "x"}, schema_version=1)
    event = NewEvent.of(ReviewRequested(reviewer="r", priority=1))
    assert event.schema_version == 3


def test_new_events_carry_ids_and_aware_times() -> None:
    event = NewEvent(type="Note")
    assert isinstance(event.event_id, uuid.UUID)
    assert event.occurred_at.tzinfo is UTC
    assert event.data == {}
    local = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    assert NewEvent(type="Note", occurred_at=local).occurred_at == local
    assert (
        NewEvent(type="Note", event_id=str(event.event_id)).event_id == event.event_id
    )
    with pytest.raises(ValidationError, match="event_id"):
        NewEvent(type="Note", event_id="nope")
    with pytest.raises(ValidationError, match="mapping"):
        NewEvent(type="Note", data=[1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        {"x": 1.5, "y": [1, "a", None, True]},  # orjson writes it
        {"x": 1e21, "y": 2**70, "z": 1.0},  # the exact encoder writes it
        {"x": (1, 2)},  # a tuple: read back as a list
    ],
)
def test_the_data_as_read_is_what_a_reader_parses_back(data: dict[str, Any]) -> None:
    # The lifecycle folds new events from it instead of reading them back.
    for event in (
        NewEvent(type="Noted", data=data),
        NewEvent.of(ExecutionProgressed(step="s", detail=data)),
    ):
        expected = jsonvalues.parse_json_object(event.data_json)
        assert typed_json(event.data_as_read()) == typed_json(expected)


def test_an_envelope_of_a_payload_model_equals_one_of_its_data() -> None:
    """`NewEvent.of` skips validating the dump again: the envelope is the same."""
    at = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    event_id = uuid.uuid4()
    payloads: list[EventPayload] = [
        ExecutionProgressed(
            step="s", detail={"b": [1, 2.5, None], "a": "ü"}, metrics={"t": 3}
        ),
        ExecutionFailed(error=ErrorInfo(type="E", message="m", retryable=True)),
        ExecutionStarted(worker_id="w"),
        ReviewRequested(reviewer="r", priority=1),
    ]
    for payload in payloads:
        for metadata in (None, {"actor": "a", "extra": {"z": 1, "y": [True]}}):
            fast = NewEvent.of(
                payload, metadata=metadata, event_id=event_id, occurred_at=at
            )
            slow = NewEvent(
                type=payload.event_type,
                data=payload.model_dump(mode="json"),
                metadata=metadata,
                event_id=event_id,
                occurred_at=at,
            )
            assert fast == slow
            assert fast.model_fields_set == slow.model_fields_set
            assert (fast.data_json, fast.metadata_json) == (
                slow.data_json,
                slow.metadata_json,
            )
            assert fast.occurred_at.tzinfo is UTC
    # What the model lets through but the log cannot hold is still refused.
    with pytest.raises(ValidationError, match="invalid event type"):
        NewEvent.of(BadlyNamed())
    with pytest.raises(ValidationError, match="NUL"):
        NewEvent.of(ExecutionStarted(worker_id="w\x00"))
    with pytest.raises(ValidationError, match="occurred_at"):
        NewEvent.of(ExecutionStarted(worker_id="w"), occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValidationError, match="metadata"):
        NewEvent.of(ExecutionStarted(worker_id="w"), metadata={"actor": 3})
    assert NewEvent.of(ExecutionStarted(worker_id="w")).event_id != (
        NewEvent.of(ExecutionStarted(worker_id="w")).event_id
    )


def test_error_info_from_an_exception() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        info = ErrorInfo.from_exception(exc, retryable=True)
    assert info.type == "KeyError"
    assert info.retryable
    assert info.traceback is not None
    assert "raise KeyError" in info.traceback
    failed = ExecutionFailed(error=info)
    assert NewEvent.of(failed).data["error"]["type"] == "KeyError"  # type: ignore[index,call-overload]


def test_an_event_read_from_the_log_equals_a_validated_one() -> None:
    """`from_log` skips validation, not fields: the models compare and behave alike."""
    metadata = stored_metadata_parser()
    fields: dict[str, Any] = {
        "position": 7,
        "stream_id": uuid.uuid4(),
        "version": 2,
        "stream_type": "execution",
        "event_id": uuid.uuid4(),
        "schema_version": 1,
        "data": {"worker_id": "w", "n": [1, 2]},
        "occurred_at": datetime.now(UTC),
        "recorded_at": datetime.now(UTC),
        "transaction_id": 99,
    }
    read = RecordedEvent.from_log(
        **fields,
        event_type="ExecutionStarted",
        chain_hash=b"\x01" * 32,
        metadata=metadata('{"actor":"api","correlation_id":"c1","tenant":"t"}'),
    )
    validated = RecordedEvent.model_validate(
        {
            **fields,
            "type": "ExecutionStarted",
            "hash": b"\x01" * 32,
            "metadata": {"actor": "api", "correlation_id": "c1", "tenant": "t"},
        }
    )
    assert read == validated
    assert read.model_dump() == validated.model_dump()
    assert read.metadata.model_extra == {"tenant": "t"}
    assert read.stored_metadata == {
        "actor": "api",
        "correlation_id": "c1",
        "tenant": "t",
    }
    assert read.metadata.model_fields_set == {"actor", "correlation_id"}
    assert read.model_copy(update={"version": 3}).version == 3
    assert read.version == 2
    with pytest.raises(PydanticValidationError):
        read.version = 5  # type: ignore[misc]  # frozen


def test_a_batch_parses_each_metadata_text_once() -> None:
    metadata = stored_metadata_parser()
    first = metadata('{"actor":"api"}')
    assert metadata('{"actor":"api"}') is first  # shared: the model is frozen
    assert metadata('{"actor":"cli"}').actor == "cli"
    assert metadata("{}") == EventMetadata()
    assert stored_metadata_parser()('{"actor":"api"}') is not first
