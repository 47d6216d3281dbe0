"""SQLite: the embedded default, one file, one writer at a time (ARCHITECTURE §1).

Writers take the database lock up front (`BEGIN IMMEDIATE`, with WAL and a
busy timeout for other processes; an asyncio lock for coroutines of this
process, so they queue instead of polling the busy handler). With one writer
at a time, position order is commit order, and `AUTOINCREMENT` keeps
positions from ever being reused. The append runs on the raw aiosqlite
connection; the rows are stored exactly as SQLAlchemy's types store them
(UUIDs as 32 hex digits, UTC datetimes as text), so Core reads them too.

Its parts, one capability each: `sqlite_database` (engine, writer, write
transactions, errors), `sqlite_log`, `sqlite_projection`, `sqlite_audit` and
`sqlite_dialect`; `sqlite_writer` is the append path, `sqlite_rows` the
stored form of a row.
"""

from __future__ import annotations

from eventstore.backends.base import Backend
from eventstore.backends.sqlite_audit import SqliteAuditQueries
from eventstore.backends.sqlite_dialect import SqliteDialect
from eventstore.backends.sqlite_log import SqliteLogStorage
from eventstore.backends.sqlite_projection import SqliteProjectionSupport


class SqliteBackend(
    SqliteLogStorage,
    SqliteProjectionSupport,
    SqliteAuditQueries,
    SqliteDialect,
    Backend,
):
    """An SQLite file through aiosqlite."""
