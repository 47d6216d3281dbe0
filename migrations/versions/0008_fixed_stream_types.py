"""A stream keeps the type of its first event.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

The append guard (0006) checks the lifecycle of rows whose `stream_type` is
`execution`. A writer that appended to an execution stream with another
type (`store.append(run, [...], stream_type="note")`) passed every rule, and
the stream then held an event the fold cannot apply: `get()` and the
projector failed on that run. The guard now refuses a row whose type is not
its stream's (SQLSTATE ZE009 on PostgreSQL; on SQLite the trigger's
message `eventstore: stream type`). The check reads the previous event,
which the guard already looks up, so it adds no query.

PostgreSQL's guard function is 0006's with that one check added: both are
made from 0006's frozen text, so the two stay the same but for it.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LOOKUP = "SELECT e.type, e.recorded_at INTO v_previous"
_STAMP = (
    "            NEW.recorded_at := greatest(statement_timestamp(), "
    "v_previous.recorded_at);"
)
_CHECK = """            IF v_previous.stream_type <> NEW.stream_type THEN
                RAISE EXCEPTION 'stream % holds % events: it cannot take % events',
                    NEW.stream_id, v_previous.stream_type, NEW.stream_type
                    USING ERRCODE = 'ZE009',
                    DETAIL = json_build_object('stream_type', v_previous.stream_type,
                                               'given', NEW.stream_type)::text;
            END IF;
"""

SQLITE_UPGRADE = [
    """
    CREATE TRIGGER execution_events_guard_stream_type
    BEFORE INSERT ON execution_events
    WHEN NEW.version > 1 AND NEW.stream_type <> (
        SELECT e.stream_type FROM execution_events e
        WHERE e.stream_id = NEW.stream_id AND e.version = NEW.version - 1)
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: stream type');
    END
    """
]
SQLITE_DOWNGRADE = ["DROP TRIGGER execution_events_guard_stream_type"]


def _guard_function_of_0006() -> str:
    path = Path(__file__).with_name("0006_guarded_appends.py")
    spec = importlib.util.spec_from_file_location("_eventstore_0006", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (function,) = [
        statement
        for statement in module.POSTGRES_UPGRADE
        if "CREATE FUNCTION eventstore_guard_append()" in statement
    ]
    replaced: str = function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    return replaced


def _with_the_check(function: str) -> str:
    if function.count(_LOOKUP) != 1 or function.count(_STAMP) != 1:
        raise RuntimeError("0006's guard function is not the one 0008 extends")
    return function.replace(
        _LOOKUP, "SELECT e.type, e.recorded_at, e.stream_type INTO v_previous"
    ).replace(_STAMP, _CHECK + _STAMP)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_with_the_check(_guard_function_of_0006()))
    else:
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_guard_function_of_0006())
    else:
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
