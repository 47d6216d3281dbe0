"""Event envelopes, the lifecycle payloads and their registry, upcasting."""

from __future__ import annotations

# The store's own upcasters register on import; importing them here makes
# them active wherever the payloads are (every reader imports this package).
from eventstore.events import lifecycle_upcasters as _upcasters  # noqa: F401
from eventstore.events.checkpoint import Checkpoint
from eventstore.events.envelope import EventMetadata, NewEvent, RecordedEvent
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
from eventstore.jsonvalues import JSONObject, JSONValue

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
