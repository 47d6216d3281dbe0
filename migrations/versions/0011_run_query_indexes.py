"""Indexes for the run queries (README, "Reading the projection") on the executions projection.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

- `ix_executions_labels` (PostgreSQL only): GIN with `jsonb_path_ops` over
  `labels`, which answers containment (`labels @> '{"customer": "42"}'`),
  the one operator label filters use. SQLite has no such index; its label
  filters read `json_extract` row by row (correct, not fast).
- `(status, created_at, id)` and `(graph_id, created_at, id)`: a status or a
  graph filter walks its runs in page order and stops after a page, and a
  count by status is an index-only scan. They replace the one-column
  indexes on `status` and `graph_id`, which they cover.

On PostgreSQL each index is built concurrently, outside the revision's
transaction, so the projector and the readers go on while it builds; one a
failed build left invalid is dropped and built again.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

from typing import Final

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# name -> (columns, the one-column index it replaces)
_BTREES: Final = {
    "ix_executions_status_created_at_id": (
        "status, created_at, id",
        "ix_executions_status",
    ),
    "ix_executions_graph_id_created_at_id": (
        "graph_id, created_at, id",
        "ix_executions_graph_id",
    ),
}
_LABELS: Final = "ix_executions_labels"


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _is_postgres():
        for name, (columns, replaced) in _BTREES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON executions ({columns})")
            op.execute(f"DROP INDEX IF EXISTS {replaced}")
        return
    with op.get_context().autocommit_block():
        for name, (columns, replaced) in _BTREES.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON executions ({columns})")
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {replaced}")
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_LABELS}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {_LABELS} ON executions "
            "USING gin (labels jsonb_path_ops)"
        )


def downgrade() -> None:
    for name, (columns, replaced) in _BTREES.items():
        first = columns.split(",")[0]
        op.execute(f"CREATE INDEX IF NOT EXISTS {replaced} ON executions ({first})")
        op.execute(f"DROP INDEX IF EXISTS {name}")
    if _is_postgres():
        op.execute(f"DROP INDEX IF EXISTS {_LABELS}")
