"""Labels on executions, and when their first step finished.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Labels and statistics: `ExecutionLabelled` (allowed in every status; it changes
none) joins the lifecycle, so the append guard lets it through whatever the
status; `executions` gains `labels` (the current labels, `{}` for the runs
projected so far, whose events carry none) and `first_step_at` (when the
first `ExecutionProgressed` occurred), which is filled in here from the log
so that the projection still equals a fresh fold.

The guard is the one of 0008 (PostgreSQL) and 0006 (SQLite) with one case
added: both are made from those revisions' frozen text.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

if TYPE_CHECKING:
    from types import ModuleType

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The transition table's cases in each guard: the new one goes after this.
_POSTGRES_LAST_CASE = (
    "            WHEN 'ExecutionCancelled' THEN v_status IN ('pending', 'running')\n"
)
_POSTGRES_LABELLED = "            WHEN 'ExecutionLabelled' THEN true\n"
_SQLITE_LAST_CASE = (
    "{_SQLITE_STATUS_OF_LAST} IN ('pending', 'running')\n            END, 0)"
)
_SQLITE_LIFECYCLE = "CREATE TRIGGER execution_events_guard_lifecycle"

# The first step of each projected execution, by version order as the fold
# takes it (occurred_at is the producer's clock and need not increase).
_FIRST_STEPS = """
UPDATE executions SET first_step_at = (
    SELECT e.occurred_at FROM execution_events e
    WHERE e.stream_id = executions.id AND e.type = 'ExecutionProgressed'
    ORDER BY e.version LIMIT 1)
WHERE steps_completed > 0
"""


def _revision(name: str) -> ModuleType:
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"_eventstore_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _postgres_guard_of_0008() -> str:
    module = _revision("0008_fixed_stream_types.py")
    function: str = module._with_the_check(module._guard_function_of_0006())
    return function


def _postgres_guard() -> str:
    function = _postgres_guard_of_0008()
    if function.count(_POSTGRES_LAST_CASE) != 1:
        raise RuntimeError("0008's guard function is not the one 0010 extends")
    return function.replace(
        _POSTGRES_LAST_CASE, _POSTGRES_LAST_CASE + _POSTGRES_LABELLED
    )


def _sqlite_lifecycle_of_0006() -> str:
    module = _revision("0006_guarded_appends.py")
    (statement,) = [s for s in module.SQLITE_UPGRADE if _SQLITE_LIFECYCLE in s]
    text: str = statement
    return text


def _sqlite_lifecycle() -> str:
    statement = _sqlite_lifecycle_of_0006()
    status_of_last = _revision("0006_guarded_appends.py")._SQLITE_STATUS_OF_LAST
    last_case = _SQLITE_LAST_CASE.format(_SQLITE_STATUS_OF_LAST=status_of_last)
    if statement.count(last_case) != 1:
        raise RuntimeError("0006's lifecycle trigger is not the one 0010 extends")
    return statement.replace(
        last_case,
        last_case.replace(
            "\n            END, 0)",
            "\n                WHEN 'ExecutionLabelled' THEN 1\n            END, 0)",
        ),
    )


# SQLite fires the newest trigger first, and the store names a refusal by
# the first trigger that raised: 0008's stream-type check is created again
# after the lifecycle's, so it still comes first.
_SQLITE_STREAM_TYPE: Final = _revision("0008_fixed_stream_types.py").SQLITE_UPGRADE
SQLITE_UPGRADE = [
    "DROP TRIGGER execution_events_guard_stream_type",
    "DROP TRIGGER execution_events_guard_lifecycle",
    _sqlite_lifecycle(),
    *_SQLITE_STREAM_TYPE,
]
SQLITE_DOWNGRADE = [
    "DROP TRIGGER execution_events_guard_stream_type",
    "DROP TRIGGER execution_events_guard_lifecycle",
    _sqlite_lifecycle_of_0006(),
    *_SQLITE_STREAM_TYPE,
]


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    labels_default = sa.text("'{}'::jsonb") if _is_postgres() else sa.text("'{}'")
    labels_type = postgresql.JSONB() if _is_postgres() else sa.JSON()
    op.add_column(
        "executions",
        sa.Column("labels", labels_type, server_default=labels_default, nullable=False),
    )
    op.add_column(
        "executions",
        sa.Column("first_step_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute(_FIRST_STEPS)
    if _is_postgres():
        # An unfinished rebuild's shadow has the old columns: it starts over.
        op.execute("DROP TABLE IF EXISTS executions_rebuild")
        op.execute(
            "DELETE FROM projection_checkpoints WHERE name = 'executions:rebuild'"
        )
        op.execute(_postgres_guard())
    else:
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if _is_postgres():
        op.execute(_postgres_guard_of_0008())
    else:
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
    op.drop_column("executions", "first_step_at")
    op.drop_column("executions", "labels")
