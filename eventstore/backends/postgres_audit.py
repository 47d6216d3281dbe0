"""PostgreSQL's audit queries: stream heads and statuses as of a moment, one scan each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from typing_extensions import override

from eventstore.backends.audit_queries import AuditQueries
from eventstore.backends.postgres_database import PostgresDatabase
from eventstore.backends.postgres_order import (
    FAR_FUTURE,
    HORIZON,
    MAX_EPOCH,
    MAX_POSITION,
    MAX_XID8,
    ORDER,
    order_key,
)
from eventstore.backends.rows import LastStatusChange, StreamEnd
from eventstore.events.checkpoint import Checkpoint
from eventstore.schema import STATUS_EVENTS_CONDITION

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

STREAM_HEADS_SQL: Final = """
SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM execution_events
WHERE stream_type <> 'system'
  AND (epoch, transaction_id, position) <= ($1, $2::xid8, $3)
ORDER BY stream_id, version DESC
"""

# The last event of each given stream at or before a place in the log's order.
STREAM_ENDS_SQL: Final = """
SELECT DISTINCT ON (stream_id) stream_id, version, hash, position, recorded_at
FROM execution_events
WHERE stream_id = ANY($1::uuid[])
  AND (epoch, transaction_id, position) <= ($2, $3::xid8, $4)
ORDER BY stream_id, epoch DESC, transaction_id DESC, position DESC
"""

LOG_LENGTH_SQL: Final = f"SELECT count(*) FROM execution_events WHERE {HORIZON}"  # noqa: S608 - constant condition

# Numbering the log's order index streams: one index-only scan, no sort.
LOG_SPLITS_SQL: Final = f"""
SELECT epoch, transaction_id, position FROM (
    SELECT epoch, transaction_id, position, row_number() OVER ({ORDER}) AS n
    FROM execution_events WHERE {HORIZON}
) AS numbered
WHERE n = ANY($1::bigint[])
ORDER BY n
"""  # noqa: S608 - constant fragments

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

    @override
    async def log_splits(self, parts: int) -> list[Checkpoint]:
        # One snapshot for both statements, so both see the same horizon.
        async with (
            self.translate_errors(),
            self.pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            events = await connection.fetchval(LOG_LENGTH_SQL)
            runs = min(parts, events)
            ends = [part * events // runs for part in range(1, runs)]
            rows = await connection.fetch(LOG_SPLITS_SQL, ends)
        return [
            Checkpoint.of(epoch=row[0], transaction_id=row[1], position=row[2])
            for row in rows
        ]

    @override
    async def stream_ends(
        self, stream_ids: Sequence[UUID], at: Checkpoint
    ) -> dict[UUID, StreamEnd]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(
                STREAM_ENDS_SQL, list(stream_ids), *order_key(at)
            )
        return {row[0]: StreamEnd(*row[1:]) for row in rows}
