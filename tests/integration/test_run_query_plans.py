"""PostgreSQL answers the run queries from their indexes, not a read of every run.

The projection here is bulk-loaded with made-up rows (20,000 runs): only the
planner's choice is under test, on a table large enough, and analyzed, for a
sequential scan to be a real option. The timings at a million runs are
`bench/QUERIES_RESULTS.md`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from projections.queries import count_query, page_query
from tests.helpers import make_references, raw_pg

if TYPE_CHECKING:
    import sqlalchemy as sa

    from eventstore import EventStore

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RUNS = 20_000
NOW = datetime(2026, 12, 1, tzinfo=UTC)


async def _load(store: EventStore) -> None:
    refs = await make_references(store)
    connection = await raw_pg(store.url)
    try:
        await connection.execute(
            """
            INSERT INTO executions (id, message_id, graph_id, thread_id, status,
                created_at, attempt, steps_completed, metrics, version, last_position,
                labels)
            SELECT gen_random_uuid(), $1, $2, $3,
                (ARRAY['pending', 'running', 'completed', 'failed', 'cancelled'])[1 + n % 5],
                $4::timestamptz - n * interval '2 minutes', 1, 0, '{}', 1, n,
                jsonb_build_object('customer', 'c' || (n % 200), 'env',
                                   CASE WHEN n % 3 = 0 THEN 'prod' ELSE 'dev' END)
            FROM generate_series(1, $5::int) AS n
            """,
            refs.message.id,
            refs.graph.id,
            refs.thread.id,
            NOW,
            RUNS,
        )
        await connection.execute("VACUUM (ANALYZE) executions")
    finally:
        await connection.close()


async def _plan(store: EventStore, query: sa.Select[Any]) -> str:
    sql = query.compile(
        dialect=store.backend.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    connection = await raw_pg(store.url)
    try:
        return "\n".join(row[0] for row in await connection.fetch(f"EXPLAIN {sql}"))
    finally:
        await connection.close()


def _count(store: EventStore, **filters: Any) -> sa.Select[Any]:
    return count_query(store.projection_context, filters)


async def test_pages_and_counts_use_their_indexes(pg_store: EventStore) -> None:
    store = pg_store
    await _load(store)
    context = store.projection_context

    first = await _plan(
        store, page_query(context, {}, order="newest", limit=50, cursor=None)
    )
    assert "Index Scan Backward using ix_executions_created_at_id" in first, first

    failed_for_a_customer = page_query(
        context,
        {
            "status": "failed",
            "labels": {"customer": "c7"},
            "since": NOW - timedelta(days=1),
        },
        order="newest",
        limit=50,
        cursor=None,
    )
    plan = await _plan(store, failed_for_a_customer)
    assert "Seq Scan" not in plan, plan
    assert (
        "ix_executions_labels" in plan or "ix_executions_status_created_at_id" in plan
    ), plan

    everything = await _plan(store, _count(store))
    assert "Index Only Scan using ix_executions_status on" in everything, everything

    by_customer = await _plan(store, _count(store, labels={"customer": "c7"}))
    assert "Bitmap Index Scan on ix_executions_labels" in by_customer, by_customer
    assert "Seq Scan" not in by_customer, by_customer

    by_graph_and_status = await _plan(
        store,
        page_query(
            context,
            {"status": "running"},
            order="oldest",
            limit=50,
            cursor=None,
        ),
    )
    assert "Index Scan using ix_executions_status_created_at_id" in by_graph_and_status
    assert "Sort" not in by_graph_and_status, by_graph_and_status
