"""The projector folds the log into `executions`, equal to `executions.get()`."""

from __future__ import annotations

import asyncio
import math
import uuid

import pytest
import sqlalchemy as sa

from eventstore import (
    EventStore,
    ExecutionStatus,
    NewEvent,
    ProjectionError,
    StoreSettings,
)
from eventstore.cli.demo_workload import run_workload
from eventstore.schema import executions, projection_checkpoints
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.queries import ExecutionsView
from projections.rebuild import rebuild
from tests.helpers import (
    References,
    all_rows,
    append_behind_the_guards,
    assert_projection_equals_fold,
    event_token_sum,
    execution_in,
    project_everything,
    wait_for_horizon,
)


async def test_a_mixed_concurrent_workload_projects_to_its_fold(url: str) -> None:
    async with EventStore.open(url, settings=StoreSettings(pool_size=10)) as store:
        workload = asyncio.create_task(
            run_workload(
                store, executions=60, workers=6, seed=11, on_change=lambda _: None
            )
        )
        projector = Projector(store, batch_size=7)
        while not workload.done():  # project while the workload runs
            await projector.run_once()
            await asyncio.sleep(0.005)
        await workload
        await projector.run_until_caught_up()
        rows = await assert_projection_equals_fold(store)
        statuses = {row.status.value for row in rows.values()}
        assert {"completed", "failed", "cancelled"} <= statuses
        tokens, cost = await event_token_sum(store)
        assert tokens > 0
        assert (
            sum(
                int(r.metrics.get("prompt_tokens", 0))
                + int(r.metrics.get("completion_tokens", 0))
                for r in rows.values()
            )
            == tokens
        )
        assert math.isclose(
            sum(float(r.metrics.get("cost_usd", 0)) for r in rows.values()), cost
        )


async def test_catching_up_twice_changes_nothing(
    store: EventStore, refs: References
) -> None:
    for status in ("pending", "running", "completed", "failed", "cancelled"):
        await execution_in(store, refs, ExecutionStatus(status))
    projector = Projector(store, batch_size=2)
    assert await projector.run_until_caught_up() == await store.log.count_events()
    before = await all_rows(store)
    async with store.backend.engine.connect() as connection:
        checkpoint = (await connection.execute(sa.select(projection_checkpoints))).all()
    assert await Projector(store).run_until_caught_up() == 0
    assert await all_rows(store) == before
    async with store.backend.engine.connect() as connection:
        assert (
            await connection.execute(sa.select(projection_checkpoints))
        ).all() == checkpoint


async def test_system_streams_are_skipped_but_passed(
    store: EventStore, refs: References
) -> None:
    await store.log.append_system(
        uuid.uuid4(), [NewEvent(type="MaintenanceNote", data={})], expected_version=0
    )
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    assert await Projector(store).run_until_caught_up() == 3
    assert list(await all_rows(store)) == [execution_id]


async def test_rows_never_move_backwards(store: EventStore, refs: References) -> None:
    """The per-row version guard: replaying an old batch into the table changes nothing."""
    execution_id = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await Projector(store).run_until_caught_up()
    done = await ExecutionsView(store).get(execution_id)
    events = [e async for e in store.read_all()]
    async with store.backend.begin_write() as connection:
        # From the stream's start (folded afresh, not read) and from its middle.
        await ExecutionsProjection(store.backend).apply(connection, events[:2])
        await ExecutionsProjection(store.backend).apply(connection, events[1:3])
        await ExecutionsProjection(store.backend).apply(connection, events)
    assert await ExecutionsView(store).get(execution_id) == done


async def test_rebuild_equals_a_fresh_fold(store: EventStore, refs: References) -> None:
    ids = [await execution_in(store, refs, status) for status in ExecutionStatus]
    await Projector(store).run_until_caught_up()
    async with store.backend.begin_write() as connection:  # damage the read model
        await connection.execute(
            sa.update(executions).values(status="pending", steps_completed=42)
        )
        await connection.execute(sa.delete(executions).where(executions.c.id == ids[0]))
    progress: list[tuple[int, int]] = []
    replayed = await rebuild(
        store,
        ExecutionsProjection(store.backend),
        batch_size=3,
        on_batch=lambda done, position: progress.append((done, position)),
    )
    assert replayed == await store.log.count_events()
    assert progress[-1][0] == replayed
    await assert_projection_equals_fold(store)
    assert await Projector(store).run_until_caught_up() == 0


async def test_a_poison_event_stops_the_projection_at_its_position(
    store: EventStore, refs: References, url: str
) -> None:
    good = await execution_in(store, refs, ExecutionStatus.RUNNING)
    poison = NewEvent(type="ExecutionStarted", data={"worker_id": "w"})
    [position] = await append_behind_the_guards(
        store, url, uuid.uuid4(), [poison]
    )  # a stream without ExecutionCreated, as an older store could write
    with pytest.raises(ProjectionError) as caught:
        await Projector(store).run_until_caught_up()
    assert caught.value.projection == "executions"
    assert caught.value.position == position
    assert caught.value.event_id == poison.event_id
    # The batch holding the poison event was not applied; nothing was skipped.
    with pytest.raises(ProjectionError):
        await Projector(store, batch_size=1).run_until_caught_up()
    assert (await ExecutionsView(store).get(good)).status is ExecutionStatus.RUNNING


@pytest.mark.parametrize(
    "value",
    [9223372036854776000, 2.0**63, 1.5e300, 10**30, -(2**64), 0.1, 42, "42"],
)
async def test_bare_numbers_in_inputs_and_results_are_projected_exactly(
    store: EventStore, refs: References, value: object
) -> None:
    """SQLite's NUMERIC affinity turned a JSON column holding a bare number
    into a float of another value (migration 0009; found by tests/properties)."""
    run = await store.executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id, inputs=value
    )
    await store.executions.start(run, worker_id="w")
    await store.executions.complete(run, result=value)
    await project_everything(store)
    row = await ExecutionsView(store).get(run)
    assert row == await store.executions.get(run)
    assert type(row.result) is type(row.inputs)
    await rebuild(store, ExecutionsProjection(store.backend))
    assert await ExecutionsView(store).get(run) == row


async def test_a_projector_behind_reads_ever_larger_batches_then_its_own(
    store: EventStore, refs: References
) -> None:
    for _ in range(30):  # 4 events each
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    sizes: list[int] = []
    async with Projector(store, batch_size=2) as projector:
        while not (report := await projector.run_once()).caught_up:
            sizes.append(report.events)
        sizes.append(report.events)
        # Doubled while full, up to ten times the batch size; the last is short.
        assert sizes[:5] == [2, 4, 8, 16, 20]
        assert all(size == 20 for size in sizes[4:-1])
        assert sizes[-1] < 20
        assert sum(sizes) == await store.log.count_events()
        await assert_projection_equals_fold(store)
        # Caught up, it reads its own batch size again.
        for _ in range(2):
            await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await wait_for_horizon(store)
        assert (await projector.run_once()).events == 2
