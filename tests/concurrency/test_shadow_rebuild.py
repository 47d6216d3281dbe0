"""The shadow-table rebuild on PostgreSQL, with readers, a projector and writers running."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from eventstore import (
    DatabaseError,
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    StoreSettings,
)
from eventstore.audit.archiving import archive_finished_before
from eventstore.cli.demo_workload import run_workload
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.queries import ExecutionsView
from projections.rebuild import plan_rebuild, run_rebuild
from tests.helpers import (
    References,
    count_events,
    count_positions,
    eventually,
    execution_in,
    project_everything,
    raw_pg,
    wait_for_horizon,
)
from tests.rebuild_support import (
    ReferenceOnly,
    assert_clean_schema,
    assert_metrics_summed_once,
    assert_table_is_the_fold,
    table_rows,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.postgres

SETTINGS = StoreSettings(pool_size=12)


class Interrupted(Exception):
    """Raised from the progress callback: the rebuild stops half way."""


def _quiet(_: object) -> None:
    """The workload's progress display, silenced."""


async def _a_log(store: EventStore, *, executions: int, seed: int) -> int:
    """A realistic log, projected; returns how many events it holds."""
    await run_workload(
        store, executions=executions, workers=8, seed=seed, on_change=_quiet
    )
    await project_everything(store)
    return await count_events(store)


async def test_readers_never_miss_a_row_nor_fail_during_the_rebuild(
    pg_url: str,
) -> None:
    async with EventStore.open(pg_url, settings=SETTINGS) as store:
        events = await _a_log(store, executions=500, seed=3)
        assert events > 2000
        before = await table_rows(store)
        ids = list(before)
        view = ExecutionsView(store)
        raw = await raw_pg(pg_url)
        reads: dict[str, list[tuple[float, int]]] = {"view": [], "sql": []}
        swapped_at: list[float] = []

        def enough(done: list[tuple[float, int]]) -> bool:
            """Twenty reads after the swap: the readers go on through it."""
            return bool(swapped_at) and sum(at > swapped_at[0] for at, _ in done) >= 20

        async def through_the_view() -> None:
            rng = random.Random(7)
            while not enough(reads["view"]):
                page = await view.list(limit=1000)
                # Raises ExecutionNotFound if the row is missing.
                await view.get(rng.choice(ids))
                reads["view"].append((time.monotonic(), len(page.items)))
                await asyncio.sleep(0.002)

        async def through_raw_sql() -> None:
            while not enough(reads["sql"]):
                # asyncpg prepares and caches these statements: they must
                # survive the table under them being swapped.
                count = await raw.fetchval("SELECT count(*) FROM executions")
                row = await raw.fetchrow(
                    "SELECT * FROM executions WHERE id = $1", ids[0]
                )
                assert row is not None
                reads["sql"].append((time.monotonic(), int(count)))
                await asyncio.sleep(0.002)

        try:
            async with asyncio.timeout(120), asyncio.TaskGroup() as readers:
                readers.create_task(through_the_view())
                readers.create_task(through_raw_sql())
                # Small batches: the rebuild lasts long enough for many reads.
                report = await run_rebuild(
                    store, ExecutionsProjection(store.backend), batch_size=50
                )
                swapped_at.append(time.monotonic())
        finally:
            await raw.close()
        assert report.swapped
        assert report.events == events
        for done in reads.values():
            assert min(count for _, count in done) >= len(before)
            assert sum(at < swapped_at[0] for at, _ in done) >= 10  # during it
        rows = await assert_table_is_the_fold(store)
        assert rows == before
        await assert_clean_schema(store)


async def test_a_projector_and_writers_running_through_the_rebuild(
    pg_url: str,
) -> None:
    async with EventStore.open(pg_url, settings=SETTINGS) as store:
        await _a_log(store, executions=200, seed=5)
        stop = asyncio.Event()
        projector = Projector(store, batch_size=40, poll_interval=0.01)
        daemon = asyncio.create_task(projector.run(stop))
        writers = asyncio.create_task(
            run_workload(store, executions=250, workers=6, seed=6, on_change=_quiet)
        )
        writing: list[bool] = []
        report = await run_rebuild(
            store,
            ExecutionsProjection(store.backend),
            batch_size=150,
            on_batch=lambda *_: writing.append(not writers.done()),
        )
        await writers
        stop.set()
        await daemon
        assert report.swapped
        assert any(writing), "the writers finished before the rebuild began"
        await project_everything(store)
        rows = await assert_table_is_the_fold(store)
        await assert_metrics_summed_once(store, rows)
        await assert_clean_schema(store)


@pytest.mark.parametrize("how", ["raise", "cancel"])
async def test_an_interrupted_rebuild_resumes_from_its_checkpoint(
    pg_url: str, how: str
) -> None:
    async with EventStore.open(pg_url, settings=SETTINGS) as store:
        events = await _a_log(store, executions=150, seed=9)
        before = await table_rows(store)
        far_enough = asyncio.Event()

        def on_batch(done: int, _: int) -> None:
            if done >= 150:
                if how == "raise":
                    raise Interrupted
                far_enough.set()

        # Folded here, a batch at a time, so that the shadow's checkpoint
        # moves (the database's fold moves it once, at its end).
        projection = ReferenceOnly(store.backend)
        if how == "raise":
            with pytest.raises(Interrupted):
                await run_rebuild(store, projection, batch_size=50, on_batch=on_batch)
        else:
            task = asyncio.create_task(
                run_rebuild(store, projection, batch_size=50, on_batch=on_batch)
            )
            async with asyncio.timeout(60):
                await far_enough.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await table_rows(store) == before  # the live table is untouched
        plan = await plan_rebuild(store, projection)
        assert plan.resume_from is not None
        assert 0 < plan.events <= events - 150
        report = await run_rebuild(store, projection, batch_size=50)
        assert report.resumed_from == plan.resume_from
        assert report.events == plan.events
        assert report.events < events
        await assert_table_is_the_fold(store)
        await assert_clean_schema(store)


async def test_a_long_reader_makes_the_swap_give_up_and_keep_the_shadow(
    pg_url: str,
) -> None:
    async with EventStore.open(pg_url, settings=SETTINGS) as store:
        events = await _a_log(store, executions=40, seed=13)
        before = await table_rows(store)
        reader = await raw_pg(pg_url)
        try:
            transaction = reader.transaction()
            await transaction.start()
            await reader.fetchval("SELECT count(*) FROM executions")
            with pytest.raises(DatabaseError, match="could not lock executions"):
                await run_rebuild(
                    store,
                    ExecutionsProjection(store.backend),
                    swap_lock_timeout=0.05,
                    swap_attempts=3,
                )
            assert await reader.fetchval("SELECT count(*) FROM executions") == len(
                before
            )
            await transaction.rollback()
        finally:
            await reader.close()
        plan = await plan_rebuild(store, ExecutionsProjection(store.backend))
        assert plan.resume_from is not None  # the shadow waits to be swapped in
        report = await run_rebuild(store, ExecutionsProjection(store.backend))
        assert report.resumed_from == plan.resume_from
        assert report.events < events
        assert await assert_table_is_the_fold(store) == before
        await assert_clean_schema(store)


async def test_one_rebuild_at_a_time(pg_store: EventStore, pg_refs: References) -> None:
    await execution_in(pg_store, pg_refs, ExecutionStatus.RUNNING)
    await wait_for_horizon(pg_store)
    shadows = pg_store.backend.shadow_tables()
    assert shadows is not None
    async with shadows.lock("executions") as taken:
        assert taken
        with pytest.raises(DatabaseError, match="another rebuild"):
            await run_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
    await run_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
    await assert_table_is_the_fold(pg_store)


async def test_privileges_are_carried_over(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(pg_store)
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = await raw_pg(pg_url)
    try:
        await admin.execute(f"CREATE ROLE {role}")
        await admin.execute(f"GRANT SELECT, UPDATE ON executions TO {role}")
        await run_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
        privileges = await admin.fetch(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE table_name = 'executions' AND grantee = $1",
            role,
        )
        assert {row[0] for row in privileges} == {"SELECT", "UPDATE"}
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()
    await assert_clean_schema(pg_store)


async def test_the_new_table_is_analyzed_where_queries_filter(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    """Statistics for the indexed columns before the swap; the JSON documents
    are left to autovacuum, which the row count still due tells to come."""
    for status in (ExecutionStatus.COMPLETED, ExecutionStatus.RUNNING):
        await execution_in(pg_store, pg_refs, status)
    await wait_for_horizon(pg_store)
    await run_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
    admin = await raw_pg(pg_url)
    try:
        analyzed = {
            row[0]
            for row in await admin.fetch(
                "SELECT attname FROM pg_stats WHERE tablename = 'executions'"
            )
        }
        indexed = {
            row[0]
            for row in await admin.fetch(
                "SELECT a.attname FROM pg_index x JOIN pg_attribute a "
                "ON a.attrelid = x.indrelid AND a.attnum = ANY(x.indkey) "
                "WHERE x.indrelid = 'executions'::regclass"
            )
        }
        assert {"status", "created_at", "graph_id", "labels"} <= indexed
        assert analyzed == indexed

        async def autovacuum_is_due() -> bool:
            due = await admin.fetchval(
                "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                "WHERE relname = 'executions'"
            )
            return bool(due and due >= 2)  # the rows written into the new table

        await eventually(autovacuum_is_due, "the new table's rows counted as changed")
    finally:
        await admin.close()


async def test_an_archive_during_the_rebuild_is_not_undone(
    pg_store: EventStore, pg_refs: References, tmp_path: Path
) -> None:
    store = pg_store
    old = [
        await execution_in(store, pg_refs, status)
        for status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
    ]
    await asyncio.sleep(0.01)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.01)
    kept = await execution_in(store, pg_refs, ExecutionStatus.RUNNING)
    await project_everything(store)
    head = await count_positions(store)

    def stop_at_the_head(_: int, position: int) -> None:
        if position >= head:
            raise Interrupted

    with pytest.raises(Interrupted):  # the shadow has folded every execution
        await run_rebuild(
            store, ReferenceOnly(store.backend), batch_size=2, on_batch=stop_at_the_head
        )
    archived = await archive_finished_before(store, cutoff, tmp_path)
    assert archived is not None
    await run_rebuild(store, ExecutionsProjection(store.backend))
    view = ExecutionsView(store)
    for execution_id in old:
        with pytest.raises(ExecutionNotFound):
            await view.get(execution_id)
    assert set(await table_rows(store)) == {kept}
    await assert_table_is_the_fold(store)
    await assert_clean_schema(store)
