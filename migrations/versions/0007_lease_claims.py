"""A lease records when a reaper claimed it: heartbeats are refused from then on.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

The reaper decides that a run is stale on a lease it read, then appends the
failure. A heartbeat landing between the two was lost: the worker was told
it still held the run, and the run was failed anyway. Now the reaper first
claims the lease with one conditional write (still stale, or claimed
before), and a heartbeat renews only an unclaimed lease, so exactly one of
them wins the row.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: PostgreSQL adds it without rewriting the table.
    with op.batch_alter_table("execution_leases") as batch:
        batch.add_column(sa.Column("reaped_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("execution_leases") as batch:
        batch.drop_column("reaped_at")
