"""SQLite's audit queries: stream heads and statuses as of a moment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from typing_extensions import override

from eventstore.backends import sqlite_writer as writer
from eventstore.backends.audit_queries import AuditQueries
from eventstore.backends.rows import LastStatusChange, StreamEnd
from eventstore.backends.sqlite_database import SqliteDatabase
from eventstore.backends.sqlite_rows import FAR_FUTURE, MAX_POSITION, from_db_time
from eventstore.events.checkpoint import Checkpoint
from eventstore.jsonvalues import dump_json
from eventstore.schema import STATUS_EVENTS_CONDITION

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

# SQLite gives a bare column the values of the row that max() chose.
STREAM_HEADS_SQL: Final = """
SELECT stream_id, max(version), hash FROM execution_events
WHERE stream_type <> 'system' AND position <= ?
GROUP BY stream_id
"""

STATUS_EVENTS_SQL: Final = f"""
SELECT stream_id, type, max(version), position, occurred_at, recorded_at
FROM execution_events
WHERE {STATUS_EVENTS_CONDITION} AND position <= ? AND recorded_at <= ?
GROUP BY stream_id
"""  # noqa: S608 - constant condition

# As STREAM_HEADS_SQL: the other columns are those of the last position's row.
STREAM_ENDS_SQL: Final = """
SELECT stream_id, max(position), version, hash, recorded_at FROM execution_events
WHERE stream_id IN (SELECT value FROM json_each(?)) AND position <= ?
GROUP BY stream_id
"""

SPLIT_SQL: Final = (
    "SELECT position FROM execution_events ORDER BY position LIMIT 1 OFFSET ?"
)

OPEN_EXECUTIONS_SQL: Final = f"""
SELECT * FROM ({STATUS_EVENTS_SQL}) AS last
WHERE type IN ('ExecutionCreated', 'ExecutionStarted')
"""  # noqa: S608 - constant query


class SqliteAuditQueries(SqliteDatabase, AuditQueries):
    """One scan of the status-history index each."""

    @override
    async def stream_heads(
        self, at: Checkpoint | None = None
    ) -> dict[UUID, tuple[int, bytes]]:
        position = MAX_POSITION if at is None else at.position
        rows = await self._fetch(STREAM_HEADS_SQL, (position,))
        return {UUID(hex=row[0]): (row[1], row[2]) for row in rows}

    @override
    async def status_events(
        self, *, position: int | None = None, time: datetime | None = None
    ) -> list[LastStatusChange]:
        return self._status_events(
            await self._fetch(
                STATUS_EVENTS_SQL,
                (
                    MAX_POSITION if position is None else position,
                    FAR_FUTURE if time is None else writer.to_db_time(time),
                ),
            )
        )

    @override
    async def open_executions(self) -> list[LastStatusChange]:
        return self._status_events(
            await self._fetch(OPEN_EXECUTIONS_SQL, (MAX_POSITION, FAR_FUTURE))
        )

    @staticmethod
    def _status_events(rows: list[Sequence[Any]]) -> list[LastStatusChange]:
        return [
            LastStatusChange(
                stream_id=UUID(hex=row[0]),
                type=row[1],
                version=row[2],
                position=row[3],
                occurred_at=from_db_time(row[4]),
                recorded_at=from_db_time(row[5]),
            )
            for row in rows
        ]

    @override
    async def log_splits(self, parts: int) -> list[Checkpoint]:
        (events,) = (await self._fetch("SELECT count(*) FROM execution_events", ()))[0]
        runs = min(parts, events)
        splits = []
        for part in range(1, runs):
            rows = await self._fetch(SPLIT_SQL, (part * events // runs - 1,))
            if not rows:  # an archive removed events since the count: fewer runs
                break
            splits.append(Checkpoint(0, rows[0][0]))
        return splits

    @override
    async def stream_ends(
        self, stream_ids: Sequence[UUID], at: Checkpoint
    ) -> dict[UUID, StreamEnd]:
        ids = dump_json([stream_id.hex for stream_id in stream_ids])
        rows = await self._fetch(STREAM_ENDS_SQL, (ids, at.position))
        return {
            UUID(hex=row[0]): StreamEnd(
                version=row[2],
                hash=row[3],
                position=row[1],
                recorded_at=from_db_time(row[4]),
            )
            for row in rows
        }
