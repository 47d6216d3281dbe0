"""The store-wide "as of" is answered by one index-only scan, not a read of the log.

The log here is bulk-loaded with made-up rows (their hashes are not a
chain): only the planner's choice is under test, on a log large enough, and
analyzed, for a sequential scan to be a real option.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from eventstore.backends import (
    postgres_audit,
    postgres_log,
    postgres_order,
    sqlite_audit,
    sqlite_rows,
)
from tests.helpers import load_made_up_log, raw_pg

pytestmark = pytest.mark.slow

STREAMS = 4000
LIFECYCLE = (
    "ExecutionCreated",
    "ExecutionStarted",
    "ExecutionProgressed",
    "ExecutionProgressed",
    "ExecutionCompleted",
)
INDEX = "ix_execution_events_status_history"


async def test_postgres_answers_as_of_with_an_index_only_scan(pg_url: str) -> None:
    connection = await raw_pg(pg_url)
    try:
        await load_made_up_log(connection, STREAMS, LIFECYCLE)
        await connection.execute("VACUUM (ANALYZE) execution_events")
        # As of a time in the middle, and as of now (the archive's question).
        for time in (datetime(2026, 10, 1, 2, tzinfo=UTC), postgres_order.FAR_FUTURE):
            plan = "\n".join(
                row[0]
                for row in await connection.fetch(
                    f"EXPLAIN {postgres_audit.STATUS_EVENTS_SQL}",
                    postgres_order.MAX_POSITION,
                    time,
                )
            )
            assert f"Index Only Scan Backward using {INDEX}" in plan, plan
            assert "Sort" not in plan, plan
    finally:
        await connection.close()


async def test_sqlite_answers_as_of_from_the_covering_index(sqlite_url: str) -> None:
    connection = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        connection.execute(
            f"""
            WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s
                                    WHERE n < {STREAMS}),
                v(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM v WHERE k < 5)
            INSERT INTO execution_events (stream_id, version, stream_type, event_id,
                type, schema_version, data, metadata, occurred_at, recorded_at, hash)
            SELECT printf('%032x', n), k, 'plan', lower(hex(randomblob(16))),
                json_extract(?, '$[' || (k - 1) || ']'), 1, '{{}}', '{{}}',
                datetime('2026-10-01', '+' || (n * 5 + k) || ' seconds'),
                strftime('%Y-%m-%d %H:%M:%f', 'now'),
                randomblob(32)
            FROM s, v ORDER BY n, k
            """,
            (f"[{', '.join(repr(t).replace(chr(39), chr(34)) for t in LIFECYCLE)}]",),
        )
        connection.commit()
        connection.execute("ANALYZE")
        plan = " ".join(
            str(row[-1])
            for row in connection.execute(
                f"EXPLAIN QUERY PLAN {sqlite_audit.STATUS_EVENTS_SQL}",
                (sqlite_rows.MAX_POSITION, "2026-10-01 02:00:00.000000"),
            )
        )
        assert f"USING COVERING INDEX {INDEX}" in plan, plan
    finally:
        connection.close()


async def test_postgres_reads_the_log_in_order_from_one_index_range(
    pg_url: str,
) -> None:
    """The epoch-led order (migration 0006) is one index range scan, no sort."""
    connection = await raw_pg(pg_url)
    try:
        await load_made_up_log(connection, STREAMS, ["Tick"] * 5)
        await connection.execute("VACUUM (ANALYZE) execution_events")
        plan = "\n".join(
            row[0]
            for row in await connection.fetch(
                f"EXPLAIN {postgres_log.READ_ALL_SQL}", 0, 0, 100, 500
            )
        )
        assert (
            "Index Scan using ix_execution_events_epoch_transaction_id_position" in plan
        ), plan
        assert "Sort" not in plan, plan
    finally:
        await connection.close()
