"""A projector at the start of a long log catches up by a rebuild (PostgreSQL).

The projector rebuilds a projection it leads wholly, standing at the start
of a log long enough, and goes on in batches from where the swap left the
checkpoints; with writers and readers running, the table ends as the fold
of every event, each folded once. Whatever the rebuild cannot finish (a
poison event) the batches do, stopping where they always stop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import (
    EventStore,
    ExecutionStatus,
    ProjectionError,
    StoreSettings,
    ValidationError,
)
from eventstore.cli.demo_workload import run_workload
from eventstore.schema import projection_checkpoints
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.queries import ExecutionsView
from projections.start_by_rebuild import start_by_rebuild
from tests.cli.runner import run_cli
from tests.helpers import (
    References,
    count_events,
    eventually,
    execution_in,
    poison_metric_overflow,
    poison_unknown_message,
    raw_pg,
    wait_for_horizon,
)
from tests.rebuild_support import (
    assert_clean_schema,
    assert_metrics_summed_once,
    assert_table_is_the_fold,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from projections.batches import BatchReport
    from tests.helpers import Poison

pytestmark = pytest.mark.postgres

SETTINGS = StoreSettings(pool_size=12)
WITHIN = 120  # seconds: a deadline, never an expected duration


def _quiet(_: object) -> None:
    """The workload's progress display, silenced."""


async def _table_oid(store: EventStore) -> int:
    async with store.backend.connect_read() as connection:
        oid = await connection.scalar(sa.text("SELECT 'executions'::regclass::oid"))
    return int(oid)


async def _checkpoints(store: EventStore) -> dict[int, int]:
    """The executions projection's checkpoint position, by partition."""
    async with store.backend.connect_read() as connection:
        rows = await connection.execute(
            sa.select(
                projection_checkpoints.c.partition, projection_checkpoints.c.position
            ).where(projection_checkpoints.c.name == "executions")
        )
        return {row.partition: row.position for row in rows}


async def _head(store: EventStore) -> int:
    head = await store.projection_context.head_checkpoint()
    assert head is not None
    return head.position


@pytest.mark.parametrize("partitions", [1, 2])
async def test_it_rebuilds_then_goes_on_in_batches_while_writers_and_readers_run(
    pg_url: str, partitions: int
) -> None:
    async with EventStore.open(pg_url, settings=SETTINGS) as store:
        await run_workload(store, executions=300, workers=8, seed=5, on_change=_quiet)
        logged = await count_events(store)
        assert logged > 1000
        live_oid = await _table_oid(store)
        view = ExecutionsView(store)
        raw = await raw_pg(pg_url)
        counts: list[int] = []
        writing = asyncio.Event()
        projector = Projector(store, partitions=partitions, rebuild_at_start=100)

        async def write() -> None:
            try:
                await run_workload(
                    store, executions=60, workers=4, seed=6, on_change=_quiet
                )
            finally:
                writing.set()

        async def read() -> None:
            while not writing.is_set() or len(counts) < 20:
                # Raises if the table is ever missing or half-swapped.
                page = await view.list(limit=50)
                count = int(await raw.fetchval("SELECT count(*) FROM executions"))
                assert len(page.items) <= count or count < 50
                counts.append(count)
                await asyncio.sleep(0.002)

        try:
            async with asyncio.timeout(WITHIN), asyncio.TaskGroup() as running:
                running.create_task(write())
                running.create_task(read())
                first = await projector.run_once()
        finally:
            await raw.close()
            await projector.aclose()
        # The first round rebuilt what the log held when it looked, at least.
        assert first.events >= logged
        assert await _table_oid(store) != live_oid
        # Rows only ever appeared: the readers saw the empty live table,
        # then the swapped one, never less.
        assert counts == sorted(counts)
        await wait_for_horizon(store)
        after = Projector(store, partitions=partitions, rebuild_at_start=100)
        await after.run_until_caught_up()
        rows = await assert_table_is_the_fold(store)
        await assert_metrics_summed_once(store, rows)
        await assert_clean_schema(store)
        head = await _head(store)
        # Each partition's checkpoint is at its own last event.
        places = await _checkpoints(store)
        assert sorted(places) == list(range(partitions))
        assert max(places.values()) == head


async def test_it_folds_in_batches_below_the_threshold_or_when_turned_off(
    pg_store: EventStore, pg_refs: References
) -> None:
    for _ in range(10):
        await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    live_oid = await _table_oid(pg_store)
    logged = await count_events(pg_store)
    events = await Projector(pg_store, rebuild_at_start=None).run_until_caught_up()
    assert events == logged
    assert await _table_oid(pg_store) == live_oid
    async with pg_store.backend.begin_write() as connection:
        await connection.execute(sa.text("TRUNCATE executions"))
        await connection.execute(sa.delete(projection_checkpoints))
    head = await _head(pg_store)
    events = await Projector(pg_store, rebuild_at_start=head + 1).run_until_caught_up()
    assert events == logged
    assert await _table_oid(pg_store) == live_oid
    await assert_table_is_the_fold(pg_store)


@pytest.mark.parametrize(
    "make_poison",
    [poison_unknown_message, poison_metric_overflow],
    ids=["unknown-message", "metric-overflow"],
)
async def test_a_poison_event_stops_it_where_the_batches_stop(
    pg_store: EventStore,
    pg_refs: References,
    make_poison: Callable[[EventStore, References], Awaitable[Poison]],
) -> None:
    for _ in range(5):
        await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    poison = await make_poison(pg_store, pg_refs)
    for _ in range(5):
        await execution_in(pg_store, pg_refs, ExecutionStatus.RUNNING)
    live_oid = await _table_oid(pg_store)
    projector = Projector(pg_store, rebuild_at_start=1)
    with pytest.raises(ProjectionError) as raised:
        await projector.run_until_caught_up()
    assert raised.value.position == poison.position
    # Every event before the poison one applied, in batches, to the live
    # table; the shadow and its checkpoint are gone.
    async with pg_store.backend.connect_read() as connection:
        before = await connection.scalar(
            sa.text("SELECT max(position) FROM execution_events WHERE position < :p"),
            {"p": poison.position},
        )
    assert await _checkpoints(pg_store) == {0: before}
    assert await _table_oid(pg_store) == live_oid
    await assert_clean_schema(pg_store)


async def test_while_another_rebuild_runs_its_slots_wait_then_it_rebuilds(
    pg_store: EventStore, pg_refs: References
) -> None:
    for _ in range(10):
        await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    live_oid = await _table_oid(pg_store)
    shadows = pg_store.projection_context.shadow_tables()
    assert shadows is not None
    projector = Projector(pg_store, rebuild_at_start=1)
    try:
        async with shadows.lock("executions") as taken:
            assert taken
            report = await projector.run_once()
            assert report.events == 0
            assert report.waiting == ("executions:0/1",)
            assert not report.caught_up
        reports: list[BatchReport] = []

        async def rebuilt() -> bool:
            # Waiting out the hold's backoff, then rebuilding.
            reports.append(await projector.run_once())
            return reports[-1].events > 0

        await eventually(rebuilt, "rebuilt once the other rebuild ended", within=WITHIN)
    finally:
        await projector.aclose()
    assert reports[-1].events == await count_events(pg_store)
    assert await _table_oid(pg_store) != live_oid
    await assert_table_is_the_fold(pg_store)


async def test_a_bad_threshold_is_refused(pg_store: EventStore) -> None:
    with pytest.raises(ValidationError, match="rebuild_at_start"):
        Projector(pg_store, rebuild_at_start=0)


async def test_the_cli_takes_the_threshold_and_refuses_a_negative_one(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    for _ in range(3):
        await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    live_oid = await _table_oid(pg_store)
    refused = await asyncio.to_thread(
        run_cli, "project", "--until-caught-up", "--url", pg_url,
        "--rebuild-at-start", "-1",
    )  # fmt: skip
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert await _checkpoints(pg_store) == {}
    done = await asyncio.to_thread(
        run_cli, "project", "--until-caught-up", "--url", pg_url,
        "--rebuild-at-start", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    logged = await count_events(pg_store)
    assert f"projected {logged} events" in done.stdout
    assert await _table_oid(pg_store) != live_oid
    await assert_table_is_the_fold(pg_store)


async def test_a_stopped_daemon_leaves_the_rebuild_for_the_next_start(
    pg_store: EventStore, pg_refs: References
) -> None:
    for _ in range(10):
        await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    live_oid = await _table_oid(pg_store)
    stop = asyncio.Event()
    stop.set()  # as if SIGTERM came while the database folded
    projection = ExecutionsProjection(pg_store.projection_context)
    stopped = await start_by_rebuild(pg_store, projection, [0], at_least=1, stop=stop)
    assert stopped is None
    assert await _table_oid(pg_store) == live_oid
    async with pg_store.backend.connect_read() as connection:
        shadow = await connection.scalar(
            sa.text("SELECT to_regclass('executions_rebuild') IS NOT NULL")
        )
    assert shadow  # kept, for the next start
    events = await Projector(pg_store, rebuild_at_start=1).run_until_caught_up()
    assert events == await count_events(pg_store)
    assert await _table_oid(pg_store) != live_oid
    await assert_table_is_the_fold(pg_store)
    await assert_clean_schema(pg_store)
