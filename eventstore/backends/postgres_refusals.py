"""The typed errors for the rules of PostgreSQL's append guard trigger."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventstore import errors
from eventstore.backends.driver_errors import stream_type_refused
from eventstore.jsonvalues import parse_json


def append_refusal(
    stream_id: UUID, sqlstate: str | None, detail: str | None
) -> errors.EventStoreError | None:
    """The typed error for a rule of the append trigger (migrations 0006, 0008), if one.

    The trigger's SQLSTATE says which rule refused the row; its DETAIL holds
    the facts (a JSON object, or the stream id).
    """
    facts = parse_json(detail) if detail and detail.startswith("{") else {}
    if not isinstance(facts, dict):
        facts = {}
    match sqlstate:
        case "ZE002":
            return errors.InvalidTransition(
                execution_id=stream_id,
                status=str(facts.get("status")),
                event_type=str(facts.get("event_type")),
            )
        case "ZE003":
            return errors.ValidationError(
                f"stream {stream_id} is a system stream: only the store's archive "
                "and anchor paths write system streams"
            )
        case "ZE004":
            return errors.StreamArchived(stream_id=stream_id)
        case "ZE005":
            entity = str(facts.get("entity", "reference"))
            return errors.ReferenceNotFound(
                entity=entity, entity_id=_maybe_uuid(facts.get("id"))
            )
        case "ZE006":
            return errors.ValidationError(
                f"stream {stream_id}: versions must follow one another without gaps"
            )
        case "ZE007":
            return errors.ValidationError(
                "execution_events.position is drawn by the database, not chosen"
            )
        case "ZE008":
            return errors.ExecutionNotFound(execution_id=stream_id)
        case "ZE009":
            return stream_type_refused(
                stream_id, str(facts.get("stream_type")), str(facts.get("given"))
            )
    return None


def _maybe_uuid(value: object) -> Any:
    try:
        return UUID(str(value))
    except ValueError:
        return value
