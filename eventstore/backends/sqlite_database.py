"""An SQLite file: the engine, the writer thread, write transactions, errors."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typing_extensions import override

from eventstore import errors, jsonvalues
from eventstore.backends import sqlite_writer as writer
from eventstore.backends.database import Database
from eventstore.backends.sqlite_rows import partition_key
from eventstore.redaction import redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    import aiosqlite
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.pool import ConnectionPoolEntry

    from eventstore.settings import StoreSettings

IMMUTABLE_LOG_MESSAGE: Final = "execution_events is append-only"

FOREIGN_KEYS_OFF_SQL: Final = "PRAGMA foreign_keys=OFF"
FOREIGN_KEYS_ON_SQL: Final = "PRAGMA foreign_keys=ON"


class SqliteDatabase(Database):
    """An SQLite file through aiosqlite, and one writer thread for appends."""

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
            json_serializer=jsonvalues.dump_json,
            json_deserializer=jsonvalues.parse_json,
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
                "eventstore_partition_key", 1, partition_key, deterministic=True
            )

        @sa_event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
            connection.exec_driver_sql(f"BEGIN {mode}")

        super().__init__(url=redact_url(parsed), connect_url=url, engine=engine)
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
    @contextlib.asynccontextmanager
    async def begin_write(self) -> AsyncIterator[AsyncConnection]:
        async with self._begin_immediate() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def _begin_immediate(
        self,
        check: Callable[[], None] | None = None,
        *,
        foreign_keys_at_commit: bool = False,
    ) -> AsyncIterator[AsyncConnection]:
        """A write transaction; `check` runs once this process's writers are passed.

        With `foreign_keys_at_commit`, foreign keys are checked once, before
        the commit, instead of at every statement, and their ON DELETE
        actions do not fire: a replay in place empties a table that other
        tables (a service's own) may reference, and refills it.
        """
        # Take the lock up front (and queue behind this process's writers)
        # rather than upgrade a read lock later, which WAL may refuse.
        async with self.translate_errors(), self._write_lock:
            if check is not None:
                check()
            async with self.engine.connect() as connection:
                if foreign_keys_at_commit:
                    # A no-op inside a transaction: set before BEGIN.
                    await _driver_execute(connection, FOREIGN_KEYS_OFF_SQL)
                try:
                    immediate = await connection.execution_options(
                        sqlite_begin="IMMEDIATE"
                    )
                    async with immediate.begin():
                        yield immediate
                        if foreign_keys_at_commit:
                            await _check_foreign_keys(immediate)
                finally:
                    if foreign_keys_at_commit:
                        await _driver_execute(connection, FOREIGN_KEYS_ON_SQL)

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Sequence[Any]]:
        async with self.translate_errors(), self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: aiosqlite.Connection = raw.driver_connection  # type: ignore[assignment]
            async with driver.execute(sql, params) as cursor:
                return list(await cursor.fetchall())

    @override
    def classify(self, exc: BaseException) -> errors.EventStoreError | None:
        from eventstore.backends import sqlite_errors

        return sqlite_errors.classify(
            exc, url=self.url, immutable_reason=IMMUTABLE_LOG_MESSAGE
        )


async def _driver_execute(connection: AsyncConnection, sql: str) -> None:
    """Run `sql` on the driver's connection, outside SQLAlchemy's transaction."""
    raw = await connection.get_raw_connection()
    driver: aiosqlite.Connection = raw.driver_connection  # type: ignore[assignment]
    await driver.execute(sql)


async def _check_foreign_keys(connection: AsyncConnection) -> None:
    """Refuse to commit rows that reference rows that are not there."""
    violations = (
        await connection.exec_driver_sql("PRAGMA foreign_key_check")
    ).fetchall()
    if violations:
        # (table, rowid, referenced table, key index)
        first: Sequence[Any] = violations[0]
        raise errors.DatabaseError(
            f"{len(violations)} row(s) would reference rows that are not there, "
            f"such as row {first[1]} of {first[0]} referencing {first[2]}; "
            "nothing was changed"
        )
