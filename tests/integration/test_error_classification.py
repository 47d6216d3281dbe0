"""Driver errors become the store's database errors, sorted transient or permanent.

Every error here is raised by a real server or a real SQLite file: PostgreSQL
raises each SQLSTATE from a DO block (`RAISE ... USING ERRCODE`), and real
deadlocks, terminated backends and locked files are provoked. Anything that
is not a driver error (a bug, a bad event) passes through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import asyncpg
import pytest
import sqlalchemy as sa

from eventstore import (
    AppendOnlyViolation,
    DatabaseConflict,
    DatabaseError,
    DatabaseUnavailable,
    EventStore,
    EventStoreError,
    ExecutionStatus,
    StoreSettings,
)
from eventstore.backends.postgres import PostgresBackend
from eventstore.backends.postgres_errors import classify as classify_postgres
from eventstore.schema import execution_events, executions
from tests.helpers import eventually, execution_in, project_everything, raw_pg

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore.backends import Backend
    from tests.helpers import References


async def raise_sqlstate(backend: Backend, code: str) -> None:
    """Make the server raise `code` through SQLAlchemy, inside translate_errors."""
    async with backend.connect_read() as connection:
        await connection.exec_driver_sql(
            f"DO $$ BEGIN RAISE EXCEPTION 'raised %', '{code}' "
            f"USING ERRCODE = '{code}'; END $$"
        )


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        ("40001", DatabaseConflict, True),  # serialization_failure
        ("40P01", DatabaseConflict, True),  # deadlock_detected
        ("55P03", DatabaseConflict, True),  # lock_not_available
        ("57P01", DatabaseUnavailable, True),  # admin_shutdown
        ("57P03", DatabaseUnavailable, True),  # cannot_connect_now
        ("53300", DatabaseUnavailable, True),  # too_many_connections
        ("08006", DatabaseUnavailable, True),  # connection_failure
        ("57014", DatabaseError, True),  # query_canceled (statement_timeout)
        ("53100", DatabaseError, True),  # disk_full
        ("28P01", DatabaseUnavailable, False),  # invalid_password
        ("3D000", DatabaseUnavailable, False),  # invalid_catalog_name
        ("23503", DatabaseError, False),  # foreign_key_violation
        ("23505", DatabaseError, False),  # unique_violation
        ("22003", DatabaseError, False),  # numeric_value_out_of_range
        ("42501", DatabaseError, False),  # insufficient_privilege
        ("XX000", DatabaseError, False),  # internal_error
        ("ZE001", AppendOnlyViolation, False),  # the log's immutability trigger
    ],
)
async def test_postgres_sorts_errors_by_sqlstate(
    pg_store: EventStore, code: str, kind: type[EventStoreError], transient: bool
) -> None:
    with pytest.raises(kind) as raised:
        await raise_sqlstate(pg_store.backend, code)
    error = raised.value
    assert type(error) is kind
    assert getattr(error, "transient", False) is transient
    assert isinstance(raised.value.__cause__, Exception)  # the driver's, kept


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        ("40001", DatabaseConflict, True),
        ("57P01", DatabaseUnavailable, True),
        ("23503", DatabaseError, False),
    ],
)
async def test_the_asyncpg_hot_path_sorts_alike(
    pg_store: EventStore, code: str, kind: type[DatabaseError], transient: bool
) -> None:
    """The raw asyncpg pool (appends, reads) goes through the same classification."""
    backend = pg_store.backend
    assert isinstance(backend, PostgresBackend)
    with pytest.raises(kind) as raised:
        async with backend.translate_errors(), backend.pool.acquire() as connection:
            await connection.execute(
                f"DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$"
            )
    assert type(raised.value) is kind
    assert raised.value.transient is transient
    assert isinstance(raised.value.__cause__, asyncpg.PostgresError)


@pytest.mark.postgres
async def test_a_real_deadlock_is_a_transient_conflict(pg_store: EventStore) -> None:
    async with pg_store.backend.begin_write() as connection:
        await connection.exec_driver_sql("CREATE TABLE deadlock_probe (id int)")
        await connection.exec_driver_sql("INSERT INTO deadlock_probe VALUES (1), (2)")
    backend = pg_store.backend
    both_locked = asyncio.Barrier(2)

    async def lock_in_order(first: int, second: int) -> None:
        async with backend.begin_write() as connection:
            await connection.exec_driver_sql(
                f"UPDATE deadlock_probe SET id = id WHERE id = {first}"
            )
            await both_locked.wait()
            await connection.exec_driver_sql(
                f"UPDATE deadlock_probe SET id = id WHERE id = {second}"
            )

    outcomes = await asyncio.gather(
        lock_in_order(1, 2), lock_in_order(2, 1), return_exceptions=True
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1, outcomes  # the server picks one victim
    assert isinstance(failures[0], DatabaseConflict), failures
    assert failures[0].transient


@pytest.mark.postgres
async def test_a_terminated_backend_is_unavailable(pg_store: EventStore) -> None:
    with pytest.raises(DatabaseUnavailable) as raised:
        async with pg_store.backend.connect_read() as connection:
            await connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pg_backend_pid())"
            )
    assert raised.value.transient


@pytest.mark.postgres
async def test_writers_whose_connections_are_terminated_see_only_unavailable(
    pg_url: str, pg_refs: References
) -> None:
    """Issue 11 item 3: asyncpg's "cannot switch to state 12" is a lost connection.

    Eight writers run the lifecycle while every backend of the database is
    terminated again and again; whatever reaches the writers must be
    `DatabaseUnavailable` (which callers retry), never a generic DatabaseError.
    """
    seen: Counter[str] = Counter()
    settings = StoreSettings(pool_size=10, command_retries=0)
    async with EventStore.open(pg_url, settings=settings) as store:
        stop = asyncio.Event()

        async def writer() -> None:
            while not stop.is_set():
                try:
                    await execution_in(store, pg_refs, ExecutionStatus.COMPLETED)
                except DatabaseUnavailable as exc:
                    seen["unavailable" if exc.transient else "permanent"] += 1
                except EventStoreError as exc:
                    seen[f"{type(exc).__name__}: {exc}"] += 1

        writers = [asyncio.create_task(writer()) for _ in range(8)]
        admin = await raw_pg(pg_url)
        try:
            for _ in range(25):
                await asyncio.sleep(0.1)
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        finally:
            stop.set()
            await admin.close()
        await asyncio.gather(*writers)
    assert seen["unavailable"] > 0
    assert set(seen) == {"unavailable"}, seen


@pytest.mark.postgres
async def test_reads_and_appends_after_the_server_dropped_every_session_succeed(
    pg_url: str, pg_refs: References
) -> None:
    """A restart kills every pooled session; the next calls get new ones, first time.

    asyncpg's pool reconnects a closed connection on acquire; the engine's
    pool is told to do the same (CI once failed a read this way after a
    real server restart, tests/concurrency/test_server_restart.py).
    """
    settings = StoreSettings(pool_size=3, command_retries=0)
    async with EventStore.open(pg_url, settings=settings) as store:
        run = await execution_in(store, pg_refs, ExecutionStatus.RUNNING)
        pooled: list[asyncpg.Connection] = []
        async with contextlib.AsyncExitStack() as stack:  # fill the engine's pool
            for _ in range(3):
                connection = await stack.enter_async_context(
                    store.backend.connect_read()
                )
                raw = (await connection.get_raw_connection()).driver_connection
                assert isinstance(raw, asyncpg.Connection)
                pooled.append(raw)
        admin = await raw_pg(pg_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        await eventually(
            lambda: all(connection.is_closed() for connection in pooled),
            "every pooled session seen closed",
        )

        async def read_version() -> int:
            async with store.backend.connect_read() as connection:
                version = await connection.scalar(
                    sa.select(sa.func.max(execution_events.c.version)).where(
                        execution_events.c.stream_id == run
                    )
                )
                return int(version)

        assert await asyncio.gather(*(read_version() for _ in range(3))) == [2] * 3
        assert (await store.executions.get(run)).status is ExecutionStatus.RUNNING
        await store.executions.progress(run, step="after the restart")
        assert (await store.executions.get(run)).version == 3


def test_asyncpg_client_errors_of_a_lost_connection_are_unavailable() -> None:
    """By class: InternalClientError (a protocol state lost mid-operation)."""
    lost = classify_postgres(
        asyncpg.InternalClientError("cannot switch to state 12"), url="u"
    )
    assert isinstance(lost, DatabaseUnavailable)
    assert lost.transient
    closed = classify_postgres(asyncpg.InterfaceError("connection is closed"), url="u")
    assert isinstance(closed, DatabaseUnavailable)
    assert classify_postgres(KeyError("k"), url="u") is None


async def test_a_foreign_key_violation_is_permanent(
    store: EventStore, refs: References
) -> None:
    await execution_in(store, refs, ExecutionStatus.PENDING)
    await project_everything(store)
    orphan = sa.update(executions).values(message_id=uuid.uuid4())
    with pytest.raises(DatabaseError) as raised:
        async with store.backend.begin_write() as connection:
            await connection.execute(orphan)
    assert not raised.value.transient
    assert not isinstance(raised.value, DatabaseUnavailable | DatabaseConflict)


@pytest.mark.parametrize("error", [KeyError("k"), OverflowError("big"), ValueError])
async def test_anything_but_a_driver_error_passes_through_unchanged(
    store: EventStore, error: BaseException | type[BaseException]
) -> None:
    kind = error if isinstance(error, type) else type(error)

    async def failing_transaction() -> None:
        async with store.backend.begin_write() as connection:
            await connection.execute(sa.select(1))
            raise error

    async def failing_block() -> None:
        async with store.backend.translate_errors():
            raise error

    for failing in (failing_transaction, failing_block):
        with pytest.raises(kind) as raised:
            await failing()
        assert not isinstance(raised.value, EventStoreError)


@pytest.mark.sqlite
async def test_a_locked_sqlite_file_is_a_transient_conflict(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    settings = StoreSettings(sqlite_busy_timeout_ms=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        async with EventStore.open(sqlite_url, settings=settings) as store:
            with pytest.raises(DatabaseConflict) as raised:
                async with store.backend.begin_write() as connection:
                    await connection.execute(sa.select(1))
            assert raised.value.transient
            assert isinstance(raised.value.__cause__, Exception)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.sqlite
async def test_sqlite_files_that_cannot_be_opened_are_permanent(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-directory" / "store.db"
    with pytest.raises(DatabaseUnavailable) as raised:
        async with EventStore.open(f"sqlite:///{missing}"):
            pass
    assert not raised.value.transient


@pytest.mark.postgres
async def test_one_dropped_session_is_replaced_alone(pg_url: str) -> None:
    """A session the server dropped is replaced at checkout; the rest are kept."""
    settings = StoreSettings(pool_size=3, command_retries=0)
    async with EventStore.open(pg_url, settings=settings) as store:
        sessions: dict[int, asyncpg.Connection] = {}

        async def pooled_pids() -> list[int]:
            async with contextlib.AsyncExitStack() as stack:  # the whole pool at once
                pids = []
                for _ in range(3):
                    connection = await stack.enter_async_context(
                        store.backend.connect_read()
                    )
                    pid = await connection.scalar(sa.text("SELECT pg_backend_pid()"))
                    raw = (await connection.get_raw_connection()).driver_connection
                    assert isinstance(raw, asyncpg.Connection)
                    sessions[int(pid)] = raw
                    pids.append(int(pid))
                return pids

        before = await pooled_pids()
        admin = await raw_pg(pg_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", before[0])
        finally:
            await admin.close()
        dropped = sessions[before[0]]
        await eventually(dropped.is_closed, "the dropped session seen closed")
        after = await pooled_pids()
        assert before[0] not in after
        # The live sessions are kept, this time and the next (a pool that
        # invalidated itself would replace them at their next checkout).
        assert set(before[1:]) <= set(after)
        assert set(before[1:]) <= set(await pooled_pids())
