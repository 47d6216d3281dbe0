"""PostgreSQL's audit queries: stream heads and statuses as of a moment, one scan each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from typing_extensions import override

from eventstore.backends.audit_queries import AuditQueries
from eventstore.backends.postgres_database import PostgresDatabase
from eventstore.backends.postgres_order import (
    FAR_FUTURE,
    MAX_EPOCH,
    MAX_POSITION,
    MAX_XID8,
    order_key,
)
from eventstore.backends.rows import LastStatusChange
from eventstore.events.checkpoint import Checkpoint
from eventstore.schema import STATUS_EVENTS_CONDITION

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

STREAM_HEADS_SQL: Final = """
SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM execution_events
WHERE stream_type <> 'system'
  AND (epoch, transaction_id, position) <= ($1, $2::xid8, $3)
ORDER BY stream_id, version DESC
"""

# The WHERE repeats the partial index's condition, so the planner uses it;
# the order is the index's, backwards (the caller sorts), so the answer is
# one index-only scan with no sort.
STATUS_EVENTS_SQL: Final = f"""
SELECT DISTINCT ON (stream_id) stream_id, type, version, position, occurred_at,
    recorded_at
FROM execution_events
WHERE {STATUS_EVENTS_CONDITION} AND position <= $1 AND recorded_at <= $2
ORDER BY stream_id DESC, version DESC
"""  # noqa: S608 - constant condition

OPEN_EXECUTIONS_SQL: Final = f"""
SELECT * FROM ({STATUS_EVENTS_SQL}) AS last
WHERE type IN ('ExecutionCreated', 'ExecutionStarted')
"""  # noqa: S608 - constant query


class PostgresAuditQueries(PostgresDatabase, AuditQueries):
    """Each an index scan of the log, never a replay."""

    @override
    async def stream_heads(
        self, at: Checkpoint | None = None
    ) -> dict[UUID, tuple[int, bytes]]:
        at = at or Checkpoint.of(
            epoch=MAX_EPOCH, transaction_id=MAX_XID8, position=MAX_POSITION
        )
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(STREAM_HEADS_SQL, *order_key(at))
        return {row[0]: (row[1], row[2]) for row in rows}

    @override
    async def status_events(
        self, *, position: int | None = None, time: datetime | None = None
    ) -> list[LastStatusChange]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(
                STATUS_EVENTS_SQL,
                MAX_POSITION if position is None else position,
                time or FAR_FUTURE,
            )
        return [LastStatusChange(*row) for row in rows]

    @override
    async def open_executions(self) -> list[LastStatusChange]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(OPEN_EXECUTIONS_SQL, MAX_POSITION, FAR_FUTURE)
        return [LastStatusChange(*row) for row in rows]
