"""The export form of stored events: one JSON object per line (archives, exports).

A line holds an event exactly as stored, not upcast, because the hash chain
covers the stored form: an auditor recomputes every hash from the lines
alone (docs/HASHING.md, tools/verify_stream.py). ``occurred_at`` is written
in its canonical text, ``hash`` in lowercase hex.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from eventstore import errors, hashing, jsonvalues
from eventstore.events.envelope import EventMetadata, RecordedEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

EXPORT_FORMAT: Final = "eventstore-events/1"


def event_line(event: RecordedEvent) -> str:
    """One stored event as a line of JSON (without the newline)."""
    return jsonvalues.dump_json(
        {
            "position": event.position,
            "transaction_id": event.transaction_id,
            "stream_id": str(event.stream_id),
            "stream_type": event.stream_type,
            "version": event.version,
            "event_id": str(event.event_id),
            "type": event.type,
            "schema_version": event.schema_version,
            "data": event.data,
            "metadata": event.stored_metadata,
            "occurred_at": hashing.format_occurred_at(event.occurred_at),
            "recorded_at": event.recorded_at.isoformat(),
            "hash": event.hash.hex(),
        }
    )


def parse_event_line(text: str, *, line_number: int = 0) -> RecordedEvent:
    """A stored event back from its line (numbers read by value, as jsonb does).

    Raises:
        RecordAltered: the line is not an exported event.
    """
    try:
        fields: dict[str, Any] = dict(jsonvalues.parse_json_object(text))
        return RecordedEvent(
            position=fields["position"],
            transaction_id=fields["transaction_id"],
            stream_id=UUID(fields["stream_id"]),
            stream_type=fields["stream_type"],
            version=fields["version"],
            event_id=UUID(fields["event_id"]),
            type=fields["type"],
            schema_version=fields["schema_version"],
            data=fields["data"],
            metadata=EventMetadata.from_stored(fields["metadata"]),
            occurred_at=datetime.fromisoformat(fields["occurred_at"]),
            recorded_at=datetime.fromisoformat(fields["recorded_at"]),
            hash=bytes.fromhex(fields["hash"]),
        )
    except (KeyError, TypeError, ValueError, errors.IntegrityError) as exc:
        raise errors.RecordAltered(
            stream_id=None,
            position=None,
            reason=f"line {line_number} is not an exported event: {exc}",
        ) from exc


def parse_event_lines(lines: Iterable[str]) -> Iterator[RecordedEvent]:
    """Stored events from export lines; blank lines are skipped.

    Raises:
        RecordAltered: a line is not an exported event.
    """
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_event_line(line, line_number=number)
