"""An async, event-sourced store for the executions of AI agent crews."""

from __future__ import annotations

from eventstore.errors import (
    AppendOnlyViolation,
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
    RebuildInProgress,
    RecordAltered,
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
from eventstore.events.system_payloads import streams_archived_by
from eventstore.executions import ExecutionService
from eventstore.fold import ExecutionState, apply_event, fold_events
from eventstore.log import AppendResult, as_stream_id
from eventstore.migrating import include_object, migrations_location
from eventstore.reaper import ReapReport, reap
from eventstore.redaction import scrub
from eventstore.references import Graph, Message, Thread
from eventstore.settings import StoreSettings
from eventstore.status import TERMINAL_STATUSES, ExecutionStatus
from eventstore.store import EventStore
from eventstore.subscriptions import Subscription

__all__ = [
    "TERMINAL_STATUSES",
    "AppendOnlyViolation",
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
    "ReapReport",
    "RebuildInProgress",
    "RecordAltered",
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
    "as_stream_id",
    "fold_events",
    "include_object",
    "migrations_location",
    "reap",
    "register_payload",
    "register_upcaster",
    "scrub",
    "streams_archived_by",
]
