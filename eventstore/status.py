"""Execution statuses and the transition table of ARCHITECTURE §3, as pure data."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ExecutionStatus(StrEnum):
    """Where an execution is in its lifecycle."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether no further lifecycle event may follow."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: Final = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)

_ACTIVE: Final = frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING})

# event type -> the statuses in which it may be appended. ExecutionCreated is
# only allowed on a new stream, which has no status, so it is not listed.
ALLOWED_FROM: Final[dict[str, frozenset[ExecutionStatus]]] = {
    "ExecutionStarted": frozenset({ExecutionStatus.PENDING}),
    "ExecutionProgressed": frozenset({ExecutionStatus.RUNNING}),
    "ExecutionCompleted": frozenset({ExecutionStatus.RUNNING}),
    "ExecutionFailed": _ACTIVE,
    "ExecutionCancellationRequested": _ACTIVE,
    "ExecutionCancelled": _ACTIVE,
    "ExecutionLabelled": frozenset(ExecutionStatus),
}

# event type -> resulting status; None keeps the current status.
RESULTING_STATUS: Final[dict[str, ExecutionStatus | None]] = {
    "ExecutionCreated": ExecutionStatus.PENDING,
    "ExecutionStarted": ExecutionStatus.RUNNING,
    "ExecutionProgressed": None,
    "ExecutionCompleted": ExecutionStatus.COMPLETED,
    "ExecutionFailed": ExecutionStatus.FAILED,
    "ExecutionCancellationRequested": None,
    "ExecutionCancelled": ExecutionStatus.CANCELLED,
    "ExecutionLabelled": None,
}

# event type -> the status it sets: the events the status-history index holds.
SETS_STATUS: Final[dict[str, ExecutionStatus]] = {
    event_type: status
    for event_type, status in RESULTING_STATUS.items()
    if status is not None
}


def is_allowed(status: ExecutionStatus, event_type: str) -> bool:
    """Whether `event_type` may be appended to an execution in `status`."""
    return status in ALLOWED_FROM.get(event_type, frozenset())
