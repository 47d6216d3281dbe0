"""PostgreSQL: the production backend, with a raw asyncpg hot path (ARCHITECTURE §1-2).

Appends call one server-side function (`eventstore_append`, created by the
migrations) over a dedicated asyncpg pool: one round trip checks idempotency
and the expected version, chains the hashes and inserts the events, in the
implicit transaction of a single statement. SQLAlchemy on the same server
serves the portable Core queries.

Global order: every event carries the `pg_current_xact_id()` of its writer.
Readers take only events of transactions below the snapshot's xmin, which
have all committed or rolled back, in (transaction_id, position) order, and
resume after that pair: an event whose position was drawn before another's
but committed after it is still read, never skipped (ARCHITECTURE §1).

Its parts, one capability each: `postgres_database` (engine, pool,
migrations, errors), `postgres_append` (the append engine), `postgres_log`
(reads), `postgres_projection`, `postgres_audit` and `postgres_dialect`.
"""

from __future__ import annotations

from eventstore.backends.base import Backend
from eventstore.backends.postgres_audit import PostgresAuditQueries
from eventstore.backends.postgres_dialect import PostgresDialect
from eventstore.backends.postgres_log import PostgresLogStorage
from eventstore.backends.postgres_projection import PostgresProjectionSupport


class PostgresBackend(
    PostgresLogStorage,
    PostgresProjectionSupport,
    PostgresAuditQueries,
    PostgresDialect,
    Backend,
):
    """PostgreSQL through asyncpg (hot path) and SQLAlchemy Core (the rest)."""
