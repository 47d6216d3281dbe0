"""Throwaway databases: one fresh PostgreSQL database or SQLite file per measurement."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit, urlunsplit

import aiosqlite
import asyncpg

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
    try:
        yield server.dsn(name)
    finally:
        await drop_database(server, name)


@contextlib.contextmanager
def throwaway_database_blocking(server: Server) -> Iterator[str]:
    """`throwaway_database` for blocking code; yields the database's name."""
    name = asyncio.run(create_database(server))
    try:
        yield name
    finally:
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
    async with EventStore.open(url, settings=StoreSettings(pool_size=pool_size)) as store:
        await store.migrate()
        yield store


async def mean_size_postgres(dsn: str, table: str, column: str) -> float:
    """Mean stored size in bytes of a jsonb (as text) or bytea column."""
    connection = await asyncpg.connect(dsn)
    try:
        kind = await connection.fetchval(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = $1 AND column_name = $2",
            table,
            column,
        )
        expression = f"{column}::text" if kind == "jsonb" else column
        value = await connection.fetchval(f"SELECT avg(octet_length({expression}))::float8 FROM {table}")
    finally:
        await connection.close()
    return float(value or 0.0)


async def mean_size_sqlite(path: Path, table: str, column: str) -> float:
    """Mean stored size in bytes of a text column."""
    async with (
        aiosqlite.connect(path) as connection,
        connection.execute(f"SELECT avg(length(CAST({column} AS BLOB))) FROM {table}") as cursor,
    ):
        row = await cursor.fetchone()
    return float(row[0] or 0.0) if row else 0.0
