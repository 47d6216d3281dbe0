"""PostgreSQL's log storage: appends through the engine, gap-safe reads (ARCHITECTURE §1).

Readers take only events of transactions below the snapshot's xmin, which
have all committed or rolled back, in (epoch, transaction_id, position)
order, and resume after that triple: an event whose position was drawn
before another's but committed after it is still read, never skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from typing_extensions import override

from eventstore import errors
from eventstore.backends.log_storage import LogStorage
from eventstore.backends.postgres_append import append_by_function_on
from eventstore.backends.postgres_database import PostgresDatabase
from eventstore.backends.postgres_driver import driver_connection
from eventstore.backends.postgres_listener import PostgresListener
from eventstore.backends.postgres_order import (
    AFTER,
    COLUMNS,
    HORIZON,
    ORDER,
    in_partition,
    order_key,
)
from eventstore.events.checkpoint import Checkpoint
from eventstore.events.envelope import RecordedEvent, stored_metadata_parser
from eventstore.jsonvalues import parse_json_object

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.rows import AppendDecision, RawRow
    from eventstore.events.envelope import NewEvent
    from eventstore.partitions import Partition

READ_STREAM_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id = $1 AND version > $2 ORDER BY version LIMIT $3"
)

READ_ALL_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    f"WHERE {HORIZON} AND {AFTER} {ORDER} LIMIT $4"
)

IN_PARTITION: Final = in_partition("$5", "$6")

READ_PARTITION_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    f"WHERE {HORIZON} AND {AFTER} AND {IN_PARTITION} {ORDER} LIMIT $4"
)

# Verify's read: the fields of `RawEventRow`, in its order. The database
# writes the ids' and occurred_at's canonical texts (hashing.format_occurred_at):
# cheaper here than formatted in Python, for every event, and a text is no
# object the garbage collector must follow (asyncpg's UUIDs are). A time before
# year 1 or an infinity (which no append writes) has no such text: its own
# text breaks the chain (to_char would drop the era).
RAW_COLUMNS: Final = (
    "position, stream_id::text, version, event_id::text, type, schema_version, "
    "data, metadata, "
    "coalesce(CASE WHEN occurred_at >= '0001-01-01 00:00:00+00' THEN "
    "to_char(occurred_at AT TIME ZONE 'UTC', "
    """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END, occurred_at::text), """
    "recorded_at, hash, transaction_id, epoch"
)

READ_RAW_SQL: Final = (
    f"SELECT {RAW_COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    f"WHERE {HORIZON} AND {AFTER} {ORDER} LIMIT $4"
)

READ_RAW_UNTIL_SQL: Final = (
    f"SELECT {RAW_COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    f"WHERE {HORIZON} AND {AFTER} "
    f"AND (epoch, transaction_id, position) <= ($5, $6::xid8, $7) {ORDER} LIMIT $4"
)

READ_STREAMS_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id = ANY($1::uuid[]) ORDER BY position"
)

HEAD_CHECKPOINT_SQL: Final = (
    "SELECT epoch, transaction_id, position FROM execution_events "  # noqa: S608 - constant fragment
    f"WHERE {HORIZON} "
    "ORDER BY epoch DESC, transaction_id DESC, position DESC LIMIT 1"
)

# Every transaction that has committed by now has an id below the snapshot's
# xmax; once the horizon (xmin) is there, read_all sees all of them.
HORIZON_MARK_SQL: Final = "SELECT pg_snapshot_xmax(pg_current_snapshot())"

HORIZON_REACHED_SQL: Final = (
    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8"
)

EXCLUDE_APPENDS_SQL: Final = "LOCK TABLE execution_events IN SHARE ROW EXCLUSIVE MODE"

CHECKPOINT_AT_SQL: Final = (
    "SELECT epoch, transaction_id FROM execution_events WHERE position = $1"
)


def rows_to_events(rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
    """Events from rows of `COLUMNS`, read by index (the hot path of every read)."""
    metadata = stored_metadata_parser()
    return [
        RecordedEvent.from_log(
            position=row[0],
            stream_id=row[1],
            version=row[2],
            stream_type=row[3],
            event_id=row[4],
            event_type=row[5],
            schema_version=row[6],
            data=parse_json_object(row[7]),
            metadata=metadata(row[8]),
            occurred_at=row[9],
            recorded_at=row[10],
            transaction_id=row[11],
            chain_hash=row[12],
            epoch=row[13],
        )
        for row in rows
    ]


class PostgresLogStorage(PostgresDatabase, LogStorage):
    """Appends and reads of the log on PostgreSQL."""

    @override
    async def append(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        stream_type: str,
        expected_version: int | None,
        guarded: bool = False,
    ) -> AppendDecision:
        async with self.translate_errors():
            return await self._appender.append(
                stream_id,
                events,
                stream_type=stream_type,
                expected_version=expected_version,
                guarded=guarded,
            )

    @override
    async def append_in(
        self,
        connection: AsyncConnection,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        stream_type: str,
        expected_version: int | None,
    ) -> AppendDecision:
        async with self.translate_errors():
            driver = await driver_connection(connection)
            return await append_by_function_on(
                driver, stream_id, events, stream_type, expected_version
            )

    @override
    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:
        self._appender.forget_streams(stream_ids)

    @override
    async def read_stream_as_stored(
        self, stream_id: UUID, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(
                READ_STREAM_SQL, stream_id, after_version, limit
            )
        if rows and limit is None:  # read to the end: the last row is the head
            self._appender.remember_head(
                stream_id, rows[-1]["version"], rows[-1]["hash"]
            )
        return rows_to_events(rows)

    @override
    async def read_all_as_stored(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        partition: Partition | None = None,
    ) -> list[RecordedEvent]:
        rows = await self._fetch_after(
            READ_ALL_SQL, READ_PARTITION_SQL, after, limit, partition
        )
        return rows_to_events(rows)

    @override
    async def read_rows_as_stored(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        until: Checkpoint | None = None,
    ) -> Sequence[RawRow]:
        key = order_key(after or Checkpoint(0, 0))
        async with self.translate_errors(), self.pool.acquire() as connection:
            if until is None:
                rows = await connection.fetch(READ_RAW_SQL, *key, limit)
            else:
                rows = await connection.fetch(
                    READ_RAW_UNTIL_SQL, *key, limit, *order_key(until)
                )
        return rows

    async def _fetch_after(
        self,
        whole_log_sql: str,
        partition_sql: str,
        after: Checkpoint | None,
        limit: int,
        partition: Partition | None,
    ) -> list[asyncpg.Record]:
        """Up to `limit` rows after `after` in global order, of one partition if given."""
        key = order_key(after or Checkpoint(0, 0))
        async with self.translate_errors(), self.pool.acquire() as connection:
            if partition is None or partition.count == 1:
                return await connection.fetch(whole_log_sql, *key, limit)
            return await connection.fetch(
                partition_sql, *key, limit, partition.count, partition.index
            )

    @override
    async def read_streams_as_stored(
        self, stream_ids: Sequence[UUID]
    ) -> list[RecordedEvent]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(READ_STREAMS_SQL, list(stream_ids))
        return rows_to_events(rows)

    @override
    async def head_checkpoint(self) -> Checkpoint | None:
        async with self.translate_errors(), self.pool.acquire() as connection:
            row = await connection.fetchrow(HEAD_CHECKPOINT_SQL)
        if row is None:
            return None
        return Checkpoint.of(epoch=row[0], transaction_id=row[1], position=row[2])

    @override
    async def horizon_mark(self) -> int:
        async with self.translate_errors(), self.pool.acquire() as connection:
            mark: int = await connection.fetchval(HORIZON_MARK_SQL)
        return mark

    @override
    async def horizon_reached(self, mark: int) -> bool:
        async with self.translate_errors(), self.pool.acquire() as connection:
            reached: bool = await connection.fetchval(HORIZON_REACHED_SQL, mark)
        return reached

    @override
    async def checkpoint_at(self, position: int) -> Checkpoint:
        async with self.translate_errors(), self.pool.acquire() as connection:
            row = await connection.fetchrow(CHECKPOINT_AT_SQL, position)
        if row is None:
            raise errors.ValidationError(f"no event at position {position}")
        return Checkpoint.of(epoch=row[0], transaction_id=row[1], position=position)

    @override
    async def listen(self, on_notify: Callable[[], None]) -> PostgresListener:
        listener = PostgresListener(
            dsn=self._dsn,
            on_notify=on_notify,
            connect_timeout=self._settings.connect_timeout,
            server_settings=self._server_settings,
        )
        listener.start()
        return listener

    @override
    async def exclude_appends(self, connection: AsyncConnection) -> None:
        # Conflicts with the ROW EXCLUSIVE lock every INSERT takes (and that
        # eventstore_append takes before it reads a head), and with itself.
        await connection.execute(sa.text(EXCLUDE_APPENDS_SQL))
