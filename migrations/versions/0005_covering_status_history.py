"""The status-history index covers the store-wide "as of": an index-only scan.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Revision 0003's index held (stream_id, version, recorded_at): the "as of"
query also reads type, position and occurred_at, so PostgreSQL preferred a
sequential scan of the whole log (measured at 1,000,000 events,
bench/AUDIT_RESULTS.md). With every column it reads in the index, the query
is one index-only scan of the status-changing events, in index order.

On PostgreSQL the new index is built concurrently under a temporary name,
outside the revision's transaction, so appends go on while it builds (in
the revision's transaction it held them back about a second per million
events); then the old one is dropped and the new one takes its name. An
earlier build that failed left an invalid index under the temporary name:
it is dropped first, so running the revision again finishes the job.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_NAME = "ix_execution_events_status_history"
_STATUS_EVENTS = (
    "type IN ('ExecutionCreated', 'ExecutionStarted', 'ExecutionCompleted', "
    "'ExecutionFailed', 'ExecutionCancelled')"
)


_BUILDING = f"{_NAME}_building"


def _rebuild(columns: list[str]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(_NAME, table_name="execution_events")
        op.create_index(
            _NAME, "execution_events", columns, sqlite_where=sa.text(_STATUS_EVENTS)
        )
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_BUILDING}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {_BUILDING} ON execution_events "
            f"({', '.join(columns)}) WHERE {_STATUS_EVENTS}"
        )
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NAME}")
        op.execute(f"ALTER INDEX {_BUILDING} RENAME TO {_NAME}")


def upgrade() -> None:
    _rebuild(["stream_id", "version", "type", "position", "recorded_at", "occurred_at"])


def downgrade() -> None:
    _rebuild(["stream_id", "version", "recorded_at"])
