"""The PostgreSQL pool hands connections on without a reset query: nothing leaks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore import ExecutionStatus
from eventstore.backends.postgres import PostgresBackend
from projections.executions import ExecutionsProjection
from projections.rebuild import run_rebuild
from tests.helpers import execution_in, raw_pg

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References

ADVISORY_LOCKS_SQL = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def test_a_rebuild_leaves_no_session_lock_on_the_pool(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    report = await run_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
    assert report.swapped
    observer = await raw_pg(pg_url)
    try:
        assert await observer.fetchval(ADVISORY_LOCKS_SQL) == 0
    finally:
        await observer.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(
    pg_store: EventStore,
) -> None:
    backend = pg_store.backend
    assert isinstance(backend, PostgresBackend)
    pool = backend.pool
    connection = await pool.acquire()
    pid = connection.get_server_pid()
    try:
        await connection.execute("BEGIN")
        await connection.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS left_open (n int)"
        )
        await connection.execute("INSERT INTO left_open VALUES (1)")
    finally:
        await pool.release(connection)
    async with pool.acquire() as again:
        assert again.get_server_pid() == pid  # the pool hands out the last released
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
