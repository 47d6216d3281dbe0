"""eventstore_check_epoch() searches the schema it lives in.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

0006 created it with ``SET search_path = pg_catalog, public``: a store in
a schema of its own (EVENTSTORE_POSTGRES_SCHEMA, or the URL's search_path)
could not find its sequence there, so every connection its pool opened
after the migration failed. The migration runs in the store's schema, so
``current_schema()`` names it (``public`` for the others: no change).

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        DO $$ BEGIN
            EXECUTE format(
                'ALTER FUNCTION %I.eventstore_check_epoch() '
                'SET search_path = pg_catalog, %I',
                current_schema(), current_schema());
        END $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER FUNCTION eventstore_check_epoch() SET search_path = pg_catalog, public"
    )
