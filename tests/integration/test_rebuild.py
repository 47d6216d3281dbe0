"""The rebuild equals a fresh fold, on both backends; the CLI shows it and resumes it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import ExecutionStatus, ValidationError
from eventstore.schema import executions, projection_checkpoints
from projections.executions import ExecutionsProjection
from projections.rebuild import plan_rebuild, run_rebuild
from tests.cli.runner import run_cli
from tests.helpers import (
    References,
    count_events,
    execution_in,
    project_everything,
    wait_for_horizon,
)
from tests.rebuild_support import (
    ReferenceOnly,
    assert_clean_schema,
    assert_table_is_the_fold,
)

if TYPE_CHECKING:
    from eventstore import EventStore


class Interrupted(Exception):
    """Raised from the progress callback: a rebuild stopped half way."""


async def _some_executions(store: EventStore, refs: References) -> None:
    for status in ExecutionStatus:
        await execution_in(store, refs, status)
        await execution_in(store, refs, status)
    running = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await store.executions.progress(
        running, step="plan", metrics={"prompt_tokens": 5, "cost_usd": 0.5}
    )
    # Another test's open transaction may hold the gap-safe horizon back.
    await wait_for_horizon(store)


async def test_a_rebuild_equals_a_fresh_fold(
    store: EventStore, refs: References
) -> None:
    await _some_executions(store, refs)
    await project_everything(store)
    async with store.backend.begin_write() as connection:  # damage the read model
        await connection.execute(sa.update(executions).values(steps_completed=42))
    progress: list[tuple[int, int]] = []
    report = await run_rebuild(
        store,
        ExecutionsProjection(store.backend),
        batch_size=4,
        on_batch=lambda done, position: progress.append((done, position)),
    )
    events = await count_events(store)
    assert report.events == events
    assert report.resumed_from is None
    assert progress[-1] == (events, report.position)
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    # PostgreSQL swaps a shadow table in; SQLite replays in one transaction.
    assert report.swapped is (store.backend.name == "postgresql")
    await assert_table_is_the_fold(store)
    await assert_clean_schema(store)
    async with store.backend.connect_read() as connection:
        positions = (
            await connection.execute(
                sa.select(projection_checkpoints.c.position).where(
                    projection_checkpoints.c.name == "executions"
                )
            )
        ).scalars()
        assert set(positions) == {report.position}


async def test_a_rebuild_of_an_empty_log(store: EventStore) -> None:
    plan = await plan_rebuild(store, ExecutionsProjection(store.backend))
    assert (plan.events, plan.resume_from) == (0, None)
    report = await run_rebuild(store, ExecutionsProjection(store.backend))
    assert (report.events, report.position) == (0, 0)
    await assert_clean_schema(store)


async def test_a_bad_batch_size_is_refused(store: EventStore) -> None:
    with pytest.raises(ValidationError):
        await run_rebuild(store, ExecutionsProjection(store.backend), batch_size=0)


async def test_the_cli_rebuilds_and_says_what_it_did(
    store: EventStore, refs: References, url: str
) -> None:
    await _some_executions(store, refs)
    events = await count_events(store)
    done = run_cli("rebuild", "--url", url, "--batch-size", "5")
    assert done.returncode == 0, done.stderr
    assert f"rebuilt executions from {events} events" in done.stdout
    if store.backend.name == "postgresql":
        assert "swapped in at position" in done.stdout
    else:
        assert "replayed in one transaction" in done.stdout
    assert "rebuilding executions" in done.stderr  # the progress bar
    await assert_table_is_the_fold(store)
    await assert_clean_schema(store)
    machine = run_cli("rebuild", "--url", url, "--json")
    assert machine.returncode == 0, machine.stderr
    report = json.loads(machine.stdout)
    assert report["events"] == events
    assert report["projection"] == "executions"


@pytest.mark.postgres
async def test_the_cli_resumes_an_interrupted_rebuild(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    await _some_executions(pg_store, pg_refs)
    events = await count_events(pg_store)

    def stop_after_two(done: int, _: int) -> None:
        if done >= 10:
            raise Interrupted

    # Folded here, a batch at a time: the shadow's checkpoint moves each batch.
    with pytest.raises(Interrupted):
        await run_rebuild(
            pg_store,
            ReferenceOnly(pg_store.backend),
            batch_size=5,
            on_batch=stop_after_two,
        )
    plan = await plan_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
    assert plan.resume_from is not None
    assert plan.events == events - 10
    done = run_cli("rebuild", "--url", pg_url)
    assert done.returncode == 0, done.stderr
    assert f"resuming the rebuild from position {plan.resume_from}" in done.stderr
    assert f"rebuilt executions from {events - 10} events" in done.stdout
    assert f"(resumed from position {plan.resume_from})" in done.stdout
    await assert_table_is_the_fold(pg_store)
    await assert_clean_schema(pg_store)

    with pytest.raises(Interrupted):
        await run_rebuild(
            pg_store,
            ExecutionsProjection(pg_store.backend),
            batch_size=5,
            on_batch=stop_after_two,
        )
    again = run_cli("rebuild", "--url", pg_url, "--restart")
    assert again.returncode == 0, again.stderr
    assert f"rebuilt executions from {events} events" in again.stdout
    await assert_table_is_the_fold(pg_store)
    await assert_clean_schema(pg_store)


async def test_a_rebuild_stopped_while_the_database_folds_starts_again(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    """The database's fold moves the shadow's checkpoint once, at its end:
    a run stopped before then leaves nothing to resume, and the next run
    folds the whole log again into an emptied shadow."""
    await _some_executions(pg_store, pg_refs)
    events = await count_events(pg_store)
    parts: list[int] = []

    def stop_after_the_first_part(done: int, _: int) -> None:
        parts.append(done)
        raise Interrupted

    with pytest.raises(Interrupted):
        await run_rebuild(
            pg_store,
            ExecutionsProjection(pg_store.backend),
            batch_size=4,  # streams per part of the database's fold
            on_batch=stop_after_the_first_part,
        )
    assert 0 < parts[0] < events  # stopped with a part written to the shadow
    plan = await plan_rebuild(pg_store, ExecutionsProjection(pg_store.backend))
    assert plan.resume_from is None
    assert plan.events == events
    done = run_cli("rebuild", "--url", pg_url)
    assert done.returncode == 0, done.stderr
    assert "resuming" not in done.stderr
    assert f"rebuilt executions from {events} events" in done.stdout
    await assert_table_is_the_fold(pg_store)
    await assert_clean_schema(pg_store)


async def test_the_database_folds_every_stream_the_lifecycle_wrote(
    pg_store: EventStore, pg_refs: References
) -> None:
    """No lifecycle stream is left to the reference: the database's fold is
    the rebuild's fold on PostgreSQL, not a path it seldom takes."""
    await _some_executions(pg_store, pg_refs)
    asked = await execution_in(pg_store, pg_refs, ExecutionStatus.RUNNING)
    await pg_store.executions.request_cancel(asked)
    await pg_store.executions.request_cancel(asked)
    await wait_for_horizon(pg_store)
    fold = pg_store.projection_context.executions_fold()
    until = await pg_store.projection_context.head_checkpoint()
    assert fold is not None
    assert until is not None
    parts = [part async for part in fold.fold(until, part=4)]
    assert [part.unfolded for part in parts] == [[]] * len(parts)
    assert sum(len(part.rows) for part in parts) == len(ExecutionStatus) * 2 + 2
    assert sum(part.events for part in parts) == await count_events(pg_store)


async def test_sqlite_has_no_fold_of_its_own(store: EventStore) -> None:
    if store.backend.name == "postgresql":
        assert store.projection_context.executions_fold() is not None
    else:
        assert store.projection_context.executions_fold() is None
