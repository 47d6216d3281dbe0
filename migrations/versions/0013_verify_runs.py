"""What each `eventstore verify` found: the console's "last verify".

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

A row per finished verification, not an event: a verification is about the
log, not part of its history, and an event would change what the next one
reads.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verify_runs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("streams", sa.BigInteger, nullable=False),
        sa.Column("projection_checked", sa.Boolean, nullable=False),
        sa.Column("problems", sa.Integer, nullable=False),
        sa.Column("first_problem", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_verify_runs"),
    )


def downgrade() -> None:
    op.drop_table("verify_runs")
