"""The status-history index covers the store-wide "as of": an index-only scan.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

Revision 0003's index held (stream_id, version, recorded_at): the "as of"
query also reads type, position and occurred_at, so PostgreSQL preferred a
sequential scan of the whole log (measured at 1,000,000 events,
bench/AUDIT_RESULTS.md). With every column it reads in the index, the query
is one index-only scan of the status-changing events, in index order.

The index is rebuilt in the migration's transaction, which holds back
appends while it builds (about a second per million events).

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


def _create(columns: list[str]) -> None:
    op.create_index(
        _NAME,
        "execution_events",
        columns,
        postgresql_where=sa.text(_STATUS_EVENTS),
        sqlite_where=sa.text(_STATUS_EVENTS),
    )


def upgrade() -> None:
    op.drop_index(_NAME, table_name="execution_events")
    _create(["stream_id", "version", "type", "position", "recorded_at", "occurred_at"])


def downgrade() -> None:
    op.drop_index(_NAME, table_name="execution_events")
    _create(["stream_id", "version", "recorded_at"])
