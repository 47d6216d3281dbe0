"""SQLite: the embedded default, one file, one writer at a time (ARCHITECTURE §1).

Writers take the database lock up front (`BEGIN IMMEDIATE`, with WAL and a
busy timeout for other processes; an asyncio lock for coroutines of this
process, so they queue instead of polling the busy handler). With one writer
at a time, position order is commit order, and `AUTOINCREMENT` keeps
positions from ever being reused. The append runs on the raw aiosqlite
connection; the rows are stored exactly as SQLAlchemy's types store them
(UUIDs as 32 hex digits, UTC datetimes as text), so Core reads them too.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typing_extensions import override

from eventstore import errors, hashing
from eventstore.backends import sqlite_leadership as leadership
from eventstore.backends import sqlite_writer as writer
from eventstore.backends.base import Backend
from eventstore.backends.rows import AppendDecision, LastStatusChange, RawEventRow
from eventstore.backends.sqlite_leadership import SqliteLeaderLocks
from eventstore.events.envelope import (
    Checkpoint,
    RecordedEvent,
    stored_metadata_parser,
)
from eventstore.hashing import dump_json, parse_json_object
from eventstore.redaction import redact_url
from eventstore.schema import STATUS_EVENTS_CONDITION

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Sequence

    import aiosqlite
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.pool import ConnectionPoolEntry

    from eventstore.backends.dialect import ConflictInsert
    from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
    from eventstore.events.envelope import NewEvent
    from eventstore.partitions import Partition
    from eventstore.settings import StoreSettings

IMMUTABLE_LOG_MESSAGE: Final = "execution_events is append-only"
_COLUMNS: Final = (
    "position, stream_id, version, stream_type, event_id, type, schema_version, "
    "data, metadata, occurred_at, recorded_at, hash"
)
READ_STREAM_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?"
)
READ_ALL_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE position > ? ORDER BY position LIMIT ?"
)

READ_PARTITION_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE position > ? AND eventstore_partition_key(stream_id) % ? = ? "
    "ORDER BY position LIMIT ?"
)
BACKLOG_SQL: Final = (
    "SELECT count(*), min(recorded_at) FROM execution_events WHERE position > ?"
)
BACKLOG_PARTITION_SQL: Final = (
    BACKLOG_SQL + " AND eventstore_partition_key(stream_id) % ? = ?"
)
READ_STREAMS_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id IN (SELECT value FROM json_each(?)) ORDER BY position"
)
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
OPEN_EXECUTIONS_SQL: Final = f"""
SELECT * FROM ({STATUS_EVENTS_SQL}) AS last
WHERE type IN ('ExecutionCreated', 'ExecutionStarted')
"""  # noqa: S608 - constant query
MAX_POSITION: Final = 2**63 - 1
FAR_FUTURE: Final = "9999-12-31 23:59:59.999999"


def from_db_time(text: str) -> datetime:
    """A stored UTC datetime (also CURRENT_TIMESTAMP's form), zone attached."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _rows_to_events(rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
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


def _partition_key(stream_id_hex: str) -> int:
    """The low 32 bits of a stored UUID (32 hex digits)."""
    return int(stream_id_hex[-8:], 16)


class SqliteBackend(Backend):
    """An SQLite file through aiosqlite."""

    def __init__(self, *, url: str, settings: StoreSettings) -> None:
        parsed = make_url(url).set(drivername="sqlite+aiosqlite")
        if parsed.database in (None, "", ":memory:"):
            raise errors.ConfigurationError(
                "SQLite needs a file: an in-memory database is not shared "
                "between connections"
            )
        engine = create_async_engine(
            parsed,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
            # JSON columns read numbers by value, like the log does.
            json_serializer=hashing.dump_json,
            json_deserializer=hashing.parse_json,
        )
        busy_timeout = settings.sqlite_busy_timeout_ms

        @sa_event.listens_for(engine.sync_engine, "connect")
        def _configure(
            dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry
        ) -> None:
            # Take transaction control from the sqlite3 module, so that BEGIN
            # is ours (see the "begin" hook) and DDL is transactional.
            dbapi_connection.isolation_level = None
            writer.configure(dbapi_connection, busy_timeout)  # type: ignore[arg-type]
            # The partition rule of eventstore/partitions.py, for partitioned reads.
            dbapi_connection.create_function(
                "eventstore_partition_key", 1, _partition_key, deterministic=True
            )

        @sa_event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
            connection.exec_driver_sql(f"BEGIN {mode}")

        super().__init__(url=redact_url(parsed), engine=engine)
        self._write_lock = asyncio.Lock()
        self._database = Path(parsed.database or "")
        self._writer = writer.Writer(
            parsed.database or "", settings.sqlite_busy_timeout_ms
        )

    @override
    @property
    def name(self) -> str:
        return "sqlite"

    @override
    async def connect(self) -> None:
        async with self.translate_errors(), self.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

    @override
    async def aclose(self) -> None:
        await self._writer.aclose()
        await self.engine.dispose()

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

    @override
    @contextlib.asynccontextmanager
    async def begin_write(self) -> AsyncIterator[AsyncConnection]:
        async with self._begin_immediate() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def _begin_immediate(
        self, check: Callable[[], None] | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; `check` runs once this process's writers are passed."""
        # Take the lock up front (and queue behind this process's writers)
        # rather than upgrade a read lock later, which WAL may refuse.
        async with self.translate_errors(), self._write_lock:
            if check is not None:
                check()
            async with self.engine.connect() as connection:
                immediate = await connection.execution_options(sqlite_begin="IMMEDIATE")
                async with immediate.begin():
                    yield immediate

    @override
    @contextlib.asynccontextmanager
    async def projection_write(self, projection: str) -> AsyncIterator[AsyncConnection]:
        # The writer lock alone keeps a batch out of a rebuild's transaction
        # (the rebuild replays in one); the gate turns the batch away before
        # it queues for that lock for as long as the rebuild lasts, and tells
        # `project --status` why it waits. Peeked before and after this
        # process's own writers, one of which may be the rebuild.
        def check() -> None:
            if leadership.gate_holders(self._database, [projection]):
                raise errors.RebuildInProgress(projection=projection)

        check()
        async with self._begin_immediate(check) as connection:
            yield connection

    @override
    @contextlib.asynccontextmanager
    async def rebuild_write(
        self, projection: str, *, lock_timeout: float, attempts: int
    ) -> AsyncIterator[AsyncConnection]:
        # Only another rebuild holds the gate for long (a peek lasts
        # microseconds); the gate comes before the writer lock, as on
        # PostgreSQL it comes before the checkpoint rows.
        descriptor = leadership.hold_gate(self._database, projection)
        for _ in range(attempts - 1):
            if descriptor is not None:
                break
            await asyncio.sleep(lock_timeout)
            descriptor = leadership.hold_gate(self._database, projection)
        if descriptor is None:
            raise errors.DatabaseError(
                f"could not hold projection {projection} for the rebuild within "
                f"{attempts} tries of {lock_timeout:g} s: another rebuild of it "
                "is running"
            )
        try:
            async with self.begin_write() as connection:
                yield connection
        finally:
            leadership.release_gate(descriptor)

    @override
    async def rebuild_holders(self, projections: Sequence[str]) -> dict[str, Holder]:
        return leadership.gate_holders(self._database, projections)

    @override
    async def read_stream(
        self, stream_id: UUID, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        rows = await self._fetch(
            READ_STREAM_SQL,
            (stream_id.hex, after_version, -1 if limit is None else limit),
        )
        return _rows_to_events(rows)

    @override
    async def read_all(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        partition: Partition | None = None,
    ) -> list[RecordedEvent]:
        position = after.position if after is not None else 0
        if partition is None or partition.count == 1:
            rows = await self._fetch(READ_ALL_SQL, (position, limit))
        else:
            rows = await self._fetch(
                READ_PARTITION_SQL, (position, partition.count, partition.index, limit)
            )
        return _rows_to_events(rows)

    @override
    async def read_stored(
        self, after: Checkpoint | None, *, limit: int
    ) -> list[RawEventRow]:
        position = after.position if after is not None else 0
        rows = await self._fetch(READ_ALL_SQL, (position, limit))
        return [
            RawEventRow(
                position=row[0],
                stream_id=UUID(hex=row[1]),
                version=row[2],
                event_id=UUID(hex=row[4]),
                type=row[5],
                schema_version=row[6],
                data=row[7],
                metadata=row[8],
                occurred_at=from_db_time(row[9]),
                recorded_at=from_db_time(row[10]),
                hash=row[11],
                checkpoint=Checkpoint(0, row[0]),
            )
            for row in rows
        ]

    @override
    async def read_streams(self, stream_ids: Sequence[UUID]) -> list[RecordedEvent]:
        ids = dump_json([stream_id.hex for stream_id in stream_ids])
        return _rows_to_events(await self._fetch(READ_STREAMS_SQL, (ids,)))

    @override
    async def head_checkpoint(self) -> Checkpoint | None:
        rows = await self._fetch("SELECT max(position) FROM execution_events", ())
        return None if rows[0][0] is None else Checkpoint(0, rows[0][0])

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
    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        if partition is None or partition.count == 1:
            rows = await self._fetch(BACKLOG_SQL, (after.position,))
        else:
            rows = await self._fetch(
                BACKLOG_PARTITION_SQL,
                (after.position, partition.count, partition.index),
            )
        count, oldest = rows[0]
        return int(count), from_db_time(oldest) if oldest else None

    @override
    def leader_locks(self) -> LeaderLocks:
        return SqliteLeaderLocks(self._database)

    @override
    async def slot_holders(self, slots: Sequence[str]) -> dict[str, Holder]:
        return leadership.slot_holders(self._database, slots)

    @override
    async def horizon_holder(self) -> HorizonHolder | None:
        return None  # one writer at a time: position order is commit order

    @override
    async def checkpoint_at(self, position: int) -> Checkpoint:
        rows = await self._fetch(
            "SELECT position FROM execution_events WHERE position = ?", (position,)
        )
        if not rows:
            raise errors.ValidationError(f"no event at position {position}")
        return Checkpoint(0, position)

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Sequence[Any]]:
        async with self.translate_errors(), self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: aiosqlite.Connection = raw.driver_connection  # type: ignore[assignment]
            async with driver.execute(sql, params) as cursor:
                return list(await cursor.fetchall())

    @override
    async def exclude_appends(self, connection: AsyncConnection) -> None:
        """Nothing to do: a write transaction (BEGIN IMMEDIATE) already excludes them."""

    @override
    def insert(self, table: sa.Table) -> ConflictInsert:
        return sqlite.insert(table)

    @override
    def clock(self) -> sa.ColumnElement[Any]:
        # SQLite's own clock, in the text form SQLAlchemy's DateTime reads.
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")

    @override
    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        return table.c.position <= checkpoint.position

    @override
    async def percentiles(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        *,
        group_by: str,
        columns: Sequence[str],
        fractions: Sequence[float],
    ) -> dict[Any, dict[str, list[float | None]]]:
        # SQLite has no percentile aggregate: sort each column per group and
        # interpolate as percentile_cont does (the embedded scale allows it).
        result: dict[Any, dict[str, list[float | None]]] = {}
        for name in columns:
            column = table.c[name]
            rows = await connection.execute(
                sa.select(table.c[group_by], column)
                .where(column.is_not(None))
                .order_by(table.c[group_by], column)
            )
            values: dict[Any, list[float]] = {}
            for group, value in rows:
                values.setdefault(group, []).append(float(value))
            for group, ordered in values.items():
                result.setdefault(group, {})[name] = [
                    _interpolate(ordered, fraction) for fraction in fractions
                ]
        for per_column in result.values():
            for name in columns:
                per_column.setdefault(name, [None] * len(fractions))
        return result

    @override
    def classify(self, exc: BaseException) -> errors.EventStoreError | None:
        from eventstore.backends import sqlite_errors

        return sqlite_errors.classify(
            exc, url=self.url, immutable_reason=IMMUTABLE_LOG_MESSAGE
        )


def _interpolate(ordered: Sequence[float], fraction: float) -> float:
    """percentile_cont over sorted values: linear between the nearest ranks."""
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
