"""A one-column index on executions.status, for counts by status.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

`count_by_status()` over every run reads one entry per run. From
`(status, created_at, id)` (revision 0011) that is about 100 bytes per run;
from a one-column index, which B-tree deduplication packs to a few bytes
per run (7 MB at a million runs), it is an index-only scan of a few
megabytes: measured in bench/QUERIES_RESULTS.md. Index-only scans skip the
table only on pages the visibility map marks all-visible, which
autovacuum keeps true for the runs that no longer change, that is nearly
all of them.

On PostgreSQL the index is built concurrently, outside the revision's
transaction; one a failed build left invalid is dropped and built again.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

from typing import Final

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_NAME: Final = "ix_executions_status"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute(f"CREATE INDEX IF NOT EXISTS {_NAME} ON executions (status)")
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NAME}")
        op.execute(f"CREATE INDEX CONCURRENTLY {_NAME} ON executions (status)")


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {_NAME}")
