"""Event envelopes, the lifecycle payloads and their registry, upcasting."""

from __future__ import annotations

from eventstore.events.envelope import (
    Checkpoint,
    EventMetadata,
    JSONObject,
    JSONValue,
    NewEvent,
    RecordedEvent,
)
from eventstore.events.payloads import (
    PAYLOAD_TYPES,
    ErrorInfo,
    EventPayload,
    ExecutionCancellationRequested,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionCreated,
    ExecutionFailed,
    ExecutionProgressed,
    ExecutionStarted,
    register_payload,
)
from eventstore.events.upcasting import register_upcaster, upcast

__all__ = [
    "PAYLOAD_TYPES",
    "Checkpoint",
    "ErrorInfo",
    "EventMetadata",
    "EventPayload",
    "ExecutionCancellationRequested",
    "ExecutionCancelled",
    "ExecutionCompleted",
    "ExecutionCreated",
    "ExecutionFailed",
    "ExecutionProgressed",
    "ExecutionStarted",
    "JSONObject",
    "JSONValue",
    "NewEvent",
    "RecordedEvent",
    "register_payload",
    "register_upcaster",
    "upcast",
]
