"""eventstore_append waits for an archive's removal and stamps recorded_at after its locks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

Two faults of the append function, both from work it did before waiting:

- An archive removes streams under `LOCK TABLE execution_events IN SHARE
  ROW EXCLUSIVE MODE`. A plain INSERT waits for that lock before it takes
  its snapshot, but the function read the head in an earlier statement: an
  append that read a head the archive was removing could land after the
  archive committed, as an orphan event no chain leads to. The function now
  takes ROW EXCLUSIVE first, so it waits for the archive, then reads the
  head afresh.
- recorded_at defaulted to `now()`, the start of the writing transaction.
  An append with no expected version starts, then waits for its stream's
  lock: it recorded an earlier time than the version it follows, so a
  stream's recorded_at could run backwards and "as of a time" answers for
  one execution and for the whole store disagreed. The function now reads
  `clock_timestamp()` once, after the locks and the head, and writes it on
  every event of the append; the column default (the client's
  one-statement appends, receipts, anchors) is `statement_timestamp()`: one
  time for all rows of a statement, which a later version of the stream can
  only follow. The events of one append keep one recorded_at, so no moment
  splits an append. SQLite's writer already takes the time under the write
  lock.

Frozen: literal DDL only, no imports from the live package.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_LOCK = """\
        -- Wait for an archive removing streams (ARCHITECTURE §6) before reading a head.
        LOCK TABLE execution_events IN ROW EXCLUSIVE MODE;
"""
_STAMP_VARIABLE = "        v_recorded_at timestamptz;\n"
# After the locks and the head: later than the version this append follows.
_STAMP = "        v_recorded_at := clock_timestamp();\n"

_FUNCTION = """    CREATE OR REPLACE FUNCTION eventstore_append(
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
{stamp_variable}    BEGIN
{lock}        SELECT count(*) INTO v_found
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
{stamp}
        FOR i IN 1 .. v_count LOOP
            v_hash := sha256(v_hash || convert_to(
                '{{"data":' || p_data[i]
                || ',"event_id":"' || p_event_ids[i]::text
                || '","metadata":' || p_metadata[i]
                || ',"occurred_at":"' || p_occurred_at[i]
                || '","schema_version":' || p_schema_versions[i]::text
                || ',"stream_id":"' || p_stream_id::text
                || '","type":"' || p_types[i]
                || '","version":' || (v_head + i)::text || '}}', 'UTF8'));
            INSERT INTO execution_events AS e (stream_id, version, stream_type, event_id,
                type, schema_version, data, metadata, occurred_at, hash{stamp_column})
            VALUES (p_stream_id, v_head + i, p_stream_type, p_event_ids[i], p_types[i],
                p_schema_versions[i], p_data[i]::jsonb, p_metadata[i]::jsonb,
                p_occurred_at[i]::timestamptz, v_hash{stamp_value})
            RETURNING e.position INTO v_position;
            RETURN QUERY SELECT 'appended'::text, v_head + i, v_position, p_event_ids[i],
                NULL::text, v_hash;
        END LOOP;
    END
    $$
"""


def _function(*, fixed: bool) -> str:
    """The function as this revision leaves it, or (not fixed) as 0001 made it."""
    return _FUNCTION.format(
        lock=_LOCK if fixed else "",
        stamp_variable=_STAMP_VARIABLE if fixed else "",
        stamp=_STAMP if fixed else "",
        stamp_column=", recorded_at" if fixed else "",
        stamp_value=", v_recorded_at" if fixed else "",
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function(fixed=True))
        op.execute(
            "ALTER TABLE execution_events ALTER COLUMN recorded_at "
            "SET DEFAULT statement_timestamp()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_function(fixed=False))
        op.execute(
            "ALTER TABLE execution_events ALTER COLUMN recorded_at "
            "SET DEFAULT CURRENT_TIMESTAMP"
        )
