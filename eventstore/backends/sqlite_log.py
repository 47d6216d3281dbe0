"""SQLite's log storage: appends on the writer thread, reads in position order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from typing_extensions import override

from eventstore import errors
from eventstore.backends import sqlite_writer as writer
from eventstore.backends.log_storage import LogStorage
from eventstore.backends.rows import RawEventRow
from eventstore.backends.sqlite_database import SqliteDatabase
from eventstore.backends.sqlite_rows import (
    COLUMNS,
    MAX_POSITION,
    from_db_time,
    rows_to_events,
)
from eventstore.events.checkpoint import Checkpoint
from eventstore.hashing import format_occurred_at
from eventstore.jsonvalues import dump_json

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.rows import AppendDecision
    from eventstore.events.envelope import NewEvent, RecordedEvent
    from eventstore.partitions import Partition

READ_STREAM_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?"
)

READ_ALL_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE position > ? ORDER BY position LIMIT ?"
)

READ_UNTIL_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?"
)

READ_PARTITION_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE position > ? AND eventstore_partition_key(stream_id) % ? = ? "
    "ORDER BY position LIMIT ?"
)

READ_STREAMS_SQL: Final = (
    f"SELECT {COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id IN (SELECT value FROM json_each(?)) ORDER BY position"
)


class SqliteLogStorage(SqliteDatabase, LogStorage):
    """Appends and reads of the log on SQLite."""

    @override
    async def listen(self, on_notify: Callable[[], None]) -> None:
        # No notifications: appends through this process wake its readers
        # directly, and readers poll for other processes' appends.
        return None

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
        async with self.translate_errors(), self._write_lock:
            return await self._writer.run(
                lambda connection: writer.append(
                    connection,
                    stream_id,
                    events,
                    stream_type,
                    expected_version,
                    guarded=guarded,
                )
            )

    async def _fetch_after(
        self, after: Checkpoint | None, limit: int, partition: Partition | None
    ) -> list[Any]:
        """Up to `limit` rows after `after` in log order, of one partition if given."""
        position = after.position if after is not None else 0
        if partition is None or partition.count == 1:
            return await self._fetch(READ_ALL_SQL, (position, limit))
        return await self._fetch(
            READ_PARTITION_SQL, (position, partition.count, partition.index, limit)
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
        def append(sync: sa.Connection) -> AppendDecision:
            return writer.append_locked(
                _DriverStatements(sync),
                stream_id,
                events,
                stream_type,
                expected_version,
            )

        async with self.translate_errors():
            return await connection.run_sync(append)

    @override
    async def read_stream_as_stored(
        self, stream_id: UUID, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self._fetch(
            READ_STREAM_SQL,
            (stream_id.hex, after_version, -1 if limit is None else limit),
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
        return rows_to_events(await self._fetch_after(after, limit, partition))

    @override
    async def read_rows_as_stored(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        until: Checkpoint | None = None,
    ) -> list[RawEventRow]:
        rows = await self._fetch(
            READ_UNTIL_SQL,
            (
                0 if after is None else after.position,
                MAX_POSITION if until is None else until.position,
                limit,
            ),
        )
        return [
            RawEventRow(
                position=row[0],
                stream_id=str(UUID(hex=row[1])),
                version=row[2],
                event_id=str(UUID(hex=row[4])),
                type=row[5],
                schema_version=row[6],
                data=row[7],
                metadata=row[8],
                occurred_at=format_occurred_at(from_db_time(row[9])),
                recorded_at=from_db_time(row[10]),
                hash=row[11],
                transaction_id=0,  # SQLite's log is ordered by position alone
                epoch=0,
            )
            for row in rows
        ]

    @override
    async def read_streams_as_stored(
        self, stream_ids: Sequence[UUID]
    ) -> list[RecordedEvent]:
        ids = dump_json([stream_id.hex for stream_id in stream_ids])
        return rows_to_events(await self._fetch(READ_STREAMS_SQL, (ids,)))

    @override
    async def head_checkpoint(self) -> Checkpoint | None:
        rows = await self._fetch("SELECT max(position) FROM execution_events", ())
        return None if rows[0][0] is None else Checkpoint(0, rows[0][0])

    @override
    async def checkpoint_at(self, position: int) -> Checkpoint:
        rows = await self._fetch(
            "SELECT position FROM execution_events WHERE position = ?", (position,)
        )
        if not rows:
            raise errors.ValidationError(f"no event at position {position}")
        return Checkpoint(0, position)

    @override
    async def exclude_appends(self, connection: AsyncConnection) -> None:
        """Nothing to do: a write transaction (BEGIN IMMEDIATE) already excludes them."""


class _DriverStatements:
    """A SQLAlchemy connection (in its transaction) as the writer's sqlite3 calls."""

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Any = (), /) -> _Rows:
        result = self._connection.exec_driver_sql(sql, tuple(parameters))
        return _Rows([tuple(row) for row in result] if result.returns_rows else [])


class _Rows:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows
