"""The status table and the error tree, as pure data."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import (
    TERMINAL_STATUSES,
    AppendOnlyViolation,
    ConcurrencyError,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    EventNotApplicable,
    EventStoreError,
    ExecutionNotFound,
    ExecutionStatus,
    IdempotencyConflict,
    IntegrityError,
    InvalidTransition,
    NewEvent,
    ProjectionError,
    RecordAltered,
    RecordedEvent,
    ReferenceNotFound,
    SchemaNotMigrated,
    ValidationError,
    WaitTimeout,
)
from eventstore.audit.replay import AsOf
from eventstore.status import ALLOWED_FROM, RESULTING_STATUS, is_allowed


def test_statuses_are_the_specs_strings() -> None:
    assert [s.value for s in ExecutionStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
    ]
    assert ExecutionStatus("running") is ExecutionStatus.RUNNING
    assert isinstance(ExecutionStatus.RUNNING, str)
    assert str(ExecutionStatus.RUNNING) == "running"
    assert {"completed", "failed", "cancelled"} == TERMINAL_STATUSES
    assert {s for s in ExecutionStatus if s.is_terminal} == TERMINAL_STATUSES


def test_terminal_statuses_allow_only_labels_and_created_only_starts_a_stream() -> None:
    for status in TERMINAL_STATUSES:
        assert {
            event_type
            for event_type in RESULTING_STATUS
            if is_allowed(status, event_type)
        } == {"ExecutionLabelled"}
    assert all(is_allowed(status, "ExecutionLabelled") for status in ExecutionStatus)
    assert RESULTING_STATUS["ExecutionLabelled"] is None
    assert not any(is_allowed(status, "ExecutionCreated") for status in ExecutionStatus)
    assert set(ALLOWED_FROM) == set(RESULTING_STATUS) - {"ExecutionCreated"}
    assert not is_allowed(ExecutionStatus.PENDING, "SomethingElse")


def test_every_error_is_an_event_store_error_with_stdlib_mixins() -> None:
    stream = uuid.uuid4()
    cases: list[tuple[EventStoreError, tuple[type[BaseException], ...]]] = [
        (ConfigurationError("bad url"), (ValueError,)),
        (
            DatabaseUnavailable(url="u", reason="refused"),
            (DatabaseError, ConnectionError),
        ),
        (SchemaNotMigrated(url="u", current=None, head="0001"), (DatabaseError,)),
        (ConcurrencyError(stream_id=stream, expected=1, actual=2), ()),
        (InvalidTransition(execution_id=stream, status="pending", event_type="X"), ()),
        (ExecutionNotFound(execution_id=stream), (LookupError,)),
        (ReferenceNotFound(entity="graph", entity_id=stream), (LookupError,)),
        (ValidationError("bad"), (ValueError,)),
        (IdempotencyConflict(event_id=stream, stream_id=stream, reason="r"), ()),
        (RecordAltered(stream_id=stream, position=3, reason="r"), (IntegrityError,)),
        (
            AppendOnlyViolation(stream_id=None, position=None, reason="r"),
            (IntegrityError,),
        ),
        (
            EventNotApplicable(
                stream_id=stream, version=2, position=7, event_id=stream, reason="r"
            ),
            (),
        ),
        (
            WaitTimeout(execution_id=stream, timeout=1.5, status="running"),
            (TimeoutError,),
        ),
        (ProjectionError(projection="p", position=1, event_id=stream, reason="r"), ()),
    ]
    for error, mixins in cases:
        assert isinstance(error, EventStoreError)
        for mixin in mixins:
            assert isinstance(error, mixin)
        assert "\n" not in str(error)
    # Each class means one thing: a stored event the fold cannot apply and a
    # reused id are not malformed input, and a refusal is not a finding.
    for error, _ in cases:
        if isinstance(error, (EventNotApplicable, IdempotencyConflict)):
            assert not isinstance(error, ValidationError)
    assert not issubclass(AppendOnlyViolation, RecordAltered)
    assert not issubclass(RecordAltered, AppendOnlyViolation)
    conflict = ConcurrencyError(stream_id=stream, expected=1, actual=2)
    assert (conflict.stream_id, conflict.expected, conflict.actual) == (stream, 1, 2)
    transition = InvalidTransition(
        execution_id=stream, status="completed", event_type="ExecutionStarted"
    )
    assert str(stream) in str(transition)
    assert "completed" in str(transition)
    assert "ExecutionStarted" in str(transition)
    with pytest.raises(TypeError):
        ConcurrencyError(stream, 1, 2)  # type: ignore[call-arg]
    # They cross processes (verify's): each comes back as it was made.
    for error, _ in cases:
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
        assert type(copy) is type(error)
        assert (str(copy), copy.args, vars(copy)) == (
            str(error),
            error.args,
            vars(error),
        )


def test_as_of_applies_every_bound_it_has() -> None:
    at = datetime(2026, 11, 26, tzinfo=UTC)
    new = NewEvent(type="Note", data={})
    event = RecordedEvent.from_log(
        position=10,
        stream_id=new.event_id,
        version=1,
        stream_type="execution",
        event_id=new.event_id,
        event_type="Note",
        schema_version=1,
        data={},
        metadata=new.metadata,
        occurred_at=at,
        recorded_at=at,
        transaction_id=None,
        chain_hash=bytes(32),
    )
    assert AsOf().includes(event)
    assert AsOf(position=10, time=at).includes(event)
    assert not AsOf(position=9, time=at).includes(event)
    assert not AsOf(position=10, time=at - timedelta(microseconds=1)).includes(event)
