"""How SQLite holds the log's rows: the columns, UTC times as text, UUIDs as hex."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from eventstore.events.envelope import RecordedEvent, stored_metadata_parser
from eventstore.jsonvalues import parse_json_object

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

COLUMNS: Final = (
    "position, stream_id, version, stream_type, event_id, type, schema_version, "
    "data, metadata, occurred_at, recorded_at, hash"
)

MAX_POSITION: Final = 2**63 - 1

FAR_FUTURE: Final = "9999-12-31 23:59:59.999999"


def from_db_time(text: str) -> datetime:
    """A stored UTC datetime (also CURRENT_TIMESTAMP's form), zone attached."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rows_to_events(rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
    """Events from rows of `COLUMNS`, read by index."""
    metadata = stored_metadata_parser()
    return [
        RecordedEvent.from_log(
            position=row[0],
            stream_id=UUID(hex=row[1]),
            version=row[2],
            stream_type=row[3],
            event_id=UUID(hex=row[4]),
            event_type=row[5],
            schema_version=row[6],
            data=parse_json_object(row[7]),
            metadata=metadata(row[8]),
            occurred_at=from_db_time(row[9]),
            recorded_at=from_db_time(row[10]),
            transaction_id=None,
            chain_hash=row[11],
        )
        for row in rows
    ]


def partition_key(stream_id_hex: str) -> int:
    """The low 32 bits of a stored UUID (32 hex digits)."""
    return int(stream_id_hex[-8:], 16)
