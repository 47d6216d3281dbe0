"""An async, event-sourced store for the executions of AI agent crews."""

from __future__ import annotations

import eventstore.events.system_payloads  # noqa: F401 - registers the system payloads
from eventstore.errors import (
    ArchiveError,
    ConcurrencyError,
    ConfigurationError,
    DatabaseConflict,
    DatabaseError,
    DatabaseUnavailable,
    EventNotApplicable,
    EventStoreError,
    ExecutionNotFound,
    IdempotencyConflict,
    IntegrityError,
    InvalidTransition,
    ProjectionError,
    ReferenceNotFound,
    SchemaNotMigrated,
    StreamArchived,
    ValidationError,
    WaitTimeout,
)
from eventstore.events import (
    Checkpoint,
    ErrorInfo,
    EventMetadata,
    EventPayload,
    ExecutionCancellationRequested,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionCreated,
    ExecutionFailed,
    ExecutionProgressed,
    ExecutionStarted,
    JSONObject,
    JSONValue,
    NewEvent,
    RecordedEvent,
    register_payload,
    register_upcaster,
)
from eventstore.executions import ExecutionService
from eventstore.fold import ExecutionState, apply_event, fold_events
from eventstore.log import AppendResult
from eventstore.references import Graph, Message, Thread
from eventstore.settings import StoreSettings
from eventstore.status import TERMINAL_STATUSES, ExecutionStatus
from eventstore.store import EventStore
from eventstore.subscriptions import Subscription

__all__ = [
    "TERMINAL_STATUSES",
    "AppendResult",
    "ArchiveError",
    "Checkpoint",
    "ConcurrencyError",
    "ConfigurationError",
    "DatabaseConflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "ErrorInfo",
    "EventMetadata",
    "EventNotApplicable",
    "EventPayload",
    "EventStore",
    "EventStoreError",
    "ExecutionCancellationRequested",
    "ExecutionCancelled",
    "ExecutionCompleted",
    "ExecutionCreated",
    "ExecutionFailed",
    "ExecutionNotFound",
    "ExecutionProgressed",
    "ExecutionService",
    "ExecutionStarted",
    "ExecutionState",
    "ExecutionStatus",
    "Graph",
    "IdempotencyConflict",
    "IntegrityError",
    "InvalidTransition",
    "JSONObject",
    "JSONValue",
    "Message",
    "NewEvent",
    "ProjectionError",
    "RecordedEvent",
    "ReferenceNotFound",
    "SchemaNotMigrated",
    "StoreSettings",
    "StreamArchived",
    "Subscription",
    "Thread",
    "ValidationError",
    "WaitTimeout",
    "apply_event",
    "fold_events",
    "register_payload",
    "register_upcaster",
]
