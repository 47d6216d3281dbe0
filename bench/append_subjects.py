"""What the append benchmark times: eventstore's `store.append` and lifecycle, and
the baselines (raw asyncpg, raw aiosqlite, the eventsourcing library's recorder).

The raw baselines insert into `raw_events` (the columns, unique keys and index
of `execution_events`), one INSERT per event in its own transaction, the hash
chained by the client: the driver's ceiling, no checks beyond the unique keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit

import aiosqlite
import asyncpg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from bench import harness
from bench.harness import CURRENT_DATABASE, GUARD, Clock, connected, migrated_store
from bench.workload import METADATA, METADATA_JSON, STREAM_EVENT_TYPES, USAGE, encode
from eventstore.backends.postgres_database import keep_session
from eventstore.events.envelope import NewEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
    from pathlib import Path

    from bench.harness import Server, Timing
    from bench.workload import Lifecycle, Payload, Workload
    from eventstore.store import EventStore

    AsyncWriter = Callable[[], Awaitable[None]]
    AsyncTimer = Callable[[Sequence[AsyncWriter]], Awaitable[Timing]]
    Streams = Sequence[Sequence[Payload]]

Backend = Literal["postgresql", "sqlite"]
# How much of the log's append guard (migrations 0006, 0008) a diagnostic run
# keeps: all of it, all but the lifecycle check, or none.
Guard = Literal["full", "without_lifecycle", "off"]


@dataclass(frozen=True, slots=True)
class Sample:
    """What a subject returns: the timed section, its event count, the mean stored payload size."""

    timing: Timing
    events: int
    data_bytes: float


async def time_writers(writers: Sequence[AsyncWriter]) -> Timing:
    """Run async writers concurrently and time them from start to the last one's end."""
    clock = Clock(CURRENT_DATABASE.get())
    await asyncio.gather(*(writer() for writer in writers))
    return clock.stop()


def _events(streams: Streams) -> Iterator[tuple[int, int, str, Payload]]:
    """(stream index, version, event type, payload) of each event, stream by stream."""
    for index, stream in enumerate(streams):
        for version, (kind, payload) in enumerate(
            zip(STREAM_EVENT_TYPES, stream, strict=True), 1
        ):
            yield index, version, kind, payload


# --- the database: history, sizes, less guard --------------------------------------

HISTORY_TYPE: Final = "BenchHistory"
HISTORY_TOPIC: Final = "bench.events:BenchHistory"
# History: 4-event streams of ~300-byte payloads, written in one statement.
# The hashes are not a valid chain (nothing here reads them back).
_STREAMS: Final = "FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS s, generate_series(1, 4) AS v(n)"
_HISTORY: Final = {
    "stored_events": "INSERT INTO stored_events (originator_id, originator_version, topic, state) "
    f"SELECT s.id, v.n, '{HISTORY_TOPIC}', convert_to(repeat('h', 300), 'UTF8') {_STREAMS}",
    "events": "INSERT INTO {table} (stream_id, version, stream_type, event_id, type, schema_version, data, metadata, occurred_at, hash) "
    f"SELECT s.id, v.n, 'bench', gen_random_uuid(), '{HISTORY_TYPE}', 1, "
    "jsonb_build_object('step', v.n, 'agent', 'agent-00', 'text', repeat('h', 250)), "
    "'{{\"actor\":\"bench\"}}'::jsonb, now(), sha256(convert_to(s.id::text || v.n, 'UTF8')) "
    f"{_STREAMS}",
}


async def preload_history(dsn: str, table: str, events: int) -> None:
    """Give a fresh log `events` events of history, then ANALYZE the database, so
    that a measurement times a log in service, not a brand-new one."""
    if events > 0:
        statement = _HISTORY.get(table, _HISTORY["events"]).format(table=table)
        async with connected(dsn) as connection:
            await connection.execute(statement, max(events // 4, 1))
            await connection.execute("ANALYZE")


async def mean_size_postgres(dsn: str, table: str) -> float:
    """Mean stored size in bytes of `data` (jsonb, as text), history left out."""
    sql = f"SELECT avg(octet_length(data::text))::float8 FROM {table} WHERE type <> $1"
    return float(await harness.fetchval(dsn, sql, HISTORY_TYPE) or 0.0)


async def mean_size_sqlite(path: Path, table: str) -> float:
    """Mean stored size in bytes of `data`."""
    sql = f"SELECT avg(length(CAST(data AS BLOB))) FROM {table}"
    async with aiosqlite.connect(path) as connection:
        rows = await connection.execute_fetchall(sql)
    return float(next(iter(rows))[0] or 0.0)


# The lifecycle section of PostgreSQL's guard function starts here; a RETURN
# put before it skips that section and nothing else.
_LIFECYCLE_SECTION: Final = "        -- The status before this event"


async def weaken_guard_postgres(dsn: str, guard: Guard) -> None:
    """Keep only the part of the log's append guard that `guard` names: "off"
    disables the trigger (the columns it stamps fall back to their defaults),
    "without_lifecycle" makes the guard function return before its lifecycle
    section."""
    async with connected(dsn) as connection:
        if guard == "off":
            await connection.execute(f"ALTER TABLE execution_events DISABLE {GUARD}")
        elif guard == "without_lifecycle":
            definition: str = await connection.fetchval(
                "SELECT pg_get_functiondef('eventstore_guard_append'::regproc)"
            )
            if definition.count(_LIFECYCLE_SECTION) != 1:
                raise RuntimeError("the guard function has no single lifecycle section")
            skip = "        RETURN NEW;  -- bench: lifecycle check skipped\n"
            await connection.execute(
                definition.replace(_LIFECYCLE_SECTION, skip + _LIFECYCLE_SECTION)
            )


async def weaken_guard_sqlite(path: Path, guard: Guard) -> None:
    """Drop the log's guard triggers that `guard` leaves out (all, or the lifecycle one)."""
    if guard == "full":
        return
    pattern = "execution\\_events\\_guard\\_" + ("%" if guard == "off" else "lifecycle")
    async with aiosqlite.connect(path) as connection:
        rows = await connection.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
            (pattern,),
        )
        if not rows:
            raise RuntimeError(f"no guard trigger matches {pattern}")
        for (name,) in rows:
            await connection.execute(f'DROP TRIGGER "{name}"')
        await connection.commit()


# --- eventstore: store.append and the lifecycle service -----------------------------


@contextlib.asynccontextmanager
async def fresh_store(
    backend: Backend, server: Server, workload: Workload, guard: Guard
) -> AsyncIterator[tuple[EventStore, Callable[[], Awaitable[float]]]]:
    """A migrated store (W connections) on a throwaway database, and a probe of its
    mean payload size; on PostgreSQL with the workload's history preloaded."""
    if backend == "postgresql":
        async with (
            harness.throwaway_database(server) as dsn,
            migrated_store(dsn, workload.writers) as store,
        ):
            await weaken_guard_postgres(dsn, guard)
            await preload_history(dsn, "execution_events", workload.history)
            yield store, lambda: mean_size_postgres(dsn, "execution_events")
    else:
        with harness.sqlite_file() as path:
            async with migrated_store(f"sqlite:///{path}", workload.writers) as store:
                await weaken_guard_sqlite(path, guard)
                yield store, lambda: mean_size_sqlite(path, "execution_events")


def _append_writer(store: EventStore, streams: Streams) -> AsyncWriter:
    async def write() -> None:
        stream_ids = [uuid.uuid4() for _ in streams]
        for index, version, kind, payload in _events(streams):
            event = NewEvent(type=kind, data=payload, metadata=METADATA)
            # Not lifecycle events: a stream type of their own (execution
            # streams hold only the lifecycle, checked by the database).
            await store.append(
                stream_ids[index],
                [event],
                expected_version=version - 1,
                stream_type="bench",
            )

    return write


async def _lifecycle_writers(
    store: EventStore, lifecycles: Sequence[Sequence[Lifecycle]]
) -> list[AsyncWriter]:
    """One writer per message (created here, untimed), all running one graph:
    per execution create, start, progress, complete (4 events)."""
    thread = await store.threads.create(title="bench")
    graph = await store.graphs.create(
        name="bench-crew",
        version="1",
        definition={
            "nodes": ["planner", "researcher", "writer"],
            "edges": [["planner", "researcher"], ["researcher", "writer"]],
        },
    )
    executions = store.executions

    def writer(
        message_id: uuid.UUID, worker: str, runs: Sequence[Lifecycle]
    ) -> AsyncWriter:
        async def write() -> None:
            for run in runs:
                execution_id = await executions.create(
                    message_id=message_id, graph_id=graph.id, inputs=run.inputs
                )
                await executions.start(execution_id, worker_id=worker)
                await executions.progress(
                    execution_id, step="research", detail=run.detail, metrics=USAGE
                )
                await executions.complete(
                    execution_id, result=run.result, metrics=USAGE
                )

        return write

    writers: list[AsyncWriter] = []
    for index, runs in enumerate(lifecycles):
        message = await store.messages.create(
            thread_id=thread.id, role="user", content=f"question {index}"
        )
        writers.append(writer(message.id, f"worker-{index}", runs))
    return writers


async def store_subject(
    kind: str,
    backend: Backend,
    server: Server,
    workload: Workload,
    *,
    timer: AsyncTimer = time_writers,
    guard: Guard = "full",
) -> Sample:
    """`store.append` (kind "store_append": one event per append, expected_version =
    the previous version) or the lifecycle (create, start, progress, complete =
    4 events per execution), on a fresh store."""
    async with fresh_store(backend, server, workload, guard) as (store, size):
        for work, clock in ((workload.warmup(), time_writers), (workload, timer)):
            if kind == "store_append":
                writers = [_append_writer(store, streams) for streams in work.payloads]
            else:
                writers = await _lifecycle_writers(store, work.lifecycles)
            timing = await clock(writers)
        return Sample(timing, workload.events, await size())


# --- raw asyncpg, raw aiosqlite -----------------------------------------------------

RAW_TABLE: Final = {
    "postgresql": "CREATE TABLE raw_events (position bigserial PRIMARY KEY, stream_id uuid NOT NULL, version integer NOT NULL, stream_type varchar(32) NOT NULL, event_id uuid NOT NULL UNIQUE, type varchar(200) NOT NULL, schema_version integer NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL, occurred_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), transaction_id xid8 DEFAULT pg_current_xact_id(), hash bytea NOT NULL, UNIQUE (stream_id, version))",
    "sqlite": "CREATE TABLE raw_events (position INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, stream_id CHAR(32) NOT NULL, version INTEGER NOT NULL, stream_type VARCHAR(32) NOT NULL, event_id CHAR(32) NOT NULL UNIQUE, type VARCHAR(200) NOT NULL, schema_version INTEGER NOT NULL, data JSON NOT NULL, metadata JSON NOT NULL, occurred_at DATETIME NOT NULL, recorded_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, transaction_id BIGINT, hash BLOB NOT NULL, UNIQUE (stream_id, version))",
}
RAW_INDEX: Final = "CREATE INDEX ix_raw_events_transaction_id_position ON raw_events (transaction_id, position)"
_RAW_INSERT: Final = "INSERT INTO raw_events (stream_id, version, stream_type, event_id, type, schema_version, data, metadata, occurred_at, hash) VALUES ({}, {}, 'execution', {}, {}, 1, {}, {}, {}, {})"
RAW_INSERT_POSTGRES: Final = (
    _RAW_INSERT.format(*(f"${i}" for i in range(1, 9))) + " RETURNING position"
)
RAW_INSERT_SQLITE: Final = _RAW_INSERT.format(*"????????")


def _chained(streams: Streams) -> Iterator[tuple[int, int, str, str, bytes]]:
    """(stream index, version, event type, JSON, hash chained by the client) of each event."""
    previous = bytes(32)
    for index, version, kind, payload in _events(streams):
        data = encode(payload)
        previous = bytes(32) if version == 1 else previous
        previous = hashlib.sha256(previous + data.encode()).digest()
        yield index, version, kind, data, previous


def _asyncpg_writer(pool: asyncpg.Pool, streams: Streams) -> AsyncWriter:
    async def write() -> None:
        stream_ids = [uuid.uuid4() for _ in streams]
        for index, version, kind, data, chained in _chained(streams):
            async with pool.acquire() as connection:
                await connection.fetchval(
                    RAW_INSERT_POSTGRES,
                    *(stream_ids[index], version, uuid.uuid4(), kind, data),
                    *(METADATA_JSON, datetime.now(UTC), chained),
                )

    return write


async def raw_asyncpg(
    server: Server, workload: Workload, *, timer: AsyncTimer = time_writers
) -> Sample:
    """Raw asyncpg INSERTs into `raw_events` in a fresh, migrated database."""
    async with harness.throwaway_database(server) as dsn:
        await harness.migrate(dsn)
        # The store's pool settings: no reset query on release (a round trip).
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=workload.writers, reset=keep_session
        )
        try:
            await harness.execute(dsn, RAW_TABLE["postgresql"], RAW_INDEX)
            await preload_history(dsn, "raw_events", workload.history)
            warmup = workload.warmup().payloads
            await time_writers([_asyncpg_writer(pool, s) for s in warmup])
            timing = await timer([_asyncpg_writer(pool, s) for s in workload.payloads])
        finally:
            await pool.close()
        size = await mean_size_postgres(dsn, "raw_events")
    return Sample(timing, workload.events, size)


def _aiosqlite_writer(
    connection: aiosqlite.Connection, lock: asyncio.Lock, streams: Streams
) -> AsyncWriter:
    async def write() -> None:
        stream_ids = [uuid.uuid4().hex for _ in streams]
        for index, version, kind, data, chained in _chained(streams):
            occurred_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            values = (stream_ids[index], version, uuid.uuid4().hex, kind, data)
            row = (*values, METADATA_JSON, occurred_at, chained)
            async with lock:
                await connection.execute("BEGIN IMMEDIATE")
                try:
                    await connection.execute(RAW_INSERT_SQLITE, row)
                except BaseException:
                    await connection.execute("ROLLBACK")
                    raise
                await connection.execute("COMMIT")

    return write


async def raw_aiosqlite(server: Server, workload: Workload) -> Sample:
    """Raw aiosqlite: a connection per writer, BEGIN IMMEDIATE; INSERT; COMMIT per
    event; an asyncio lock queues the writers (as the store does), so they never
    spin in SQLite's busy handler."""
    del server
    with harness.sqlite_file() as path:
        await harness.migrate(f"sqlite:///{path}")
        connections = [
            await aiosqlite.connect(path, isolation_level=None)
            for _ in range(workload.writers)
        ]
        try:
            for connection in connections:
                for pragma in (
                    "journal_mode=WAL",
                    "busy_timeout=30000",
                    "foreign_keys=ON",
                ):
                    await connection.execute(f"PRAGMA {pragma}")
            await connections[0].execute(RAW_TABLE["sqlite"])
            await connections[0].execute(RAW_INDEX)
            lock = asyncio.Lock()
            for work in (workload.warmup(), workload):
                writers = [
                    _aiosqlite_writer(c, lock, s)
                    for c, s in zip(connections, work.payloads, strict=True)
                ]
                timing = await time_writers(writers)
        finally:
            for connection in connections:
                await connection.close()
        size = await mean_size_sqlite(path, "raw_events")
    return Sample(timing, workload.events, size)


# --- eventsourcing --------------------------------------------------------------------


def _recorder_writer(
    recorder: PostgresApplicationRecorder, streams: Streams
) -> Callable[[], None]:
    def write() -> None:
        stream_ids = [uuid.uuid4() for _ in streams]
        for index, version, kind, payload in _events(streams):
            state = encode(payload).encode()
            event = StoredEvent(
                stream_ids[index], version, f"bench.events:{kind}", state
            )
            recorder.insert_events([event])

    return write


def _recorded(dsn: str, workload: Workload) -> tuple[Timing, float]:
    """The timed section (after a warm-up) and the mean stored size, on W threads
    sharing a pool of W connections."""
    url = urlsplit(dsn)
    datastore = PostgresDatastore(
        dbname=url.path.lstrip("/"),
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        user=unquote(url.username or "postgres"),
        password=unquote(url.password or ""),
        pool_size=workload.writers,
    )
    try:
        recorder = PostgresApplicationRecorder(
            datastore, events_table_name="stored_events"
        )
        recorder.create_table()
        asyncio.run(preload_history(dsn, "stored_events", workload.history))
        with ThreadPoolExecutor(max_workers=workload.writers) as threads:
            for work in (workload.warmup(), workload):
                clock = Clock(CURRENT_DATABASE.get())
                writers = [_recorder_writer(recorder, s) for s in work.payloads]
                for future in [threads.submit(writer) for writer in writers]:
                    future.result()
                timing = clock.stop()
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT avg(octet_length(state))::float8 AS size FROM stored_events WHERE topic <> %s",
                (HISTORY_TOPIC,),
            )
            row = cursor.fetchone()
    finally:
        datastore.close()
    return timing, float(row["size"] or 0.0) if row else 0.0


async def eventsourcing(server: Server, workload: Workload) -> Sample:
    """eventsourcing's PostgresApplicationRecorder.insert_events, one event per call:
    each call is one transaction that takes its EXCLUSIVE table lock and NOTIFYs
    (the library's design)."""
    async with harness.throwaway_database(server) as dsn:
        timing, size = await asyncio.to_thread(_recorded, dsn, workload)
    return Sample(timing, workload.events, size)
