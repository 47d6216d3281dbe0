"""Append throughput: eventstore's `store.append` and lifecycle against raw asyncpg,
the eventsourcing library and raw aiosqlite, in interleaved rounds, each
measurement on a fresh database; medians to bench/RESULTS.md (`--quick`: a smoke
run in seconds that writes nothing). The raw baselines insert into `raw_events`
(the columns, unique keys and index of `execution_events`), one INSERT per event,
the hash chained by the client: the driver's ceiling, no checks beyond the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import hashlib
import itertools
import statistics
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import unquote, urlsplit

import aiosqlite
import asyncpg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from rich.console import Console
from rich.markdown import Markdown

from bench import harness, profiles, workload
from bench.harness import Environment, Run, Server
from eventstore.backends.postgres_database import keep_session
from eventstore.events.envelope import NewEvent

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from bench.harness import Rounds, Timing
    from bench.workload import Payload, Workload
    from eventstore.store import EventStore

    # Appends one writer's share (by its index) of a workload.
    Write = Callable[[int, Workload], Awaitable[object]]
    Streams = Sequence[Sequence[Payload]]

RESULTS_PATH: Final = Path(__file__).parent / "RESULTS.md"
# Every subject and its baseline (None: it is one); "sqlite" in a key means SQLite.
BASELINES: Final = {
    "raw_asyncpg": None,
    "store_append": "raw_asyncpg",
    "lifecycle": "raw_asyncpg",
    "eventsourcing": "raw_asyncpg",
    "raw_aiosqlite": None,
    "store_append_sqlite": "raw_aiosqlite",
    "lifecycle_sqlite": "raw_aiosqlite",
}
# Issue 16: the ratio to raw asyncpg to reach at the most writers (32).
TARGETS: Final = {"store_append": 0.9, "lifecycle": 0.85}


class Pair(NamedTuple):
    """A subject at a writer count: what a round measures once."""

    key: str
    writers: int

    def __str__(self) -> str:
        return f"`{self.key}` at {self.writers} writers"


@dataclass(frozen=True, slots=True)
class Config:
    """The settings of one run (see `python -m bench.append --help`)."""

    runs: int = 3
    writers: tuple[int, ...] = (8, 32)
    events: int = 12000
    sqlite_events: int = 3000
    history: int = 20000
    max_other_cores: float = 0.25
    retries: int = 2
    subjects: tuple[str, ...] = tuple(BASELINES)
    profile: bool = True

    def work(self, pair: Pair) -> Workload:
        """One measurement's workload."""
        sqlite = "sqlite" in pair.key
        events = self.sqlite_events if sqlite else self.events
        per_writer = max(events // pair.writers, 1)
        streams = -(-per_writer // workload.EVENTS_PER_STREAM)  # whole streams
        return workload.Workload(pair.writers, streams, 0 if sqlite else self.history)


# A smoke run: no retries, so no waiting for a quiet machine either.
QUICK: Final = Config(
    runs=1, writers=(2,), events=32, sqlite_events=16, history=100, retries=0
)


def config_from(argv: Sequence[str]) -> tuple[Config, Server, Path | None]:
    """Settings, server and the report's path from the command line."""
    parser = harness.options(
        "python -m bench.append",
        "Append throughput: eventstore against raw asyncpg, eventsourcing and raw "
        "aiosqlite, interleaved rounds, medians to bench/RESULTS.md.",
        Config(),
        "where to write the report (default bench/RESULTS.md; --quick: nowhere)",
        "a smoke run: 1 round, 2 writers, a few events",
        runs="interleaved rounds (default 3)",
        writers="writer counts (default 8 32)",
        events="events per PostgreSQL measurement, all writers (default 12000)",
        sqlite_events="events per SQLite measurement (default 3000)",
        history="events of history loaded into each PostgreSQL log first (default 20000)",
        max_other_cores="other programs' cores that disturb a measurement (default 0.25)",
        retries="how often a disturbed measurement is run again (default 2)",
        subjects=f"what to measure (default: all of {', '.join(BASELINES)})",
        profile="skip the cProfile section",
    )
    args = parser.parse_args(argv)
    config: Config = harness.configured(QUICK if args.quick else Config(), args)
    if min(config.runs, *config.writers, config.events, config.sqlite_events) < 1:
        parser.error("--runs, --writers and the event counts must be positive")
    if unknown := set(config.subjects) - set(BASELINES):
        parser.error(f"unknown subjects: {', '.join(sorted(unknown))}")
    output = args.output or (None if args.quick else RESULTS_PATH)
    return config, Server(args.dsn), output


# --- the subjects ----------------------------------------------------------------------


async def measure(
    key: str,
    server: Server,
    work: Workload,
    profiler: cProfile.Profile | None = None,
) -> tuple[Timing, float]:
    """One subject on a fresh database: its timed section (`profiler` on during it),
    after an untimed warm-up of one stream per writer, and the mean stored
    payload size in bytes. PostgreSQL logs get the work's history first."""
    async with contextlib.AsyncExitStack() as stack:
        if "sqlite" in key:
            url = f"sqlite:///{stack.enter_context(harness.sqlite_file())}"
        else:
            url = await stack.enter_async_context(harness.throwaway_database(server))
        write, table = await _setup(key, url, work.writers, stack)
        if "sqlite" not in key:
            await preload_history(url, table, work.history)
        await _timed(write, work.warmup())
        timing = await _timed(write, work, profiler)
        return timing, await _mean_size(url, table)


async def _timed(
    write: Write, work: Workload, profiler: cProfile.Profile | None = None
) -> Timing:
    """Run the writers concurrently, timed from the start to the last one's end."""

    async def writers() -> object:
        return await asyncio.gather(*(write(i, work) for i in range(work.writers)))

    run = profiles.profiled(profiler, writers) if profiler else writers
    return (await harness.timed(run, harness.CURRENT_DATABASE.get()))[1]


async def _setup(
    key: str, url: str, writers: int, stack: contextlib.AsyncExitStack
) -> tuple[Write, str]:
    """The subject's write and its log's table, in the fresh database at `url`."""
    if key == "eventsourcing":
        return _eventsourcing(url, writers, stack), "stored_events"
    if key == "raw_asyncpg":
        await harness.migrate(url)
        await harness.execute(url, RAW_TABLE["postgresql"], RAW_INDEX)
        # The store's pool settings: no reset query on release (a round trip).
        pool = await stack.enter_async_context(
            asyncpg.create_pool(url, min_size=1, max_size=writers, reset=keep_session)
        )
        return functools.partial(_asyncpg_write, pool), "raw_events"
    if key == "raw_aiosqlite":
        await harness.migrate(url)
        path = url.removeprefix("sqlite:///")
        connect = functools.partial(aiosqlite.connect, path, isolation_level=None)
        connections = [
            await stack.enter_async_context(connect()) for _ in range(writers)
        ]
        pragmas = ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON")
        for connection, pragma in itertools.product(connections, pragmas):
            await connection.execute(f"PRAGMA {pragma}")
        await connections[0].execute(RAW_TABLE["sqlite"])
        await connections[0].execute(RAW_INDEX)
        lock = asyncio.Lock()
        return functools.partial(_aiosqlite_write, connections, lock), "raw_events"
    store = await stack.enter_async_context(harness.migrated_store(url, writers))
    if key.startswith("lifecycle"):
        return await _lifecycle(store, writers), "execution_events"
    return functools.partial(_append, store), "execution_events"


def _events(streams: Streams) -> Iterator[tuple[uuid.UUID, int, str, Payload]]:
    """(stream id, version, event type, payload) of each event, stream by stream."""
    for stream in streams:
        stream_id = uuid.uuid4()
        for version, (kind, payload) in enumerate(
            zip(workload.STREAM_EVENT_TYPES, stream, strict=True), 1
        ):
            yield stream_id, version, kind, payload


# --- history and payload sizes ---------------------------------------------------------

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
        async with harness.connected(dsn) as connection:
            await connection.execute(statement, max(events // 4, 1))
            await connection.execute("ANALYZE")


async def _mean_size(url: str, table: str) -> float:
    """Mean stored size in bytes of the appended payloads, history left out:
    PostgreSQL's jsonb as text, eventsourcing's `state`, SQLite's `data`."""
    if url.startswith("sqlite:///"):
        sql = f"SELECT avg(length(CAST(data AS BLOB))) FROM {table}"
        async with aiosqlite.connect(url.removeprefix("sqlite:///")) as connection:
            rows = await connection.execute_fetchall(sql)
        return float(next(iter(rows))[0] or 0.0)
    value, kind, history = ("data::text", "type", HISTORY_TYPE)
    if table == "stored_events":
        value, kind, history = ("state", "topic", HISTORY_TOPIC)
    sql = f"SELECT avg(octet_length({value}))::float8 FROM {table} WHERE {kind} <> $1"
    return float(await harness.fetchval(url, sql, history) or 0.0)


# --- eventstore: store.append and the lifecycle service --------------------------------


async def _append(store: EventStore, index: int, work: Workload) -> None:
    """One event per append, `expected_version` = the previous version."""
    for stream_id, version, kind, payload in _events(work.payloads[index]):
        event = NewEvent(type=kind, data=payload, metadata=workload.METADATA)
        # Not lifecycle events: a stream type of their own (execution streams
        # hold only the lifecycle, checked by the database).
        await store.append(
            stream_id, [event], expected_version=version - 1, stream_type="bench"
        )


async def _lifecycle(store: EventStore, writers: int) -> Write:
    """Per execution create, start, progress, complete (4 events); each writer
    under a message of its own (created here, untimed), all in one graph."""
    thread = await store.threads.create(title="bench")
    graph = await store.graphs.create(
        name="bench-crew",
        version="1",
        definition={
            "nodes": ["planner", "researcher", "writer"],
            "edges": [["planner", "researcher"], ["researcher", "writer"]],
        },
    )
    messages = [
        await store.messages.create(
            thread_id=thread.id, role="user", content=f"question {index}"
        )
        for index in range(writers)
    ]
    executions = store.executions

    async def write(index: int, work: Workload) -> None:
        for inputs, detail, result in work.lifecycles[index]:
            execution_id = await executions.create(
                message_id=messages[index].id, graph_id=graph.id, inputs=inputs
            )
            await executions.start(execution_id, worker_id=f"worker-{index}")
            await executions.progress(
                execution_id, step="research", detail=detail, metrics=workload.USAGE
            )
            await executions.complete(
                execution_id, result=result, metrics=workload.USAGE
            )

    return write


# --- raw asyncpg, raw aiosqlite, eventsourcing -----------------------------------------

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


def _chained(streams: Streams) -> Iterator[tuple[uuid.UUID, int, str, str, bytes]]:
    """(stream id, version, event type, JSON, hash chained by the client) of each event."""
    previous = bytes(32)
    for stream_id, version, kind, payload in _events(streams):
        data = workload.encode(payload)
        previous = bytes(32) if version == 1 else previous
        previous = hashlib.sha256(previous + data.encode()).digest()
        yield stream_id, version, kind, data, previous


async def _asyncpg_write(pool: asyncpg.Pool, index: int, work: Workload) -> None:
    for stream_id, version, kind, data, chained in _chained(work.payloads[index]):
        async with pool.acquire() as connection:
            await connection.fetchval(
                RAW_INSERT_POSTGRES,
                *(stream_id, version, uuid.uuid4(), kind, data),
                *(workload.METADATA_JSON, datetime.now(UTC), chained),
            )


async def _aiosqlite_write(
    connections: list[aiosqlite.Connection],
    lock: asyncio.Lock,
    index: int,
    work: Workload,
) -> None:
    """BEGIN IMMEDIATE; INSERT; COMMIT per event on the writer's own connection;
    the lock queues the writers (as the store does), so that they never spin in
    SQLite's busy handler."""
    connection = connections[index]
    for stream_id, version, kind, data, chained in _chained(work.payloads[index]):
        occurred_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        values = (stream_id.hex, version, uuid.uuid4().hex, kind, data)
        async with lock:
            await connection.execute("BEGIN IMMEDIATE")
            try:
                await connection.execute(
                    RAW_INSERT_SQLITE,
                    (*values, workload.METADATA_JSON, occurred_at, chained),
                )
            except BaseException:
                await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")


def _eventsourcing(url: str, writers: int, stack: contextlib.AsyncExitStack) -> Write:
    """eventsourcing's PostgresApplicationRecorder.insert_events, one event per call
    from W threads sharing a pool of W connections: each call is a transaction
    that takes its EXCLUSIVE table lock and NOTIFYs (the library's design)."""
    parts = urlsplit(url)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        pool_size=writers,
    )
    stack.callback(datastore.close)
    recorder = PostgresApplicationRecorder(datastore, events_table_name="stored_events")
    recorder.create_table()
    threads = stack.enter_context(ThreadPoolExecutor(max_workers=writers))

    def insert(streams: Streams) -> None:
        for stream_id, version, kind, payload in _events(streams):
            state = workload.encode(payload).encode()
            topic = f"bench.events:{kind}"
            recorder.insert_events([StoredEvent(stream_id, version, topic, state)])

    def write(index: int, work: Workload) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(threads, insert, work.payloads[index])

    return write


# --- the run ---------------------------------------------------------------------------

RULES: Final = profiles.Rules(
    """
    eventstore: /eventstore/
    pydantic: /pydantic ~pydantic
    sqlalchemy: /sqlalchemy/
    asyncpg: /asyncpg/ ~asyncpg
    asyncio event loop: /asyncio/ selectors.py ~_asyncio ~_contextvars
    socket send/recv: ~socket
    hashing: ~hashlib ~sha256
    json, uuid, datetime, other stdlib: ~_json *file
    bench driver: /bench/
    other builtins: *builtin
    """,
    hidden=("/asyncio/", "/bench/", "_contextvars.Context", "builtins.exec"),
)


async def run(
    config: Config, server: Server, console: Console
) -> tuple[Rounds, list[profiles.Profile]]:
    """The interleaved rounds, then the profile; failures are recorded, not raised."""

    async def quiet() -> None:
        """Wait for a quiet machine, unless there are no retries (a smoke run)."""
        if config.retries:
            waited = await harness.until_quiet(config.max_other_cores)
            console.print(f"waited {waited:.0f} s for a quiet machine")

    await quiet()
    pairs = [Pair(key, w) for w in config.writers for key in config.subjects]

    async def measured(pair: Pair, number: int, sequence: int) -> Run:
        work = config.work(pair)
        timing, size = await measure(pair.key, server, work)
        events = work.events
        return Run(pair.key, number, sequence, events, timing, pair.writers, size)

    rounds = await harness.interleaved(
        pairs,
        measured,
        rounds=config.runs,
        max_other_cores=config.max_other_cores,
        console=console,
        retries=config.retries,
    )
    found: list[profiles.Profile] = []
    if config.profile and "store_append" in config.subjects:
        console.rule("profile: raw asyncpg and store.append")
        await quiet()
        try:
            for key in ("raw_asyncpg", "store_append"):
                profiler = cProfile.Profile()
                work = config.work(Pair(key, max(config.writers)))
                timing, _ = await measure(key, server, work, profiler)
                events, seconds = work.events, timing.seconds
                found.append(
                    profiles.summarize(
                        key, profiler, RULES, events=events, seconds=seconds
                    )
                )
        except Exception as exc:  # recorded in the report
            rounds.failures.append(f"profile: {exc!r}")
            found.clear()
    return rounds, found


# --- RESULTS.md ------------------------------------------------------------------------

SUMMARY: Final = """\
{% for name, baseline, sqlite in (("PostgreSQL", "raw asyncpg", false), ("SQLite", "raw aiosqlite", true)) %}
## Results: {{ name }} (ratios against {{ baseline }})

| subject | writers | median events/s | ratio of medians | per-round ratios | client CPU µs/event (median) | server CPU µs/event (median) | stored payload B (mean) | events/s per round |
|---|---|---|---|---|---|---|---|---|
{% for s, w, runs in pairs if ("sqlite" in s) == sqlite %}
{% set base = BASELINES[s] %}
| `{{ s }}` | {{ w }} | {{ R.median(s, writers=w)|n }} | {{ (R.ratio(s, base, writers=w)|n(2) + "x") if base else "1 (baseline)" }} | {{ R.per_round(s, base, writers=w)|ratios or "-" }} | {{ R.median(s, "client_us", w)|n }} | {{ "-" if "sqlite" in s else R.median(s, "server_us", w)|n }} | {{ mean(runs|map(attribute="data_bytes"))|n }} | {{ runs|map(attribute="rate")|map("num")|join(", ") }} |
{% endfor %}

{% endfor %}
## Targets

{% for key, target in TARGETS.items() %}
{% set ratio = R.ratio(key, BASELINES[key], writers=c.writers|max) %}
- `{{ key }}` at {{ c.writers|max }} writers: {{ ratio|n(2) }}x `{{ BASELINES[key] }}` (target >= {{ target }}x): **{{ "n/a" if ratio is none else "met" if ratio >= target else "NOT met" }}**
{% endfor %}
"""
REPORT: Final = """\
# Append throughput: eventstore against raw drivers and eventsourcing

Generated by `{{ command }}` (bench/append.py); the figures below are measured, none are edited.

{{ machine }}
## Method

- {{ c.runs }} interleaved round{{ "s" if c.runs > 1 }}: each runs every (subject, writer count) pair once, in a fixed order that starts one pair later each round; the tables give medians over rounds. Every measurement warms up on one stream per writer before its timed section.
- Every measurement gets a fresh database: PostgreSQL `CREATE DATABASE bench_<random>`, dropped `WITH (FORCE)` afterwards, or a new SQLite file in WAL mode; migrated by `store.migrate()` (the eventsourcing peer creates its own table). Each PostgreSQL log (`execution_events`, `raw_events`, eventsourcing's `stored_events`) first gets {{ c.history|num }} events of history in 4-event streams by one SQL statement, and the database is `ANALYZE`d, so that the measurement times a log in service; SQLite logs start empty.
- Workload: W concurrent writers (W = {{ c.writers|join(", ") }}), each appending its own 4-event streams one after another, one event per append and transaction, `expected_version` = the previous version; ~300-byte JSON payloads generated up front from a fixed seed (encoding and hashing them is measured work); {{ c.events }} events per PostgreSQL measurement and {{ c.sqlite_events }} per SQLite one, split evenly among the writers in whole streams.
- `lifecycle`: per execution `create`, `start`, `progress`, `complete` (4 events), each writer under its own message, all in one graph (created untimed); `ExecutionStarted` carries only a worker id, so the mean payload is smaller.
- `raw_asyncpg`: `asyncpg.create_pool(max_size=W, reset=keep_session)` (as the store's pool: no reset round trip on release), one `INSERT ... RETURNING position` per event (autocommit) into `raw_events`, which has the columns, unique keys, `xid8` default and `(transaction_id, position)` index of `execution_events`; the client chains the sha256 hash. The store runs with `StoreSettings(pool_size=W)`.
- `eventsourcing`: `PostgresDatastore(pool_size=W)`, `PostgresApplicationRecorder.insert_events([StoredEvent])` with one event per call from W threads; each call takes the library's EXCLUSIVE table lock and NOTIFYs, as designed.
- `raw_aiosqlite`: a connection per writer, an asyncio lock queuing them (as the store does), `BEGIN IMMEDIATE; INSERT; COMMIT` per event, `synchronous` FULL.
- events/s = events / wall time of the timed section. Client CPU: this process, all its threads (SQLite runs inside it). Server CPU: the PostgreSQL processes serving the measurement's database and the server's shared ones (`/proc/<pid>/stat`). Other programs: the machine's busy time minus both, in cores; a measurement during which they kept more than {{ c.max_other_cores }} cores busy is disturbed and run again (up to {{ c.retries }} times, after waiting for a quiet machine); disturbed attempts are listed at the end, not used.
- Stored payload: PostgreSQL `octet_length(data::text)` (jsonb's text form adds a space after `:` and `,`), eventsourcing `octet_length(state)`, SQLite `length(data)`.

{{ summary }}
{% if failures %}
## Failures

{% for failure in failures %}
- {{ failure }}
{% endfor %}

{% endif %}
## Where the time goes

CPU per event on PostgreSQL (medians over rounds) of the client process and of the server processes serving the benchmark. They share {{ nproc }} cores, so the last column is the throughput that budget would allow if nothing else ran and nothing waited.

| subject | writers | client µs/event | server µs/event | together | median events/s | {{ nproc }} cores / together |
|---|---|---|---|---|---|---|
{% for s, w, _ in pairs if "sqlite" not in s %}
{% set client, server = R.median(s, "client_us", w), R.median(s, "server_us", w) %}
| `{{ s }}` | {{ w }} | {{ client|n }} | {{ server|n }} | {{ (client + server)|n }} | {{ R.median(s, writers=w)|n }} | {{ (nproc * 1e6 / (client + server) if client + server else None)|n }} |
{% endfor %}

{% if profile %}
{% set raw, store = profile %}
cProfile of an extra run of `raw_asyncpg` and of `store_append` at {{ store.events|num }} events and {{ c.writers|max }} writers, in this process, the profiler on for the timed section only (raw asyncpg {{ (raw.events / raw.seconds)|num }} events/s under it, store.append {{ (store.events / store.seconds)|num }}). Own time per event, by where it was spent; the event loop's wait in epoll shows as idle. The profiler slows Python code more than C code: read the split, not the absolute numbers.

| where (own time) | raw asyncpg µs/event | store.append µs/event | difference |
|---|---|---|---|
{% for where in categories if raw.us(where) >= 0.05 or store.us(where) >= 0.05 %}
| {{ where }} | {{ "%.1f"|format(raw.us(where)) }} | {{ "%.1f"|format(store.us(where)) }} | {{ "%+.1f"|format(store.us(where) - raw.us(where)) }} |
{% endfor %}
| **client busy (all but idle)** | **{{ "%.1f"|format(raw.busy_us) }}** | **{{ "%.1f"|format(store.busy_us) }}** | **{{ "%+.1f"|format(store.busy_us - raw.busy_us) }}** |

Top functions of `store.append` by cumulative time (the event loop's frames left out; a coroutine counts a call per resumption):

{{ functions(store, store.top) }}

{% endif %}
{{ notes }}
## Per-run figures

{{ per_run(R) }}
{% if disturbed %}

Disturbed attempts, run again and left out of the medians:

{{ per_run(disturbed) }}
{% endif %}
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.append`` and ``python -m bench``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    config, server, output = config_from(arguments)
    console = Console()
    postgres = any("sqlite" not in key for key in config.subjects)
    environment = Environment(server if postgres else None)
    rounds, profile = asyncio.run(run(config, server, console))
    environment.finish()
    runs = rounds.runs
    pairs = [(k, w, runs.of(k, w)) for w in config.writers for k in config.subjects]
    tables = {"c": config, "R": runs, "pairs": [p for p in pairs if p[2]]}
    summary = harness.report(
        SUMMARY, **tables, TARGETS=TARGETS, BASELINES=BASELINES, mean=statistics.mean
    )
    console.print(Markdown(summary))
    if output is not None:
        report = harness.report(
            REPORT,
            **tables,
            summary=summary,
            command=" ".join(["python -m bench.append", *arguments]),
            machine=environment.lines(),
            failures=rounds.failures,
            nproc=environment.nproc,
            profile=profile,
            categories=RULES.categories,
            functions=profiles.functions,
            notes=harness.notes(output),
            per_run=harness.per_run_table,
            disturbed=rounds.disturbed,
        )
        output.write_text(report, encoding="utf-8")
        console.print(f"wrote {output}")
    for failure in rounds.failures:
        console.print(f"[red]failed: {failure}[/red]")
    if rounds.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
