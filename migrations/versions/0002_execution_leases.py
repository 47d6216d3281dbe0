"""Liveness leases of running executions (heartbeats are rows, not events).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "execution_leases",
        sa.Column("execution_id", sa.Uuid(as_uuid=True), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name="pk_execution_leases"),
    )
    op.create_index(
        "ix_execution_leases_heartbeat_at", "execution_leases", ["heartbeat_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_execution_leases_heartbeat_at", table_name="execution_leases")
    op.drop_table("execution_leases")
