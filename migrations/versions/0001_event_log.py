"""The event log, reference entities, the executions projection and checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Frozen: literal DDL only, no imports from the live package. The dialect
dispatch at the bottom is the one sanctioned place for dialect-specific DDL:
the immutability triggers and, on PostgreSQL, the append function.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import UserDefinedType

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


class _Xid8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "XID8"


_uuid = sa.Uuid(as_uuid=True)
_time = sa.DateTime(timezone=True)
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_xid = sa.BigInteger().with_variant(_Xid8(), "postgresql")
_now = sa.func.current_timestamp()


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", _uuid, nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("created_at", _time, server_default=_now, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_threads"),
    )
    op.create_table(
        "messages",
        sa.Column("id", _uuid, nullable=False),
        sa.Column("thread_id", _uuid, nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", _time, server_default=_now, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name="fk_messages_thread_id_threads"
        ),
    )
    op.create_index("ix_messages_thread_id", "messages", ["thread_id"])
    op.create_table(
        "graphs",
        sa.Column("id", _uuid, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("definition", _json, nullable=False),
        sa.Column("created_at", _time, server_default=_now, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_graphs"),
    )
    op.create_table(
        "execution_events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("stream_id", _uuid, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stream_type", sa.String(32), nullable=False),
        sa.Column("event_id", _uuid, nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("data", _json, nullable=False),
        sa.Column("metadata", _json, nullable=False),
        sa.Column("occurred_at", _time, nullable=False),
        sa.Column("recorded_at", _time, server_default=_now, nullable=False),
        sa.Column("transaction_id", _xid, nullable=True),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_execution_events"),
        sa.UniqueConstraint(
            "stream_id", "version", name="uq_execution_events_stream_id_version"
        ),
        sa.UniqueConstraint("event_id", name="uq_execution_events_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_execution_events_transaction_id_position",
        "execution_events",
        ["transaction_id", "position"],
    )
    op.create_table(
        "executions",
        sa.Column("id", _uuid, nullable=False),
        sa.Column("message_id", _uuid, nullable=False),
        sa.Column("graph_id", _uuid, nullable=False),
        sa.Column("thread_id", _uuid, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("inputs", _json, nullable=True),
        sa.Column("result", _json, nullable=True),
        sa.Column("error", _json, nullable=True),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("started_at", _time, nullable=True),
        sa.Column("finished_at", _time, nullable=True),
        sa.Column("cancel_requested_at", _time, nullable=True),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of", _uuid, nullable=True),
        sa.Column("queue_ms", sa.BigInteger(), nullable=True),
        sa.Column("run_ms", sa.BigInteger(), nullable=True),
        sa.Column("total_ms", sa.BigInteger(), nullable=True),
        sa.Column("steps_completed", sa.Integer(), nullable=False),
        sa.Column("metrics", _json, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_executions"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name="fk_executions_message_id_messages"
        ),
        sa.ForeignKeyConstraint(
            ["graph_id"], ["graphs.id"], name="fk_executions_graph_id_graphs"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name="fk_executions_thread_id_threads"
        ),
    )
    for columns in (["message_id"], ["graph_id"], ["thread_id"], ["status"]):
        op.create_index(f"ix_executions_{columns[0]}", "executions", columns)
    op.create_index("ix_executions_created_at_id", "executions", ["created_at", "id"])
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("transaction_id", _xid, nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _time, server_default=_now, nullable=False),
        sa.PrimaryKeyConstraint("name", "partition", name="pk_projection_checkpoints"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_UPGRADE:
            op.execute(statement)
    else:
        for statement in SQLITE_UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWNGRADE:
            op.execute(statement)
    else:
        for statement in SQLITE_DOWNGRADE:
            op.execute(statement)
    op.drop_table("projection_checkpoints")
    op.drop_table("executions")
    op.drop_table("execution_events")
    op.drop_table("graphs")
    op.drop_table("messages")
    op.drop_table("threads")


# The SQLSTATE ZE001 is ours ("Z": implementation-defined class); the store
# translates it into IntegrityError.
POSTGRES_UPGRADE = [
    """
    ALTER TABLE execution_events
        ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id()
    """,
    """
    CREATE FUNCTION eventstore_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'execution_events is append-only: % refused', TG_OP
            USING ERRCODE = 'ZE001';
    END
    $$
    """,
    """
    CREATE TRIGGER execution_events_refuse_update_delete
        BEFORE UPDATE OR DELETE ON execution_events
        FOR EACH ROW EXECUTE FUNCTION eventstore_refuse_change()
    """,
    """
    CREATE TRIGGER execution_events_refuse_truncate
        BEFORE TRUNCATE ON execution_events
        FOR EACH STATEMENT EXECUTE FUNCTION eventstore_refuse_change()
    """,
    # One round trip per append (ARCHITECTURE §2). Idempotency is decided before the
    # expected version. The hash of each event is sha256(previous hash ||
    # canonical JSON), the canonical text assembled from the client's
    # canonical data, metadata and time: "version" sorts last among the keys,
    # so it is the one field the server adds. Two appenders that read the
    # same head both try the same version; the unique key refuses the later
    # one, which the client runs again against the new head. Writers with no
    # expected version take a per-stream advisory lock first, so they queue
    # rather than retry.
    """
    CREATE FUNCTION eventstore_append(
        p_stream_id uuid,
        p_stream_type text,
        p_expected_version integer,
        p_event_ids uuid[],
        p_types text[],
        p_schema_versions integer[],
        p_data text[],
        p_metadata text[],
        p_occurred_at text[]
    ) RETURNS TABLE (
        outcome text, version integer, "position" bigint, event_id uuid, detail text,
        hash bytea
    )
    LANGUAGE plpgsql
    -- A generic plan cached while the log was small (or never analyzed)
    -- would scan the table for ever after; plan each call with its values.
    SET plan_cache_mode = force_custom_plan
    AS $$
    DECLARE
        v_count integer := cardinality(p_event_ids);
        v_found integer;
        v_head integer;
        v_hash bytea;
        v_position bigint;
        v_bad record;
    BEGIN
        SELECT count(*) INTO v_found
        FROM execution_events e WHERE e.event_id = ANY (p_event_ids);
        IF v_found > 0 THEN
            SELECT n.id AS id, e.stream_id AS stream_id,
                   (e.type IS DISTINCT FROM n.type
                    OR e.schema_version IS DISTINCT FROM n.schema_version
                    OR e.data IS DISTINCT FROM n.data::jsonb) AS differs
            INTO v_bad
            FROM unnest(p_event_ids, p_types, p_schema_versions, p_data)
                 AS n(id, type, schema_version, data)
            LEFT JOIN execution_events e ON e.event_id = n.id
            WHERE e.event_id IS NULL OR e.stream_id <> p_stream_id
               OR e.type IS DISTINCT FROM n.type
               OR e.schema_version IS DISTINCT FROM n.schema_version
               OR e.data IS DISTINCT FROM n.data::jsonb
            LIMIT 1;
            IF FOUND THEN
                RETURN QUERY SELECT 'id_conflict'::text, NULL::integer, NULL::bigint,
                    v_bad.id::uuid,
                    CASE
                        WHEN v_bad.stream_id IS NULL
                            THEN 'only some of the appended events were recorded before'
                        WHEN v_bad.stream_id <> p_stream_id
                            THEN 'it belongs to stream ' || v_bad.stream_id::text
                        ELSE 'its content differs'
                    END, NULL::bytea;
            ELSE
                RETURN QUERY SELECT 'duplicate'::text, e.version, e.position, e.event_id,
                    NULL::text, e.hash
                FROM execution_events e WHERE e.event_id = ANY (p_event_ids)
                ORDER BY e.version;
            END IF;
            RETURN;
        END IF;

        IF p_expected_version IS NULL THEN
            -- Writers that accept any version queue per stream instead of
            -- racing for the same version and retrying (ARCHITECTURE §2).
            PERFORM pg_advisory_xact_lock(hashtextextended(p_stream_id::text, 0));
        END IF;
        SELECT e.version, e.hash INTO v_head, v_hash
        FROM execution_events e WHERE e.stream_id = p_stream_id
        ORDER BY e.version DESC LIMIT 1;
        IF NOT FOUND THEN
            v_head := 0;
            v_hash := '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        END IF;
        IF p_expected_version IS NOT NULL AND p_expected_version <> v_head THEN
            RETURN QUERY SELECT 'version_conflict'::text, v_head, NULL::bigint,
                NULL::uuid, NULL::text, NULL::bytea;
            RETURN;
        END IF;

        FOR i IN 1 .. v_count LOOP
            v_hash := sha256(v_hash || convert_to(
                '{"data":' || p_data[i]
                || ',"event_id":"' || p_event_ids[i]::text
                || '","metadata":' || p_metadata[i]
                || ',"occurred_at":"' || p_occurred_at[i]
                || '","schema_version":' || p_schema_versions[i]::text
                || ',"stream_id":"' || p_stream_id::text
                || '","type":"' || p_types[i]
                || '","version":' || (v_head + i)::text || '}', 'UTF8'));
            INSERT INTO execution_events AS e (stream_id, version, stream_type, event_id,
                type, schema_version, data, metadata, occurred_at, hash)
            VALUES (p_stream_id, v_head + i, p_stream_type, p_event_ids[i], p_types[i],
                p_schema_versions[i], p_data[i]::jsonb, p_metadata[i]::jsonb,
                p_occurred_at[i]::timestamptz, v_hash)
            RETURNING e.position INTO v_position;
            RETURN QUERY SELECT 'appended'::text, v_head + i, v_position, p_event_ids[i],
                NULL::text, v_hash;
        END LOOP;
    END
    $$
    """,
]

POSTGRES_DOWNGRADE = [
    "DROP FUNCTION eventstore_append(uuid, text, integer, uuid[], text[], integer[], text[], text[], text[])",
    "DROP TRIGGER execution_events_refuse_truncate ON execution_events",
    "DROP TRIGGER execution_events_refuse_update_delete ON execution_events",
    "DROP FUNCTION eventstore_refuse_change()",
]

SQLITE_UPGRADE = [
    """
    CREATE TRIGGER execution_events_refuse_update
    BEFORE UPDATE ON execution_events
    BEGIN
        SELECT RAISE(ABORT, 'execution_events is append-only: UPDATE refused');
    END
    """,
    """
    CREATE TRIGGER execution_events_refuse_delete
    BEFORE DELETE ON execution_events
    BEGIN
        SELECT RAISE(ABORT, 'execution_events is append-only: DELETE refused');
    END
    """,
]

SQLITE_DOWNGRADE = [
    "DROP TRIGGER execution_events_refuse_delete",
    "DROP TRIGGER execution_events_refuse_update",
]
