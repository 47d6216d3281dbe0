"""The one pure fold from an execution's events to its state (ARCHITECTURE §3).

`executions.get()`, the executions projection and the audit all call
`fold_events`/`apply_event`, so they can never disagree. Timestamps and
durations come from the producers' `occurred_at`.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from eventstore import errors
from eventstore.labels import changed_labels
from eventstore.status import RESULTING_STATUS, ExecutionStatus
from eventstore.trusted import construct

if TYPE_CHECKING:
    from collections.abc import Iterable

    from eventstore.events.envelope import RecordedEvent


class ExecutionState(BaseModel):
    """An execution as of some event: the fields of an `executions` row."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    message_id: UUID
    graph_id: UUID
    thread_id: UUID
    status: ExecutionStatus
    inputs: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    worker_id: str | None = None
    attempt: int = 1
    retry_of: UUID | None = None
    queue_ms: int | None = Field(default=None, description="created -> started")
    run_ms: int | None = Field(default=None, description="started -> terminal")
    total_ms: int | None = Field(default=None, description="created -> terminal")
    steps_completed: int = 0
    metrics: dict[str, int | float] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    first_step_at: datetime | None = Field(
        default=None, description="when the first step finished"
    )
    version: int = Field(description="the stream version folded")
    last_position: int = Field(description="the log position of that version")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cancel_requested(self) -> bool:
        """Whether a cancellation was requested (it may not have been honoured)."""
        return self.cancel_requested_at is not None

    @property
    def is_terminal(self) -> bool:
        """Whether the execution reached completed, failed or cancelled."""
        return self.status.is_terminal


_ONE_MS = timedelta(milliseconds=1)
_CANONICAL_UUID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
_LARGEST_FLOAT = sys.float_info.max
# What reading an event's data can raise when the data is not what the fold
# expects (a missing key, a string where a number belongs, a sum out of range).
UNREADABLE: Final = (LookupError, TypeError, ValueError, ArithmeticError)
TERMINAL_EVENT_TYPES: Final = frozenset(
    ("ExecutionCompleted", "ExecutionFailed", "ExecutionCancelled")
)


def elapsed_ms(start: datetime | None, end: datetime | None) -> int | None:
    """Whole milliseconds from `start` to `end` (rounded down); None without both."""
    if start is None or end is None:
        return None
    return (end - start) // _ONE_MS


def _own_fields(state: ExecutionState) -> dict[str, Any]:
    """A copy of a state's fields that the fold may change in place."""
    fields = dict(state.__dict__)
    # The mutable fields; labels are replaced whole, never changed in place.
    fields["metrics"] = dict(fields["metrics"])
    return fields


def _created(event: RecordedEvent) -> dict[str, Any]:
    """The fields of a new state, validated (ids parsed) from ExecutionCreated."""
    if event.type != "ExecutionCreated":
        raise errors.ValidationError(
            f"stream {event.stream_id} starts with {event.type}, not ExecutionCreated"
        )
    return created_fields(
        event.stream_id, event.data, event.occurred_at, event.version, event.position
    )


def created_fields(
    stream_id: UUID,
    data: dict[str, Any],
    occurred_at: datetime,
    version: int,
    position: int,
) -> dict[str, Any]:
    """The fields of a new state from ExecutionCreated's data, validated.

    Raises:
        ValidationError: the data does not make a state (a bad id, attempt
            or label).
    """
    fields = _created_as_written(stream_id, data, occurred_at, version, position)
    if fields is not None:
        return fields
    return _created_validated(stream_id, data, occurred_at, version, position)


def _created_validated(
    stream_id: UUID,
    data: dict[str, Any],
    occurred_at: datetime,
    version: int,
    position: int,
) -> dict[str, Any]:
    """`created_fields` by the model's validation."""
    try:
        state = ExecutionState.model_validate(
            {
                "id": stream_id,
                "message_id": data.get("message_id"),
                "graph_id": data.get("graph_id"),
                "thread_id": data.get("thread_id"),
                "status": ExecutionStatus.PENDING,
                "inputs": data.get("inputs"),
                "created_at": occurred_at,
                "attempt": data.get("attempt", 1),
                "retry_of": data.get("retry_of"),
                "labels": data.get("labels") or {},
                "version": version,
                "last_position": position,
            }
        )
    except ValidationError as exc:
        raise errors.ValidationError.from_pydantic(
            exc, "ExecutionCreated data"
        ) from exc
    return dict(state.__dict__)


class WrittenCreated(NamedTuple):
    """ExecutionCreated's references as the lifecycle writes them (`written_created`)."""

    message_id: str
    graph_id: str
    thread_id: str
    attempt: int
    retry_of: str | None


def written_created(data: dict[str, Any]) -> WrittenCreated | None:
    """ExecutionCreated's ids and attempt, if the data is as the lifecycle writes it.

    Ids in canonical text, an integer attempt, no labels: then the model's
    validation has nothing to change, and the ids may be used as text (the
    rebuild's fold in the database writes them so). None for anything
    else, which the model validates.
    """
    message_id, graph_id = data.get("message_id"), data.get("graph_id")
    thread_id, retry_of = data.get("thread_id"), data.get("retry_of")
    attempt = data.get("attempt", 1)
    if (
        type(message_id) is str
        and type(graph_id) is str
        and type(thread_id) is str
        and _CANONICAL_UUID.fullmatch(message_id)
        and _CANONICAL_UUID.fullmatch(graph_id)
        and _CANONICAL_UUID.fullmatch(thread_id)
        and (
            retry_of is None
            or (type(retry_of) is str and _CANONICAL_UUID.fullmatch(retry_of))
        )
        and type(attempt) is int
        and not data.get("labels")
    ):
        return WrittenCreated(message_id, graph_id, thread_id, attempt, retry_of)
    return None


def _created_as_written(
    stream_id: UUID,
    data: dict[str, Any],
    occurred_at: datetime,
    version: int,
    position: int,
) -> dict[str, Any] | None:
    """`created_fields` without pydantic, for data as the lifecycle writes it.

    None for anything else (`written_created`), which the model validates.
    """
    written = written_created(data)
    if not (
        written is not None
        and isinstance(stream_id, UUID)  # asyncpg's is a subclass
        and type(occurred_at) is datetime
        and occurred_at.tzinfo is not None
    ):
        return None
    retry_of = written.retry_of
    return {
        "id": stream_id,
        "message_id": UUID(written.message_id),
        "graph_id": UUID(written.graph_id),
        "thread_id": UUID(written.thread_id),
        "status": ExecutionStatus.PENDING,
        "inputs": data.get("inputs"),
        "result": None,
        "error": None,
        "created_at": occurred_at,
        "started_at": None,
        "finished_at": None,
        "cancel_requested_at": None,
        "worker_id": None,
        "attempt": written.attempt,
        "retry_of": None if retry_of is None else UUID(retry_of),
        "queue_ms": None,
        "run_ms": None,
        "total_ms": None,
        "steps_completed": 0,
        "metrics": {},
        "labels": {},
        "first_step_at": None,
        "version": version,
        "last_position": position,
    }


def _advance(fields: dict[str, Any], event: RecordedEvent) -> None:
    """Fold one event into a state's fields, in place."""
    kind = event.type
    if event.version != fields["version"] + 1:
        raise errors.ValidationError(
            f"stream {event.stream_id}: version {event.version} "
            f"does not follow {fields['version']}"
        )
    if kind not in RESULTING_STATUS or kind == "ExecutionCreated":
        raise errors.ValidationError(
            f"stream {event.stream_id} v{event.version}: "
            f"cannot apply {kind} to an execution"
        )
    data = event.data
    at = event.occurred_at
    fields["version"] = event.version
    fields["last_position"] = event.position
    new_status = RESULTING_STATUS[kind]
    if new_status is not None:
        fields["status"] = new_status
    if kind == "ExecutionStarted":
        fields["started_at"] = at
        fields["worker_id"] = data["worker_id"]
        fields["queue_ms"] = elapsed_ms(fields["created_at"], at)
    elif kind == "ExecutionProgressed":
        fields["steps_completed"] += 1
        if fields["first_step_at"] is None:
            fields["first_step_at"] = at
    elif kind == "ExecutionLabelled":
        fields["labels"] = _labelled(fields["labels"], data)
    elif kind == "ExecutionCancellationRequested":
        if fields["cancel_requested_at"] is None:
            fields["cancel_requested_at"] = at
    elif kind in TERMINAL_EVENT_TYPES:
        fields["finished_at"] = at
        fields["run_ms"] = elapsed_ms(fields["started_at"], at)
        fields["total_ms"] = elapsed_ms(fields["created_at"], at)
        if kind == "ExecutionCompleted":
            fields["result"] = data.get("result")
        elif kind == "ExecutionFailed":
            fields["error"] = data["error"]
    add_metrics(fields["metrics"], data.get("metrics"), event.stream_id, event.version)


def add_metrics(
    metrics: dict[str, Any], delta: object, stream_id: UUID, version: int
) -> None:
    """Add the usage an event reports (its data's ``metrics``, if an object) to the totals.

    Raises:
        ValidationError: a total leaves the range of a float.
        TypeError: a value is not a number.
    """
    _add_usage(metrics, (delta,), stream_id, version)


def summed_metrics(deltas: Iterable[object], stream_id: UUID) -> dict[str, Any]:
    """The totals of a stream's events' ``metrics``, given in version order.

    The same sums as `add_metrics` for each in turn.

    Raises:
        ValidationError: a total leaves the range of a float.
        TypeError: a value is not a number.
    """
    metrics: dict[str, Any] = {}
    _add_usage(metrics, deltas, stream_id, None)
    return metrics


def _add_usage(
    metrics: dict[str, Any],
    deltas: Iterable[object],
    stream_id: UUID,
    version: int | None,
) -> None:
    for delta in deltas:
        if not isinstance(delta, dict):
            continue  # an event without usage
        for name, value in delta.items():
            total = metrics.get(name, 0) + value
            # Totals are JSON numbers that both databases and the statistics
            # read as doubles: a sum beyond them (or NaN) cannot be stored.
            if not -_LARGEST_FLOAT <= total <= _LARGEST_FLOAT:
                where = f"stream {stream_id}"
                if version is not None:
                    where += f" v{version}"
                raise errors.ValidationError(
                    f"{where}: metric {name!r} "
                    f"sums beyond the largest float ({_LARGEST_FLOAT:.3g})"
                )
            metrics[name] = total


def _labelled(labels: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
    set_, remove = data.get("set", {}), data.get("remove", [])
    if not (
        isinstance(set_, dict)
        and all(isinstance(value, str) for value in set_.values())
        and isinstance(remove, list)
        and all(isinstance(key, str) for key in remove)
    ):
        raise TypeError(
            "labels to set must be a JSON object of strings, to remove a list"
        )
    return changed_labels(labels, set_, remove)


def _not_applicable(event: RecordedEvent, exc: Exception) -> errors.EventNotApplicable:
    reason = str(exc)
    if not isinstance(exc, errors.ValidationError):
        reason = (
            f"stream {event.stream_id} v{event.version}: cannot apply "
            f"{event.type}: {type(exc).__name__}: {exc}"
        )
    return errors.EventNotApplicable(
        stream_id=event.stream_id,
        version=event.version,
        position=event.position,
        event_id=event.event_id,
        reason=reason,
    )


def apply_event(state: ExecutionState | None, event: RecordedEvent) -> ExecutionState:
    """Fold one more event into a state (None before ExecutionCreated).

    Raises:
        EventNotApplicable: the event cannot be applied here: an unknown
            type, a stream that does not start with ExecutionCreated, a
            version that does not follow the state's, data the fold cannot
            read, or a metric whose total leaves the range of a float. Never
            a bare Python error. `state` is left as it was.
    """
    try:
        if state is None:
            fields = _created(event)
        else:
            fields = _own_fields(state)
            _advance(fields, event)
    except UNREADABLE as exc:  # ValidationError is a ValueError
        raise _not_applicable(event, exc) from exc
    return construct(ExecutionState, fields)


def fold_events(
    events: Iterable[RecordedEvent], state: ExecutionState | None = None
) -> ExecutionState | None:
    """Fold events in stream order; None when there were none.

    One dict of fields is folded in place and made a state at the end, so a
    long stream costs one model, not one per event.

    Raises:
        EventNotApplicable: as `apply_event`; `state` is left as it was.
    """
    fields = None if state is None else _own_fields(state)
    try:
        for event in events:
            if fields is None:
                fields = _created(event)
            else:
                _advance(fields, event)
    except UNREADABLE as exc:  # ValidationError is a ValueError
        raise _not_applicable(event, exc) from exc  # the event being folded
    return None if fields is None else construct(ExecutionState, fields)
