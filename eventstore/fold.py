"""The one pure fold from an execution's events to its state (DESIGN §3).

`executions.get()`, the executions projection and the audit all call
`fold_events`/`apply_event`, so they can never disagree. Timestamps and
durations come from the producers' `occurred_at`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, computed_field

from eventstore import errors
from eventstore.status import RESULTING_STATUS, ExecutionStatus

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


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return (end - start) // _ONE_MS


def _add_metrics(
    total: dict[str, int | float], delta: object
) -> dict[str, int | float]:
    if not isinstance(delta, dict) or not delta:
        return total
    summed = dict(total)
    for name, value in delta.items():
        summed[name] = summed.get(name, 0) + value
    return summed


def apply_event(state: ExecutionState | None, event: RecordedEvent) -> ExecutionState:
    """Fold one more event into a state (None before ExecutionCreated).

    Raises:
        ValidationError: the event cannot be applied here: an unknown type,
            a stream that does not start with ExecutionCreated, or a version
            that does not follow the state's.
    """
    data = event.data
    at = event.occurred_at
    if state is None:
        if event.type != "ExecutionCreated":
            raise errors.ValidationError(
                f"stream {event.stream_id} starts with {event.type}, not ExecutionCreated"
            )
        # Validated (ids parsed) from the stored JSON of ExecutionCreated.
        return ExecutionState.model_validate(
            {
                "id": event.stream_id,
                "message_id": data["message_id"],
                "graph_id": data["graph_id"],
                "thread_id": data["thread_id"],
                "status": ExecutionStatus.PENDING,
                "inputs": data.get("inputs"),
                "created_at": at,
                "attempt": data.get("attempt", 1),
                "retry_of": data.get("retry_of"),
                "version": event.version,
                "last_position": event.position,
            }
        )
    if event.version != state.version + 1:
        raise errors.ValidationError(
            f"stream {event.stream_id}: version {event.version} "
            f"does not follow {state.version}"
        )
    if event.type not in RESULTING_STATUS or event.type == "ExecutionCreated":
        raise errors.ValidationError(
            f"stream {event.stream_id} v{event.version}: "
            f"cannot apply {event.type} to an execution"
        )
    changes: dict[str, Any] = {
        "version": event.version,
        "last_position": event.position,
    }
    new_status = RESULTING_STATUS[event.type]
    if new_status is not None:
        changes["status"] = new_status
    if event.type == "ExecutionStarted":
        changes["started_at"] = at
        changes["worker_id"] = data["worker_id"]
        changes["queue_ms"] = _ms(state.created_at, at)
    elif event.type == "ExecutionProgressed":
        changes["steps_completed"] = state.steps_completed + 1
    elif (
        event.type == "ExecutionCancellationRequested"
        and state.cancel_requested_at is None
    ):
        changes["cancel_requested_at"] = at
    if event.type in ("ExecutionCompleted", "ExecutionFailed", "ExecutionCancelled"):
        changes["finished_at"] = at
        changes["run_ms"] = _ms(state.started_at, at)
        changes["total_ms"] = _ms(state.created_at, at)
    if event.type == "ExecutionCompleted":
        changes["result"] = data.get("result")
    elif event.type == "ExecutionFailed":
        changes["error"] = data["error"]
    changes["metrics"] = _add_metrics(state.metrics, data.get("metrics"))
    return state.model_copy(update=changes)


def fold_events(
    events: Iterable[RecordedEvent], state: ExecutionState | None = None
) -> ExecutionState | None:
    """Fold events in stream order; None when there were none."""
    for event in events:
        state = apply_event(state, event)
    return state
