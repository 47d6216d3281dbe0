"""SQLite keeps the executions' inputs, result and error as text.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Columns declared JSON have NUMERIC affinity in SQLite: an execution whose
inputs or result is a bare number had it stored as a number, and one beyond
64 bits or written with an exponent came back as a float of another value
(a result of 9223372036854776000 read back as 9.223372036854776e+18, unequal
to the fold of the log). Declared JSON_TEXT the columns have TEXT affinity
and keep the canonical text as written. The projection table is copied
(SQLite cannot change a column's type in place); values already stored as
numbers are kept as their text: `eventstore rebuild` refolds them exactly
from the log. PostgreSQL (jsonb) is unchanged.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import UserDefinedType

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = ("inputs", "result", "error")


class _JSONText(UserDefinedType[Any]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "JSON_TEXT"


def _retype(type_: sa.types.TypeEngine[Any]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("executions", recreate="always") as batch:
        for name in _COLUMNS:
            batch.alter_column(name, type_=type_, existing_nullable=True)


def upgrade() -> None:
    _retype(_JSONText())


def downgrade() -> None:
    _retype(sa.JSON())
