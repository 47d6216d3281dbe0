"""Choose the backend for a database URL: the only place that reads its scheme."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventstore import errors
from eventstore.backends.base import AppendOutcome, Backend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.settings import StoreSettings

__all__ = [
    "AppendOutcome",
    "Backend",
    "backend_for",
    "begin_migration",
    "normalize_url",
]

_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
# A session advisory lock: the server frees it if the migrating process dies.
_MIGRATION_LOCK_SQL: Final = sa.text(
    "SELECT pg_advisory_lock(hashtextextended('eventstore-migrate', 0))"
)
_MIGRATION_UNLOCK_SQL: Final = sa.text(
    "SELECT pg_advisory_unlock(hashtextextended('eventstore-migrate', 0))"
)


def normalize_url(url: str) -> str:
    """The SQLAlchemy async URL for a user's URL (postgres://, sqlite:///...).

    Raises:
        ConfigurationError: the URL is malformed or names another database.
    """
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError as exc:
        raise errors.ConfigurationError(f"malformed database URL {url!r}") from exc
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(
            hide_password=False
        )
    if parsed.drivername in _SQLITE_SCHEMES:
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(
            hide_password=False
        )
    raise errors.ConfigurationError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use postgresql://... or sqlite:///FILE"
    )


def backend_for(url: str, settings: StoreSettings) -> Backend:
    """The backend for a database URL.

    Raises:
        ConfigurationError: the URL is malformed or names another database.
    """
    normalized = normalize_url(url)
    if normalized.startswith("postgresql"):
        from eventstore.backends.postgres import PostgresBackend

        return PostgresBackend(url=normalized, settings=settings)
    from eventstore.backends.sqlite import SqliteBackend

    return SqliteBackend(url=normalized, settings=settings)


@contextlib.asynccontextmanager
async def begin_migration(backend: Backend) -> AsyncIterator[AsyncConnection]:
    """The write transaction of a migration, which one runner at a time gets.

    Two migrations at once on an empty database would both find no schema
    and collide creating it. Here the others wait, then find it at head.
    PostgreSQL: a session advisory lock on the migration's own connection,
    taken before its transaction and released after it commits. SQLite: the
    write transaction (BEGIN IMMEDIATE) is already the database's write
    lock, which every other runner's waits for.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
    """
    if backend.name != "postgresql":
        async with backend.begin_write() as connection:
            yield connection
        return
    async with backend.translate_errors(), backend.engine.connect() as connection:
        await connection.execute(_MIGRATION_LOCK_SQL)
        await connection.commit()  # the lock outlives the statement's transaction
        try:
            async with connection.begin():
                yield connection
        finally:
            # A broken connection has lost its session, and with it the lock.
            with contextlib.suppress(sa_exc.DBAPIError):
                await connection.execute(_MIGRATION_UNLOCK_SQL)
                await connection.commit()
