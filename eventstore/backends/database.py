"""One database: its engine, the schema check, and the translation of its errors.

The root of the backend's interfaces (docs/ARCHITECTURE.md §10): each
capability (`LogStorage`, `ProjectionSupport`, `AuditQueries`, `Dialect`)
builds on it, and `Backend` is all of them for one database.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from eventstore import errors
from eventstore.revisions import SCHEMA_HEAD, recorded_revision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Database(ABC):
    """One database: its engine, its connections, its error classification."""

    def __init__(self, *, url: str, connect_url: str, engine: AsyncEngine) -> None:
        self.url = url  # redacted: for messages
        self.engine = engine
        self._connect_url = connect_url
        self._schema_ready = False

    @property
    def connect_url(self) -> str:
        """The URL as given, secrets included: for another process to connect.

        Never print or log it; `url` is the redacted one for messages.
        """
        return self._connect_url

    async def ensure_schema(self) -> None:
        """Prove once that the database is migrated to the revision this code needs.

        Raises:
            SchemaNotMigrated: no schema, or another revision: run `eventstore migrate`.
        """
        if self._schema_ready:
            return
        async with self.connect_read() as connection:
            revision = await recorded_revision(connection)
        if revision != SCHEMA_HEAD:
            raise errors.SchemaNotMigrated(
                url=self.url, current=revision, head=SCHEMA_HEAD
            )
        self._schema_ready = True

    def forget_schema(self) -> None:
        """Check the schema again before the next operation (after a migration)."""
        self._schema_ready = False

    @property
    @abstractmethod
    def name(self) -> str:
        """``postgresql`` or ``sqlite``."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the pools and prove the database answers.

        Raises:
            DatabaseUnavailable: it does not.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""

    @abstractmethod
    def classify(self, exc: BaseException) -> errors.EventStoreError | None:
        """The store's error for a driver, SQLAlchemy or operating system error.

        Sorted by SQLSTATE, SQLite error code or exception class, never by
        message text: transient (`DatabaseUnavailable`, `DatabaseConflict`)
        or permanent (any other `DatabaseError`, `IntegrityError`,
        `SchemaNotMigrated`). None when `exc` is none of those, so a bug or
        a bad event is never dressed up as a database error.
        """

    @contextlib.asynccontextmanager
    async def translate_errors(self) -> AsyncIterator[None]:
        """Re-raise driver errors as the store's own (the one place that does).

        Any other exception (a bug, a projection that cannot apply an
        event) passes through unchanged.
        """
        try:
            yield
        except errors.EventStoreError:
            raise
        except Exception as exc:
            translated = self.classify(exc)
            if translated is None:
                raise
            raise translated from exc

    @contextlib.asynccontextmanager
    async def begin_write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction on the engine for portable Core statements."""
        async with self.translate_errors(), self.engine.begin() as connection:
            yield connection

    async def lock_name(self, connection: AsyncConnection, name: str) -> None:
        """Hold `name` until the caller's write transaction ends, so check-then-insert is atomic.

        A no-op here: the write transactions of this database run one at a
        time (SQLite's write lock, taken at BEGIN).
        """
        del connection, name

    @contextlib.asynccontextmanager
    async def migration_connection(self) -> AsyncIterator[AsyncConnection]:
        """The connection alembic runs the revisions on.

        Here one write transaction for the whole upgrade; PostgreSQL gives
        alembic a connection outside any transaction instead, so revisions
        can build indexes concurrently (outside a transaction block).
        """
        async with self.begin_write() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def connect_read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection on the engine for portable Core statements."""
        async with self.translate_errors(), self.engine.connect() as connection:
            yield connection
