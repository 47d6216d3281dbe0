"""The baselines: raw asyncpg, raw aiosqlite, and the eventsourcing library's recorder.

The raw baselines insert into `raw_events`, a table with the columns, unique
keys and (transaction_id, position) index of `execution_events`, one INSERT
per event in its own transaction, with the hash chained by the client (it
remembers the stream's previous hash). They are the driver's ceiling: no
idempotency check, no expected-version check beyond the unique key.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import aiosqlite
import asyncpg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from bench import databases
from bench.timing import Sample, time_threads, time_writers
from bench.workload import METADATA_JSON, STREAM_EVENT_TYPES, Payload, encode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from bench.databases import Server
    from bench.timing import AsyncTimer, AsyncWriter, Timing
    from bench.workload import Workload

GENESIS: Final = bytes(32)
RAW_TABLE_POSTGRES: Final = (
    """
    CREATE TABLE raw_events (
        position bigserial PRIMARY KEY,
        stream_id uuid NOT NULL,
        version integer NOT NULL,
        stream_type varchar(32) NOT NULL,
        event_id uuid NOT NULL UNIQUE,
        type varchar(200) NOT NULL,
        schema_version integer NOT NULL,
        data jsonb NOT NULL,
        metadata jsonb NOT NULL,
        occurred_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        transaction_id xid8 DEFAULT pg_current_xact_id(),
        hash bytea NOT NULL,
        UNIQUE (stream_id, version)
    )
    """,
    "CREATE INDEX ix_raw_events_transaction_id_position ON raw_events (transaction_id, position)",
)
RAW_INSERT_POSTGRES: Final = (
    "INSERT INTO raw_events (stream_id, version, stream_type, event_id, type, "
    "schema_version, data, metadata, occurred_at, hash) "
    "VALUES ($1, $2, 'execution', $3, $4, 1, $5, $6, $7, $8) RETURNING position"
)
RAW_TABLE_SQLITE: Final = (
    """
    CREATE TABLE raw_events (
        position INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        stream_id CHAR(32) NOT NULL,
        version INTEGER NOT NULL,
        stream_type VARCHAR(32) NOT NULL,
        event_id CHAR(32) NOT NULL UNIQUE,
        type VARCHAR(200) NOT NULL,
        schema_version INTEGER NOT NULL,
        data JSON NOT NULL,
        metadata JSON NOT NULL,
        occurred_at DATETIME NOT NULL,
        recorded_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
        transaction_id BIGINT,
        hash BLOB NOT NULL,
        UNIQUE (stream_id, version)
    )
    """,
    "CREATE INDEX ix_raw_events_transaction_id_position ON raw_events (transaction_id, position)",
)
RAW_INSERT_SQLITE: Final = (
    "INSERT INTO raw_events (stream_id, version, stream_type, event_id, type, "
    "schema_version, data, metadata, occurred_at, hash) "
    "VALUES (?, ?, 'execution', ?, ?, 1, ?, ?, ?, ?)"
)
SQLITE_BUSY_TIMEOUT_MS: Final = 30000


def _chained(previous: bytes, data: str) -> bytes:
    return hashlib.sha256(previous + data.encode()).digest()


# --- raw asyncpg ---------------------------------------------------------------


def _asyncpg_writer(
    pool: asyncpg.Pool, streams: Sequence[Sequence[Payload]]
) -> AsyncWriter:
    async def write() -> None:
        for stream in streams:
            stream_id, previous = uuid.uuid4(), GENESIS
            for version, (event_type, payload) in enumerate(
                zip(STREAM_EVENT_TYPES, stream, strict=True), 1
            ):
                data = encode(payload)
                previous = _chained(previous, data)
                async with pool.acquire() as connection:
                    await connection.fetchval(
                        RAW_INSERT_POSTGRES,
                        stream_id,
                        version,
                        uuid.uuid4(),
                        event_type,
                        data,
                        METADATA_JSON,
                        datetime.now(UTC),
                        previous,
                    )

    return write


async def raw_asyncpg(
    server: Server, workload: Workload, *, timer: AsyncTimer = time_writers
) -> Sample:
    """Raw asyncpg INSERTs into `raw_events` in a fresh, migrated database."""
    async with databases.throwaway_database(server) as dsn:
        await databases.migrate(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=workload.writers)
        try:
            async with pool.acquire() as connection:
                for statement in RAW_TABLE_POSTGRES:
                    await connection.execute(statement)
            await databases.preload_history(dsn, "raw_events", workload.history)
            await time_writers(
                [
                    _asyncpg_writer(pool, streams)
                    for streams in workload.warmup().payloads
                ]
            )
            timing = await timer(
                [_asyncpg_writer(pool, streams) for streams in workload.payloads]
            )
        finally:
            await pool.close()
        size = await databases.mean_size_postgres(dsn, "raw_events", "data")
    return Sample(timing=timing, events=workload.events, data_bytes=size)


# --- raw aiosqlite ---------------------------------------------------------------


def _aiosqlite_writer(
    connection: aiosqlite.Connection,
    lock: asyncio.Lock,
    streams: Sequence[Sequence[Payload]],
) -> AsyncWriter:
    async def write() -> None:
        for stream in streams:
            stream_id, previous = uuid.uuid4().hex, GENESIS
            for version, (event_type, payload) in enumerate(
                zip(STREAM_EVENT_TYPES, stream, strict=True), 1
            ):
                data = encode(payload)
                previous = _chained(previous, data)
                occurred_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                async with lock:
                    await connection.execute("BEGIN IMMEDIATE")
                    try:
                        await connection.execute(
                            RAW_INSERT_SQLITE,
                            (
                                stream_id,
                                version,
                                uuid.uuid4().hex,
                                event_type,
                                data,
                                METADATA_JSON,
                                occurred_at,
                                previous,
                            ),
                        )
                    except BaseException:
                        await connection.execute("ROLLBACK")
                        raise
                    await connection.execute("COMMIT")

    return write


async def _sqlite_connection(path: Path) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=None)
    await connection.execute("PRAGMA journal_mode=WAL")
    await connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    await connection.execute("PRAGMA foreign_keys=ON")
    return connection


async def raw_aiosqlite(
    server: Server, workload: Workload, *, timer: AsyncTimer = time_writers
) -> Sample:
    """Raw aiosqlite: a connection per writer, BEGIN IMMEDIATE; INSERT; COMMIT per event.

    An asyncio lock queues the writers of this process (as the store does),
    so they never spin in SQLite's busy handler.
    """
    del server
    with databases.throwaway_sqlite_file() as path:
        await databases.migrate(databases.sqlite_url(path))
        connections = [await _sqlite_connection(path) for _ in range(workload.writers)]
        try:
            for statement in RAW_TABLE_SQLITE:
                await connections[0].execute(statement)
            lock = asyncio.Lock()
            await time_writers(
                [
                    _aiosqlite_writer(c, lock, s)
                    for c, s in zip(
                        connections, workload.warmup().payloads, strict=True
                    )
                ]
            )
            timing = await timer(
                [
                    _aiosqlite_writer(c, lock, s)
                    for c, s in zip(connections, workload.payloads, strict=True)
                ]
            )
        finally:
            for connection in connections:
                await connection.close()
        size = await databases.mean_size_sqlite(path, "raw_events", "data")
    return Sample(timing=timing, events=workload.events, data_bytes=size)


# --- eventsourcing -----------------------------------------------------------------


def _recorder_writer(
    recorder: PostgresApplicationRecorder, streams: Sequence[Sequence[Payload]]
) -> Callable[[], None]:
    def write() -> None:
        for stream in streams:
            originator_id = uuid.uuid4()
            for version, (event_type, payload) in enumerate(
                zip(STREAM_EVENT_TYPES, stream, strict=True), 1
            ):
                recorder.insert_events(
                    [
                        StoredEvent(
                            originator_id=originator_id,
                            originator_version=version,
                            topic=f"bench.events:{event_type}",
                            state=encode(payload).encode(),
                        )
                    ]
                )

    return write


def _mean_state_size(datastore: PostgresDatastore) -> float:
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(
            "SELECT avg(octet_length(state))::float8 AS size FROM stored_events "
            "WHERE topic <> %s",
            (databases.HISTORY_TOPIC,),
        )
        row = cursor.fetchone()
    return float(row["size"] or 0.0) if row else 0.0


def eventsourcing(server: Server, workload: Workload) -> Sample:
    """eventsourcing's PostgresApplicationRecorder.insert_events, one event per call.

    Each call is one transaction that takes its EXCLUSIVE table lock and
    NOTIFYs (the library's design); W threads share a pool of W connections.
    """
    with databases.throwaway_database_blocking(server) as name:
        datastore = PostgresDatastore(
            dbname=name,
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            pool_size=workload.writers,
        )
        try:
            recorder = PostgresApplicationRecorder(
                datastore, events_table_name="stored_events"
            )
            recorder.create_table()
            asyncio.run(
                databases.preload_history(
                    server.dsn(name), "stored_events", workload.history
                )
            )
            with ThreadPoolExecutor(max_workers=workload.writers) as threads:
                time_threads(
                    threads,
                    [_recorder_writer(recorder, s) for s in workload.warmup().payloads],
                )
                timing: Timing = time_threads(
                    threads, [_recorder_writer(recorder, s) for s in workload.payloads]
                )
            size = _mean_state_size(datastore)
        finally:
            datastore.close()
    return Sample(timing=timing, events=workload.events, data_bytes=size)
