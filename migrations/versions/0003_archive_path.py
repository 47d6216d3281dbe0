"""The archive path through the immutability triggers, and the status-history index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

The log refuses DELETE except inside an archive transaction, which writes a
row into `execution_events_archive_guard` and removes it again before it
commits (ARCHITECTURE §6). The row is visible to that transaction alone, so the
opening is transaction-local on both backends; on PostgreSQL the guard and
DELETE are granted to the archivist role only (docs/ROLES.md).

The partial index holds the status-changing events (created, started and the
three terminal ones) per stream, so "which executions were in which status
at time T" is one index scan, not a replay of every stream.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATUS_EVENTS = (
    "type IN ('ExecutionCreated', 'ExecutionStarted', 'ExecutionCompleted', "
    "'ExecutionFailed', 'ExecutionCancelled')"
)


def upgrade() -> None:
    _create_status_history_index()
    op.create_table(
        "execution_events_archive_guard",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_execution_events_archive_guard"),
        sa.CheckConstraint("id = 1", name="ck_execution_events_archive_guard_one_row"),
    )
    statements = (
        POSTGRES_UPGRADE
        if op.get_bind().dialect.name == "postgresql"
        else SQLITE_UPGRADE
    )
    for statement in statements:
        op.execute(statement)


def _create_status_history_index() -> None:
    # On PostgreSQL built concurrently, outside the revision's transaction,
    # so appends go on while it builds; first, before anything of the
    # transaction, and after dropping what a failed earlier build left
    # (an invalid index), so running the revision again finishes the job.
    name = "ix_execution_events_status_history"
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(
            name,
            "execution_events",
            ["stream_id", "version", "recorded_at"],
            sqlite_where=sa.text(_STATUS_EVENTS),
        )
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {name} ON execution_events "
            f"(stream_id, version, recorded_at) WHERE {_STATUS_EVENTS}"
        )


def downgrade() -> None:
    statements = (
        POSTGRES_DOWNGRADE
        if op.get_bind().dialect.name == "postgresql"
        else SQLITE_DOWNGRADE
    )
    for statement in statements:
        op.execute(statement)
    op.drop_index("ix_execution_events_status_history", table_name="execution_events")
    op.drop_table("execution_events_archive_guard")


POSTGRES_UPGRADE = [
    """
    CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        -- The archive transaction's own guard row opens DELETE (never
        -- UPDATE or TRUNCATE); no other transaction can see that row.
        IF TG_OP = 'DELETE'
           AND EXISTS (SELECT 1 FROM execution_events_archive_guard) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'execution_events is append-only: % refused', TG_OP
            USING ERRCODE = 'ZE001';
    END
    $$
    """,
]

POSTGRES_DOWNGRADE = [
    """
    CREATE OR REPLACE FUNCTION eventstore_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'execution_events is append-only: % refused', TG_OP
            USING ERRCODE = 'ZE001';
    END
    $$
    """,
]

SQLITE_UPGRADE = [
    "DROP TRIGGER execution_events_refuse_delete",
    """
    CREATE TRIGGER execution_events_refuse_delete
    BEFORE DELETE ON execution_events
    WHEN NOT EXISTS (SELECT 1 FROM execution_events_archive_guard)
    BEGIN
        SELECT RAISE(ABORT, 'execution_events is append-only: DELETE refused');
    END
    """,
]

SQLITE_DOWNGRADE = [
    "DROP TRIGGER execution_events_refuse_delete",
    """
    CREATE TRIGGER execution_events_refuse_delete
    BEFORE DELETE ON execution_events
    BEGIN
        SELECT RAISE(ABORT, 'execution_events is append-only: DELETE refused');
    END
    """,
]
