"""A PostgreSQL database: the SQLAlchemy engine, the asyncpg pool, migrations, errors."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING, Final

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typing_extensions import override

from eventstore import errors
from eventstore.backends.database import Database
from eventstore.backends.leadership import process_identity
from eventstore.backends.postgres_append import PostgresAppender
from eventstore.backends.postgres_namespace import lock_key_sql
from eventstore.backends.postgres_options import split_options
from eventstore.jsonvalues import dump_json, parse_json
from eventstore.redaction import redact_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

    from eventstore.backends.postgres_upsert import BulkUpsert
    from eventstore.settings import StoreSettings

IMMUTABLE_LOG_SQLSTATE: Final = "ZE001"  # raised by the log's immutability triggers

UNMIGRATED_SQLSTATES: Final = frozenset({"42P01", "42883"})  # no table / no function

NAME_LOCK_SQL: Final = f"SELECT pg_advisory_xact_lock({lock_key_sql('name', ':name')})"
MIGRATION_TRY_LOCK_SQL: Final = (
    "SELECT pg_try_advisory_lock(hashtextextended('eventstore-migrate', 0))"
)

# How often a migration runner waiting for another one asks for the lock again.
MIGRATION_LOCK_POLL: Final = 0.05

MIGRATION_UNLOCK_SQL: Final = (
    "SELECT pg_advisory_unlock(hashtextextended('eventstore-migrate', 0))"
)

# Run by every new connection: starts a new epoch after a restore (0006).
CHECK_EPOCH_SQL: Final = "SELECT eventstore_check_epoch()"

HAS_EPOCHS_SQL: Final = "SELECT to_regprocedure('eventstore_check_epoch()') IS NOT NULL"


class PostgresDatabase(Database):
    """PostgreSQL through asyncpg (hot path) and SQLAlchemy Core (the rest)."""

    def __init__(self, *, url: str, settings: StoreSettings) -> None:
        # The URL's ?options= settings go to every connection (see the module).
        parsed, session_settings = split_options(make_url(url))
        schema = settings.postgres_schema
        if schema is not None:
            if "search_path" in session_settings:
                raise errors.ConfigurationError(
                    "the database URL's options set search_path and "
                    "EVENTSTORE_POSTGRES_SCHEMA is set too: choose one"
                )
            # Only the store's schema: a table of the same name elsewhere
            # (an application's own `messages`) is never seen.
            session_settings["search_path"] = schema
        server_settings = {
            **session_settings,
            "idle_in_transaction_session_timeout": str(
                settings.idle_in_transaction_timeout_ms
            ),
            # host:pid lets operators (and tests) tell processes apart.
            "application_name": f"eventstore {process_identity()}"[:63],
        }
        engine = create_async_engine(
            parsed.set(drivername="postgresql+asyncpg"),
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            pool_pre_ping=False,
            # JSON columns read numbers by value, like the log does.
            json_serializer=dump_json,
            json_deserializer=parse_json,
            connect_args={
                "server_settings": server_settings,
                "timeout": settings.connect_timeout,
            },
        )
        sa_event.listen(engine.sync_engine, "checkout", _replace_if_closed)
        super().__init__(url=redact_url(parsed), connect_url=url, engine=engine)
        self._dsn = parsed.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._settings = settings
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None
        self._bulk_upserts: dict[tuple[str, str, tuple[str, ...]], BulkUpsert] = {}
        self._appender = PostgresAppender(lambda: self.pool)

    @override
    @property
    def name(self) -> str:
        return "postgresql"

    @override
    async def connect(self) -> None:
        async with self.translate_errors():
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._settings.pool_size,
                timeout=self._settings.connect_timeout,
                server_settings=self._server_settings,
                init=_check_epoch,
                reset=keep_session,
            )

    @override
    async def aclose(self) -> None:
        await self._appender.aclose()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()

    @override
    async def lock_name(self, connection: AsyncConnection, name: str) -> None:
        # A transaction advisory lock on the name's hash: concurrent writers
        # of the same name queue here and see each other's commit.
        await connection.execute(sa.text(NAME_LOCK_SQL), {"name": name})

    @override
    @contextlib.asynccontextmanager
    async def migration_connection(self) -> AsyncIterator[AsyncConnection]:
        # Each revision runs in its own transaction (migrations/env.py), and
        # a revision may step outside it to build an index concurrently, so
        # appends are not held back while it builds. Two migrations at once
        # on an empty database would both find no schema and collide
        # creating it: a session advisory lock (freed by the server if this
        # process dies) makes the others wait, then find nothing to do.
        async with self.translate_errors(), self.engine.connect() as connection:
            await _take_migration_lock(connection)
            try:
                if self._settings.postgres_schema is not None:
                    await connection.execute(
                        sa.text(
                            "CREATE SCHEMA IF NOT EXISTS "
                            f'"{self._settings.postgres_schema}"'
                        )
                    )
                    await connection.commit()
                yield connection
                await connection.commit()
            finally:
                # A broken connection has lost its session, and the lock.
                with contextlib.suppress(sa_exc.DBAPIError):
                    await connection.execute(sa.text(MIGRATION_UNLOCK_SQL))
                    await connection.commit()

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool of the hot path."""
        if self._pool is None:
            raise errors.ConfigurationError("the store is closed")
        return self._pool

    @override
    def classify(self, exc: BaseException) -> errors.EventStoreError | None:
        from eventstore.backends import postgres_errors

        if not isinstance(exc, postgres_errors.DRIVER_ERRORS):
            return None  # a bug or a bad event: not the database's doing
        code = postgres_errors.sqlstate(exc)
        if code == IMMUTABLE_LOG_SQLSTATE:
            return errors.AppendOnlyViolation(
                stream_id=None, position=None, reason="execution_events is append-only"
            )
        if code in UNMIGRATED_SQLSTATES:
            return errors.SchemaNotMigrated(url=self.url, current=None, head="head")
        return postgres_errors.classify(exc, url=self.url)


def _replace_if_closed(
    dbapi_connection: DBAPIConnection,
    record: ConnectionPoolEntry,
    proxy: PoolProxiedConnection,
) -> None:
    """Refuse a pooled connection the server has dropped, with no round trip.

    asyncpg marks a connection closed as soon as the server drops it (a
    restart, `pg_terminate_backend`), and asyncpg's own pool reconnects such
    a connection on acquire. SQLAlchemy's pool would hand it out, and the
    first read after a restart would fail. Raising here makes the pool
    replace this connection and try the checkout again; the others are
    kept, and each is replaced in turn if it died too (after a restart).
    """
    del record, proxy
    if dbapi_connection.driver_connection.is_closed():
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


async def _check_epoch(connection: asyncpg.Connection) -> None:
    """Start a new restore epoch if this server's transaction ids went back.

    Every new connection of the pool runs it before its first use, so no
    append or read of a restored database happens in the old epoch
    (migration 0006). A database not migrated that far has no epochs yet.
    """
    if await connection.fetchval(HAS_EPOCHS_SQL):
        await connection.fetchval(CHECK_EPOCH_SQL)


async def _take_migration_lock(connection: AsyncConnection) -> None:
    """Wait for the migration lock, asking again between short transactions.

    Not `pg_advisory_lock`: a session blocked in it holds a snapshot, and a
    running migration's CREATE INDEX CONCURRENTLY waits for every older
    snapshot to end, so the two would deadlock (each waiting on the other).
    """
    while True:
        acquired = (await connection.execute(sa.text(MIGRATION_TRY_LOCK_SQL))).scalar()
        await connection.commit()  # a session lock outlives the transaction
        if acquired:
            return
        await asyncio.sleep(MIGRATION_LOCK_POLL * (0.5 + random.random()))  # noqa: S311 - jitter


async def keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing past asyncpg's rollback of a transaction.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` on every release, a second round trip for every
    append. The store's pooled connections keep no session state to clear:
    LISTEN and the projector's session locks have connections of their own,
    settings are made with SET LOCAL, and the rebuild's session lock closes
    its connection when it cannot unlock.
    """
    del connection
