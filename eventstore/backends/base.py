"""The Backend: every capability one database offers, PostgreSQL or SQLite.

Layered like the recorders of the `eventsourcing` library: `Database`
(engine, schema check, error translation) under four capabilities, each in
its own module, which `postgres.py` and `sqlite.py` implement side by side:

- `LogStorage`: append and read the log (the hot paths);
- `ProjectionSupport`: leaders, the projection gate, backlog, shadow tables;
- `AuditQueries`: stream heads and statuses as of a moment;
- `Dialect`: the SQL fragments that differ (conflict inserts, the clock).

Code that needs one capability takes that interface. Portable SQL is written
once with SQLAlchemy Core against `engine`; nothing outside this package
looks at the dialect.
"""

from __future__ import annotations

from eventstore.backends.audit_queries import AuditQueries
from eventstore.backends.dialect import Dialect
from eventstore.backends.log_storage import LogStorage
from eventstore.backends.projection_support import ProjectionSupport


class Backend(LogStorage, ProjectionSupport, AuditQueries, Dialect):
    """One database with every capability the store needs of it."""
