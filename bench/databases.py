"""Throwaway databases: one fresh PostgreSQL database or SQLite file per measurement."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import aiosqlite
import asyncpg

from bench import cpu
from eventstore.settings import StoreSettings
from eventstore.store import EventStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

DEFAULT_ADMIN_DSN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Server:
    """A PostgreSQL server, named by a DSN of a database we may CREATE DATABASE from."""

    admin_dsn: str = DEFAULT_ADMIN_DSN

    def dsn(self, database: str) -> str:
        """The DSN of another database on the same server."""
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))

    @property
    def host(self) -> str:
        """Host name."""
        return urlsplit(self.admin_dsn).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """TCP port."""
        return urlsplit(self.admin_dsn).port or 5432

    @property
    def user(self) -> str:
        """Role name."""
        return unquote(urlsplit(self.admin_dsn).username or "postgres")

    @property
    def password(self) -> str:
        """Password (empty with trust authentication)."""
        return unquote(urlsplit(self.admin_dsn).password or "")

    async def version(self) -> str:
        """``SELECT version()``."""
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            return str(await connection.fetchval("SELECT version()"))
        finally:
            await connection.close()

    async def settings(self, names: tuple[str, ...]) -> dict[str, str]:
        """Server settings by name, as SHOW prints them."""
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            return {
                name: str(await connection.fetchval(f"SHOW {name}")) for name in names
            }
        finally:
            await connection.close()


async def create_database(server: Server) -> str:
    """CREATE DATABASE bench_<random>; returns its name."""
    name = f"bench_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def drop_database(server: Server, name: str) -> None:
    """DROP DATABASE ... WITH (FORCE)."""
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def throwaway_database(server: Server) -> AsyncIterator[str]:
    """A fresh database for the block, dropped afterwards; yields its DSN."""
    name = await create_database(server)
    token = cpu.CURRENT_DATABASE.set(name)
    try:
        yield server.dsn(name)
    finally:
        cpu.CURRENT_DATABASE.reset(token)
        await drop_database(server, name)


@contextlib.contextmanager
def throwaway_database_blocking(server: Server) -> Iterator[str]:
    """`throwaway_database` for blocking code; yields the database's name."""
    name = asyncio.run(create_database(server))
    token = cpu.CURRENT_DATABASE.set(name)
    try:
        yield name
    finally:
        cpu.CURRENT_DATABASE.reset(token)
        asyncio.run(drop_database(server, name))


@contextlib.contextmanager
def throwaway_sqlite_file() -> Iterator[Path]:
    """A path in a fresh temporary directory, removed afterwards (WAL files too)."""
    with tempfile.TemporaryDirectory(prefix="bench_") as directory:
        yield Path(directory) / "bench.db"


def sqlite_url(path: Path) -> str:
    """The store URL of an SQLite file."""
    return f"sqlite:///{path}"


async def migrate(url: str) -> None:
    """Create the eventstore schema with ``store.migrate()``."""
    async with EventStore.open(url, settings=StoreSettings(pool_size=2)) as store:
        await store.migrate()


@contextlib.asynccontextmanager
async def migrated_store(url: str, *, pool_size: int) -> AsyncIterator[EventStore]:
    """A migrated store on `url` with `pool_size` connections, closed afterwards."""
    async with EventStore.open(
        url, settings=StoreSettings(pool_size=pool_size)
    ) as store:
        await store.migrate()
        yield store


# How much of the log's append guard (migrations 0006, 0008) a diagnostic run
# keeps: all of it, all but the lifecycle check (issue: "at no more than 5 % of
# append throughput"), or none.
Guard = Literal["full", "without_lifecycle", "off"]

# The lifecycle section of PostgreSQL's guard function starts here; a RETURN
# put before it skips that section and nothing else.
_LIFECYCLE_SECTION: Final = "        -- The status before this event"


async def weaken_guard_postgres(dsn: str, guard: Guard) -> None:
    """Keep only the part of the log's append guard that `guard` names.

    "off" disables the trigger: the columns it stamps fall back to their
    defaults (the statement's time, the transaction's id, epoch 0).
    "without_lifecycle" redefines the guard function to return before its
    lifecycle section, so every other check still runs.
    """
    connection = await asyncpg.connect(dsn)
    try:
        if guard == "off":
            await connection.execute(
                "ALTER TABLE execution_events DISABLE TRIGGER execution_events_guard_append"
            )
        elif guard == "without_lifecycle":
            definition: str = await connection.fetchval(
                "SELECT pg_get_functiondef('eventstore_guard_append'::regproc)"
            )
            if definition.count(_LIFECYCLE_SECTION) != 1:
                raise RuntimeError("the guard function has no single lifecycle section")
            await connection.execute(
                definition.replace(
                    _LIFECYCLE_SECTION,
                    "        RETURN NEW;  -- bench: lifecycle check skipped\n"
                    + _LIFECYCLE_SECTION,
                )
            )
    finally:
        await connection.close()


async def weaken_guard_sqlite(path: Path, guard: Guard) -> None:
    """Drop the log's guard triggers that `guard` leaves out (all, or the lifecycle one)."""
    if guard == "full":
        return
    pattern = (
        "execution\\_events\\_guard\\_%"
        if guard == "off"
        else "execution\\_events\\_guard\\_lifecycle"
    )
    async with aiosqlite.connect(path) as connection:
        rows = await connection.execute_fetchall(
            "SELECT name FROM sqlite_master "
            "WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\'",
            (pattern,),
        )
        if not rows:
            raise RuntimeError(f"no guard trigger matches {pattern}")
        for (name,) in rows:
            await connection.execute(f'DROP TRIGGER "{name}"')
        await connection.commit()


HISTORY_TYPE: Final = "BenchHistory"
HISTORY_TOPIC: Final = "bench.events:BenchHistory"
# History: 4-event streams of ~300-byte payloads, written in one statement.
# The hashes are not a valid chain (nothing here reads them back).
_HISTORY_EVENTS: Final = """
INSERT INTO {table} (stream_id, version, stream_type, event_id, type, schema_version,
                     data, metadata, occurred_at, hash)
SELECT s.id, v.n, 'bench', gen_random_uuid(), '{history_type}', 1,
       jsonb_build_object('step', v.n, 'agent', 'agent-00', 'text', repeat('h', 250)),
       '{{"actor":"bench"}}'::jsonb, now(), sha256(convert_to(s.id::text || v.n, 'UTF8'))
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS s,
     generate_series(1, 4) AS v(n)
"""
_HISTORY_STORED_EVENTS: Final = """
INSERT INTO {table} (originator_id, originator_version, topic, state)
SELECT s.id, v.n, '{history_topic}', convert_to(repeat('h', 300), 'UTF8')
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $1)) AS s,
     generate_series(1, 4) AS v(n)
"""


async def preload_history(dsn: str, table: str, events: int) -> None:
    """Give a fresh log `events` events of history, then ANALYZE the database.

    A production log is not empty, and PostgreSQL plans for the table it has:
    without this, a measurement would time how the first seconds of a brand
    new database behave (see RESULTS.md, "Where the time goes"). The raw,
    eventstore and eventsourcing tables get the same history.
    """
    if events <= 0:
        return
    template = _HISTORY_STORED_EVENTS if table == "stored_events" else _HISTORY_EVENTS
    connection = await asyncpg.connect(dsn)
    try:
        statement = template.format(
            table=table, history_type=HISTORY_TYPE, history_topic=HISTORY_TOPIC
        )
        await connection.execute(statement, max(events // 4, 1))
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def mean_size_postgres(dsn: str, table: str, column: str) -> float:
    """Mean stored size in bytes of a jsonb (as text) column, history left out."""
    connection = await asyncpg.connect(dsn)
    try:
        value = await connection.fetchval(
            f"SELECT avg(octet_length({column}::text))::float8 FROM {table} "
            "WHERE type <> $1",
            HISTORY_TYPE,
        )
    finally:
        await connection.close()
    return float(value or 0.0)


async def mean_size_sqlite(path: Path, table: str, column: str) -> float:
    """Mean stored size in bytes of a text column."""
    async with (
        aiosqlite.connect(path) as connection,
        connection.execute(
            f"SELECT avg(length(CAST({column} AS BLOB))) FROM {table}"
        ) as cursor,
    ):
        row = await cursor.fetchone()
    return float(row[0] or 0.0) if row else 0.0
