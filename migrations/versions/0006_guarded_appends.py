"""The database guards every append: lifecycle, stamps, system streams, tombstones, epochs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Until now the log trusted its writers: the Python lifecycle decided the
transitions and the client chose every column. A row trigger on INSERT now
holds the rules for every writer, the store's own fast path, its append
function and a plain INSERT alike (docs/AUDIT.md, "Guarded appends"):

- **Stamps.** The database decides `recorded_at`, `transaction_id`, `epoch`
  and checks that `position` was drawn from the log's sequence, whatever the
  client sent, so no writer can backdate history or place an event in the
  past of the global order. `recorded_at` is the statement's time, or the
  stream's previous `recorded_at` when that is later: one time per append,
  never running backwards within a stream (SQLite: the writer's single
  INSERT takes `'now'`, which SQLite keeps fixed within a statement, and
  the trigger refuses any other time).
- **Lifecycle.** Execution streams hold the lifecycle events of ARCHITECTURE §3 in
  the order of its transition table, without gaps; `ExecutionCreated` must
  name a message (of its thread) and a graph that exist, so a projector can
  never meet an event it cannot apply.
- **System streams** (archive receipts, chain anchors) take rows only
  inside a transaction that holds the archive guard row, which only the
  archivist may write (docs/ROLES.md).
- **Tombstones.** `archived_streams` keeps the id and head of every stream
  the archive removed; no stream may start again under such an id, and
  `verify` checks every receipt against them.
- **Restore epochs** (PostgreSQL). A logical restore (pg_dump, pg_restore)
  into another cluster sets the transaction counter back, far below the
  stored `transaction_id` values, so new events would sort before the
  projections' checkpoints and never be read. The log is ordered by
  `(epoch, transaction_id, position)`; `eventstore_check_epoch()`, which
  every store connection runs when it opens, starts a new epoch when the
  server's next transaction id is not above the current epoch's last one.

The new index is built concurrently, outside the migration's transaction,
so appends keep flowing while it builds.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import UserDefinedType

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


class _Xid8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


_uuid = sa.Uuid(as_uuid=True)
_time = sa.DateTime(timezone=True)
_NEW_INDEX = "ix_execution_events_epoch_transaction_id_position"
_OLD_INDEX = "ix_execution_events_transaction_id_position"


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.add_column(
        "execution_events",
        sa.Column("epoch", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_table(
        "execution_events_epochs",
        sa.Column("epoch", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("started_at", _time, server_default=sa.func.now(), nullable=False),
        sa.Column("previous_transaction_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("epoch", name="pk_execution_events_epochs"),
    )
    op.execute("INSERT INTO execution_events_epochs (epoch) VALUES (0)")
    op.create_table(
        "archived_streams",
        sa.Column("stream_id", _uuid, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("archive_file", sa.Text(), nullable=False),
        sa.Column("archived_at", _time, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name="pk_archived_streams"),
    )
    # Tombstones of the archives made before this revision, from their
    # receipts (the one record of them; taken as they are).
    _backfill_tombstones()
    if _is_postgres():
        # A checkpoint's transaction id is the log's order key from now on:
        # epoch * 2^64 + xid (numeric, since it outgrows xid8 after a restore).
        op.alter_column(
            "projection_checkpoints",
            "transaction_id",
            type_=sa.Numeric(40, 0),
            postgresql_using="transaction_id::text::numeric",
        )
        # The current epoch, read by every append: a sequence's last value
        # costs a function call, a table would cost a query (and pg_dump
        # carries its value over like the table's).
        op.execute(
            "CREATE SEQUENCE execution_events_epoch_seq AS integer MINVALUE 0 START 0"
        )
        op.execute("SELECT setval('execution_events_epoch_seq', 0, true)")
        for statement in POSTGRES_UPGRADE:
            op.execute(statement)
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_NEW_INDEX}")
            op.execute(
                f"CREATE INDEX CONCURRENTLY {_NEW_INDEX} "
                "ON execution_events (epoch, transaction_id, position)"
            )
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_OLD_INDEX}")
    else:
        op.create_index(
            _NEW_INDEX, "execution_events", ["epoch", "transaction_id", "position"]
        )
        op.drop_index(_OLD_INDEX, table_name="execution_events")
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


_RECEIPTS_STREAM = uuid.UUID("b6d83fbc-7382-5e7c-9e72-9d46f9065c40")


def _backfill_tombstones() -> None:
    bind = op.get_bind()
    events = sa.table(
        "execution_events",
        sa.column("stream_id", _uuid),
        sa.column("type", sa.String()),
        sa.column("data", sa.JSON()),
        sa.column("recorded_at", _time),
    )
    stones = sa.table(
        "archived_streams",
        sa.column("stream_id", _uuid),
        sa.column("version", sa.Integer()),
        sa.column("hash", sa.LargeBinary()),
        sa.column("archive_file", sa.Text()),
        sa.column("archived_at", _time),
    )
    rows = bind.execute(
        sa.select(events.c.data, events.c.recorded_at).where(
            events.c.stream_id == _RECEIPTS_STREAM,
            events.c.type == "ArchiveReceipt",
        )
    )
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for data, recorded_at in rows:
        receipt = json.loads(data) if isinstance(data, str) else data
        for head in receipt.get("streams", []):
            stream_id = uuid.UUID(str(head["stream_id"]))
            found.setdefault(
                stream_id,
                {
                    "stream_id": stream_id,
                    "version": int(head["version"]),
                    "hash": bytes.fromhex(str(head["hash"])),
                    "archive_file": str(receipt.get("file", "")),
                    "archived_at": recorded_at,
                },
            )
    if found:
        bind.execute(sa.insert(stones), list(found.values()))


def downgrade() -> None:
    if _is_postgres():
        for statement in POSTGRES_DOWNGRADE:
            op.execute(statement)
        op.create_index(_OLD_INDEX, "execution_events", ["transaction_id", "position"])
        op.drop_index(_NEW_INDEX, table_name="execution_events")
        op.alter_column(
            "projection_checkpoints",
            "transaction_id",
            type_=_Xid8(),
            postgresql_using="(transaction_id % 18446744073709551616)::text::xid8",
        )
    else:
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
        op.create_index(_OLD_INDEX, "execution_events", ["transaction_id", "position"])
        op.drop_index(_NEW_INDEX, table_name="execution_events")
    op.drop_table("archived_streams")
    op.drop_table("execution_events_epochs")
    # Not a batch copy on SQLite (3.35+ drops a column in place): a copy of
    # the table would lose its triggers.
    op.execute("ALTER TABLE execution_events DROP COLUMN epoch")


# SQLSTATEs of class "ZE" are the store's own (0001 has ZE001, append-only);
# the store turns each into its typed error. DETAIL carries the facts.
POSTGRES_UPGRADE = [
    # Which epoch the log is in; a new one after a restore moved the
    # transaction counter back (ARCHITECTURE §1). SECURITY DEFINER: the
    # application role may start an epoch, not write the table.
    """
    CREATE FUNCTION eventstore_check_epoch() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    DECLARE
        v_epoch integer := pg_sequence_last_value('execution_events_epoch_seq');
        v_last xid8;
    BEGIN
        SELECT e.transaction_id INTO v_last FROM execution_events e
        WHERE e.epoch = v_epoch ORDER BY e.transaction_id DESC LIMIT 1;
        IF v_last IS NULL OR pg_snapshot_xmax(pg_current_snapshot()) > v_last THEN
            RETURN v_epoch;
        END IF;
        -- This server's next transaction id is not above the log's last one:
        -- the database was restored into another cluster. One connection
        -- starts the next epoch; the others wait here, then find it started.
        PERFORM pg_advisory_xact_lock(hashtextextended('eventstore_check_epoch', 0));
        IF pg_sequence_last_value('execution_events_epoch_seq') = v_epoch THEN
            v_epoch := nextval('execution_events_epoch_seq');
            INSERT INTO execution_events_epochs (epoch, previous_transaction_id)
            VALUES (v_epoch, v_last::text);
        END IF;
        RETURN pg_sequence_last_value('execution_events_epoch_seq');
    END
    $$
    """,
    # One query at most per row on the hot path (the previous event, or
    # the checks of a new stream together): each query a trigger runs
    # costs more than the simple expressions around it.
    """
    CREATE FUNCTION eventstore_guard_append() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        v_previous record;
        v_status text;
        v_creates boolean := NEW.stream_type = 'execution'
            AND NEW.type = 'ExecutionCreated';
        v_archived boolean;
        v_message boolean;
        v_graph boolean;
    BEGIN
        -- Columns the database decides, whatever the writer sent.
        IF NEW.position IS DISTINCT FROM currval('execution_events_position_seq') THEN
            RAISE EXCEPTION 'execution_events.position % was not drawn from its sequence',
                NEW.position USING ERRCODE = 'ZE007';
        END IF;
        NEW.transaction_id := pg_current_xact_id();
        NEW.epoch := pg_sequence_last_value('execution_events_epoch_seq');
        IF NEW.version > 1 THEN
            SELECT e.type, e.recorded_at INTO v_previous FROM execution_events e
            WHERE e.stream_id = NEW.stream_id AND e.version = NEW.version - 1;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'stream % has no version %: versions follow one another',
                    NEW.stream_id, NEW.version - 1
                    USING ERRCODE = 'ZE006', DETAIL = NEW.stream_id::text;
            END IF;
            NEW.recorded_at := greatest(statement_timestamp(), v_previous.recorded_at);
        ELSE
            NEW.recorded_at := statement_timestamp();
            SELECT EXISTS (SELECT FROM archived_streams a WHERE a.stream_id = NEW.stream_id),
                CASE WHEN v_creates THEN EXISTS (
                    SELECT FROM messages m
                    WHERE m.id = (NEW.data->>'message_id')::uuid
                      AND m.thread_id = (NEW.data->>'thread_id')::uuid) END,
                CASE WHEN v_creates THEN EXISTS (
                    SELECT FROM graphs g WHERE g.id = (NEW.data->>'graph_id')::uuid) END
            INTO v_archived, v_message, v_graph;
            IF v_archived THEN
                RAISE EXCEPTION 'stream % was archived: its id cannot be used again',
                    NEW.stream_id USING ERRCODE = 'ZE004', DETAIL = NEW.stream_id::text;
            END IF;
        END IF;

        IF NEW.stream_type = 'system' THEN
            IF NOT EXISTS (SELECT FROM execution_events_archive_guard) THEN
                RAISE EXCEPTION 'system streams are written only by the store''s archive and anchor paths'
                    USING ERRCODE = 'ZE003', DETAIL = NEW.stream_id::text;
            END IF;
            RETURN NEW;
        END IF;
        IF NEW.stream_type <> 'execution' THEN
            RETURN NEW;
        END IF;

        IF NEW.version = 1 THEN
            IF NEW.type <> 'ExecutionCreated' THEN
                RAISE EXCEPTION 'execution % not found: its stream must start with ExecutionCreated',
                    NEW.stream_id USING ERRCODE = 'ZE008', DETAIL = NEW.stream_id::text;
            END IF;
            IF NOT v_message THEN
                RAISE EXCEPTION 'message % of thread % not found',
                    NEW.data->>'message_id', NEW.data->>'thread_id'
                    USING ERRCODE = 'ZE005',
                    DETAIL = json_build_object('entity', 'message', 'id', NEW.data->>'message_id')::text;
            END IF;
            IF NOT v_graph THEN
                RAISE EXCEPTION 'graph % not found', NEW.data->>'graph_id'
                    USING ERRCODE = 'ZE005',
                    DETAIL = json_build_object('entity', 'graph', 'id', NEW.data->>'graph_id')::text;
            END IF;
            RETURN NEW;
        END IF;

        -- The status before this event: the previous event tells it, but
        -- after a cancellation request the last status-changing one does.
        v_status := CASE v_previous.type
            WHEN 'ExecutionCreated' THEN 'pending'
            WHEN 'ExecutionStarted' THEN 'running'
            WHEN 'ExecutionProgressed' THEN 'running'
            WHEN 'ExecutionCompleted' THEN 'completed'
            WHEN 'ExecutionFailed' THEN 'failed'
            WHEN 'ExecutionCancelled' THEN 'cancelled'
        END;
        IF v_status IS NULL THEN
            SELECT CASE e.type
                WHEN 'ExecutionCreated' THEN 'pending'
                WHEN 'ExecutionStarted' THEN 'running'
                WHEN 'ExecutionCompleted' THEN 'completed'
                WHEN 'ExecutionFailed' THEN 'failed'
                WHEN 'ExecutionCancelled' THEN 'cancelled'
            END INTO v_status
            FROM execution_events e
            WHERE e.stream_id = NEW.stream_id
              AND e.type IN ('ExecutionCreated', 'ExecutionStarted', 'ExecutionCompleted',
                             'ExecutionFailed', 'ExecutionCancelled')
            ORDER BY e.version DESC LIMIT 1;
        END IF;
        -- the transition table of ARCHITECTURE §3 (eventstore/status.py ALLOWED_FROM).
        IF NOT coalesce(CASE NEW.type
            WHEN 'ExecutionStarted' THEN v_status = 'pending'
            WHEN 'ExecutionProgressed' THEN v_status = 'running'
            WHEN 'ExecutionCompleted' THEN v_status = 'running'
            WHEN 'ExecutionFailed' THEN v_status IN ('pending', 'running')
            WHEN 'ExecutionCancellationRequested' THEN v_status IN ('pending', 'running')
            WHEN 'ExecutionCancelled' THEN v_status IN ('pending', 'running')
        END, false) THEN
            RAISE EXCEPTION 'execution % is %: % is not allowed',
                NEW.stream_id, v_status, NEW.type
                USING ERRCODE = 'ZE002',
                DETAIL = json_build_object('status', v_status, 'event_type', NEW.type)::text;
        END IF;
        RETURN NEW;
    END
    $$
    """,
    """
    CREATE TRIGGER execution_events_guard_append
        BEFORE INSERT ON execution_events
        FOR EACH ROW EXECUTE FUNCTION eventstore_guard_append()
    """,
]

POSTGRES_DOWNGRADE = [
    "DROP TRIGGER execution_events_guard_append ON execution_events",
    "DROP FUNCTION eventstore_guard_append()",
    "DROP FUNCTION eventstore_check_epoch()",
    "DROP SEQUENCE execution_events_epoch_seq",
]

# SQLite: no roles and no epochs (one writer at a time: position order is
# commit order). RAISE takes a constant message only, so each rule has its
# own; the store reads the facts back in the refused append's transaction.
_SQLITE_STATUS_OF_LAST = """(
        SELECT CASE e.type
            WHEN 'ExecutionCreated' THEN 'pending'
            WHEN 'ExecutionStarted' THEN 'running'
            WHEN 'ExecutionCompleted' THEN 'completed'
            WHEN 'ExecutionFailed' THEN 'failed'
            WHEN 'ExecutionCancelled' THEN 'cancelled'
        END
        FROM execution_events e
        WHERE e.stream_id = NEW.stream_id
          AND e.type IN ('ExecutionCreated', 'ExecutionStarted', 'ExecutionCompleted',
                         'ExecutionFailed', 'ExecutionCancelled')
        ORDER BY e.version DESC LIMIT 1)"""

SQLITE_UPGRADE = [
    # recorded_at: SQLite keeps 'now' fixed within one statement, so the
    # writer's INSERT and this check see the same time. (The column default,
    # CURRENT_TIMESTAMP, is whole seconds: it could sort before the stream's
    # previous event, so a raw INSERT must give the time as below.)
    """
    CREATE TRIGGER execution_events_guard_stamps
    BEFORE INSERT ON execution_events
    WHEN NEW.recorded_at IS NOT strftime('%Y-%m-%d %H:%M:%f', 'now')
      OR NEW.transaction_id IS NOT NULL
      OR NEW.epoch IS NOT 0
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: recorded_at must be strftime(''%Y-%m-%d %H:%M:%f'', ''now''); transaction_id and epoch are the database''s');
    END
    """,
    # A position chosen below one already used would sit behind readers'
    # checkpoints. (Before the insert SQLite has not drawn it yet: -1.)
    """
    CREATE TRIGGER execution_events_guard_position
    AFTER INSERT ON execution_events
    WHEN NEW.position < (SELECT max(position) FROM execution_events)
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: position is the database''s');
    END
    """,
    """
    CREATE TRIGGER execution_events_guard_gaps
    BEFORE INSERT ON execution_events
    WHEN NEW.version > 1 AND NOT EXISTS (
        SELECT 1 FROM execution_events e
        WHERE e.stream_id = NEW.stream_id AND e.version = NEW.version - 1)
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: versions follow one another');
    END
    """,
    """
    CREATE TRIGGER execution_events_guard_tombstones
    BEFORE INSERT ON execution_events
    WHEN NEW.version = 1 AND EXISTS (
        SELECT 1 FROM archived_streams a WHERE a.stream_id = NEW.stream_id)
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: archived stream');
    END
    """,
    """
    CREATE TRIGGER execution_events_guard_system
    BEFORE INSERT ON execution_events
    WHEN NEW.stream_type = 'system'
      AND NOT EXISTS (SELECT 1 FROM execution_events_archive_guard)
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: system stream');
    END
    """,
    """
    CREATE TRIGGER execution_events_guard_references
    BEFORE INSERT ON execution_events
    WHEN NEW.stream_type = 'execution' AND NEW.type = 'ExecutionCreated' AND (
        NOT EXISTS (
            SELECT 1 FROM messages m
            WHERE m.id = replace(json_extract(NEW.data, '$.message_id'), '-', '')
              AND m.thread_id = replace(json_extract(NEW.data, '$.thread_id'), '-', ''))
        OR NOT EXISTS (
            SELECT 1 FROM graphs g
            WHERE g.id = replace(json_extract(NEW.data, '$.graph_id'), '-', '')))
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: reference not found');
    END
    """,
    f"""
    CREATE TRIGGER execution_events_guard_lifecycle
    BEFORE INSERT ON execution_events
    WHEN NEW.stream_type = 'execution' AND NOT (
        CASE
            WHEN NEW.type = 'ExecutionCreated' THEN NEW.version = 1
            WHEN NEW.version = 1 THEN 0
            ELSE coalesce(CASE NEW.type
                WHEN 'ExecutionStarted' THEN {_SQLITE_STATUS_OF_LAST} = 'pending'
                WHEN 'ExecutionProgressed' THEN {_SQLITE_STATUS_OF_LAST} = 'running'
                WHEN 'ExecutionCompleted' THEN {_SQLITE_STATUS_OF_LAST} = 'running'
                WHEN 'ExecutionFailed' THEN {_SQLITE_STATUS_OF_LAST} IN ('pending', 'running')
                WHEN 'ExecutionCancellationRequested' THEN {_SQLITE_STATUS_OF_LAST} IN ('pending', 'running')
                WHEN 'ExecutionCancelled' THEN {_SQLITE_STATUS_OF_LAST} IN ('pending', 'running')
            END, 0)
        END)
    BEGIN
        SELECT RAISE(ABORT, 'eventstore: invalid transition');
    END
    """,
]

SQLITE_DOWNGRADE = [
    "DROP TRIGGER execution_events_guard_lifecycle",
    "DROP TRIGGER execution_events_guard_references",
    "DROP TRIGGER execution_events_guard_system",
    "DROP TRIGGER execution_events_guard_tombstones",
    "DROP TRIGGER execution_events_guard_gaps",
    "DROP TRIGGER execution_events_guard_position",
    "DROP TRIGGER execution_events_guard_stamps",
]
