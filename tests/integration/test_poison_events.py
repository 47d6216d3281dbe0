"""Poison events stop the projector loudly and exactly; transient errors are retried.

A poison event is one a projection cannot apply: a run naming a message that
does not exist (the executions table's foreign key refuses it), a metric that
sums beyond the largest float (the fold refuses it), or anything a custom
projection raises on. The projector applies every event before it, stops
with a ProjectionError naming projection, position and event id, and never
retries it; a transient database error is retried with backoff instead.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import TYPE_CHECKING, Final

import pytest
import sqlalchemy as sa

from eventstore import (
    EventNotApplicable,
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    ProjectionError,
    SchemaNotMigrated,
)
from projections import ExecutionsProjection, Projector
from projections.backoff import MAX_RETRY_DELAY, retry_delay
from projections.queries import ExecutionsView
from tests.cli.runner import run_cli
from tests.helpers import (
    Poison,
    References,
    eventually,
    execution_in,
    poison_metric_overflow,
    poison_unknown_message,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import RecordedEvent

    PoisonMaker = Callable[[EventStore, References], Awaitable[Poison]]

POISONS: Final = pytest.mark.parametrize(
    "make_poison",
    [poison_unknown_message, poison_metric_overflow],
    ids=["unknown-message", "metric-overflow"],
)
WITHIN: Final = 60  # seconds: a deadline, never an expected duration
WITNESS = sa.Table(
    "test_poison_witness",
    sa.MetaData(),
    sa.Column("position", sa.BigInteger, nullable=False),
)


async def create_witness(store: EventStore) -> None:
    async with store.backend.begin_write() as connection:
        await connection.run_sync(lambda sync: WITNESS.create(sync, checkfirst=True))


async def witnessed(store: EventStore) -> list[int]:
    async with store.backend.connect_read() as connection:
        rows = await connection.execute(
            sa.select(WITNESS.c.position).order_by(WITNESS.c.position)
        )
        return list(rows.scalars())


class Picky:
    """Records every event it applies; raises KeyError on the events of one stream."""

    name = "picky"

    def __init__(self, refused: UUID) -> None:
        self.refused = refused

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        for event in events:
            if event.stream_id == self.refused:
                raise KeyError(f"no rule for {event.type}")
        await connection.execute(
            sa.insert(WITNESS), [{"position": event.position} for event in events]
        )

    async def reset(self, connection: AsyncConnection) -> None:
        await connection.execute(sa.delete(WITNESS))


class Flaky:
    """Fails its first batch with a real transient driver error, then records events.

    PostgreSQL raises a serialization failure (40001); on SQLite a second
    connection finds the file locked by the projector's own transaction.
    """

    name = "flaky"

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures = 0

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        if self.failures == 0:
            self.failures += 1
            if self.url.startswith("sqlite"):
                other = sqlite3.connect(
                    self.url.removeprefix("sqlite:///"), timeout=0, isolation_level=None
                )
                try:
                    other.execute("BEGIN IMMEDIATE")  # raises: SQLITE_BUSY
                finally:
                    other.close()
            await connection.exec_driver_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'could not serialize' "
                "USING ERRCODE = '40001'; END $$"
            )
        await connection.execute(
            sa.insert(WITNESS), [{"position": event.position} for event in events]
        )

    async def reset(self, connection: AsyncConnection) -> None:
        await connection.execute(sa.delete(WITNESS))


async def positions(store: EventStore) -> list[int]:
    return [event.position async for event in store.read_all()]


@POISONS
async def test_the_projector_stops_right_at_a_poison_event(
    store: EventStore, refs: References, make_poison: PoisonMaker
) -> None:
    before = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    poison = await make_poison(store, refs)
    after = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    for attempt in range(2):  # stopped again, never skipped
        with pytest.raises(ProjectionError) as stopped:
            await Projector(store, batch_size=1000).run_until_caught_up()
        error = stopped.value
        assert (error.projection, error.position, error.event_id) == (
            "executions",
            poison.position,
            poison.event_id,
        ), (attempt, error)
        assert str(poison.event_id) in str(error)
        assert "\n" not in str(error)
    # Every event before the poison is applied, none after it.
    view = ExecutionsView(store)
    assert (await view.get(before)).status is ExecutionStatus.COMPLETED
    with pytest.raises(ExecutionNotFound):
        await view.get(after)
    if make_poison is poison_metric_overflow:
        row = await view.get(poison.stream_id)
        assert (row.steps_completed, row.metrics) == (1, {"x": 2**1023})


@POISONS
async def test_the_daemon_stops_on_a_poison_event_instead_of_retrying(
    store: EventStore,
    refs: References,
    make_poison: PoisonMaker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    poison = await make_poison(store, refs)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="eventstore.projections.projector"):
        async with asyncio.timeout(WITHIN):
            with pytest.raises(ProjectionError) as stopped:
                await Projector(store, poll_interval=0.01).run(stop)
    assert stopped.value.event_id == poison.event_id
    assert "retrying" not in caplog.text


async def test_running_logs_a_crash_at_once_and_raises_it_on_exit(
    store: EventStore, refs: References, caplog: pytest.LogCaptureFixture
) -> None:
    poison = await poison_unknown_message(store, refs)
    logger = "eventstore.projections.projector"
    with (
        caplog.at_level(logging.ERROR, logger=logger),
        pytest.raises(ProjectionError) as stopped,
    ):
        async with Projector(store, poll_interval=0.01).running():
            # The service goes on; the crash is in its log before shutdown.
            await eventually(
                lambda: any(
                    record.name == logger and "projector stopped" in record.message
                    for record in caplog.records
                ),
                "logged the crash",
                within=WITHIN,
            )
    assert stopped.value.event_id == poison.event_id
    (record,) = [r for r in caplog.records if r.name == logger]
    assert record.exc_info is not None
    assert record.exc_info[1] is stopped.value


async def test_running_projects_in_the_background_and_stops_cleanly(
    store: EventStore, refs: References
) -> None:
    view = ExecutionsView(store)
    async with Projector(store, poll_interval=0.01).running():
        run = await execution_in(store, refs, ExecutionStatus.COMPLETED)

        async def projected() -> bool:
            try:
                return (await view.get(run)).status is ExecutionStatus.COMPLETED
            except ExecutionNotFound:
                return False

        await eventually(projected, "projected the run", within=WITHIN)


async def test_a_projection_that_raises_stops_at_its_first_failing_event(
    store: EventStore, refs: References
) -> None:
    await create_witness(store)
    for _ in range(3):
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
    refused = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(store)
    log = await positions(store)
    history = await store.executions.history(refused)
    first = history[0]
    projector = Projector(
        store, [ExecutionsProjection(store.backend), Picky(refused)], batch_size=500
    )
    with pytest.raises(ProjectionError) as stopped:
        await projector.run_until_caught_up()
    error = stopped.value
    assert (error.projection, error.position, error.event_id) == (
        "picky",
        first.position,
        first.event_id,
    )
    assert error.reason.startswith("KeyError: "), error.reason
    assert await witnessed(store) == log[: log.index(first.position)]


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
async def test_the_projection_stands_right_before_the_poison_whatever_the_batch(
    store: EventStore, refs: References, batch_size: int
) -> None:
    await create_witness(store)
    runs = [await execution_in(store, refs, ExecutionStatus.RUNNING) for _ in range(4)]
    refused = runs[2]
    await wait_for_horizon(store)
    log = await positions(store)
    first = (await store.executions.history(refused))[0]
    with pytest.raises(ProjectionError) as stopped:
        await Projector(
            store, [Picky(refused)], batch_size=batch_size
        ).run_until_caught_up()
    assert stopped.value.position == first.position
    assert await witnessed(store) == log[: log.index(first.position)]


async def test_transient_errors_are_retried(url: str, refs: References) -> None:
    async with EventStore.open(url) as store:
        await create_witness(store)
        for _ in range(3):
            await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await wait_for_horizon(store)
        flaky = Flaky(url)
        projector = Projector(store, [flaky], poll_interval=0.01)
        stop = asyncio.Event()
        daemon = asyncio.create_task(projector.run(stop))
        want = await positions(store)
        try:
            async with asyncio.timeout(WITHIN):
                while await witnessed(store) != want:
                    assert not daemon.done(), daemon
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await daemon  # stopped cleanly: no error escaped
        assert flaky.failures == 1


def test_backoff_is_capped_and_jittered() -> None:
    delays = [retry_delay(0.5, failures) for failures in range(200)]
    for failures, delay in enumerate(delays):
        ceiling = min(MAX_RETRY_DELAY, 0.5 * 2**failures)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays[10:])) > 1  # jittered, not one fixed value


async def test_get_and_audit_of_a_poisoned_run_are_typed(
    url: str, refs: References
) -> None:
    async with EventStore.open(url) as store:
        poison = await poison_metric_overflow(store, refs)
        with pytest.raises(EventNotApplicable) as refused:
            await store.executions.get(poison.stream_id)
        assert (refused.value.position, refused.value.event_id) == (
            poison.position,
            poison.event_id,
        )
        assert len(await store.executions.history(poison.stream_id)) == 5
    audited = run_cli("audit", str(poison.stream_id), "--url", url)
    assert audited.returncode == 1, audited.stdout + audited.stderr
    lines = audited.stderr.strip().splitlines()
    assert len(lines) == 1, audited.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in audited.stderr


@POISONS
def test_project_exits_1_with_one_line_naming_the_poison(
    url: str, poisoned: Poison, make_poison: PoisonMaker
) -> None:
    del make_poison  # used by the `poisoned` fixture
    for daemon in (False, True):
        args = ["project", "--url", url, "--poll-interval", "0.05"]
        done = run_cli(
            *args, *([] if daemon else ["--until-caught-up"]), timeout=WITHIN
        )
        assert done.returncode == 1, (daemon, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith(
            f"error: projection executions stopped at position {poisoned.position} "
            f"(event {poisoned.event_id}): "
        ), errors
        assert "Traceback" not in done.stderr
        assert "retrying" not in done.stderr


@pytest.fixture
async def poisoned(url: str, make_poison: PoisonMaker, refs: References) -> Poison:
    async with EventStore.open(url) as store:
        return await make_poison(store, refs)


class Unmigrated:
    """Reads a table that does not exist: the database's fault, not an event's."""

    name = "unmigrated"

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        del events
        await connection.exec_driver_sql("SELECT * FROM no_such_table")

    async def reset(self, connection: AsyncConnection) -> None:
        del connection


@pytest.mark.postgres
async def test_a_missing_table_is_not_blamed_on_an_event(
    pg_store: EventStore, pg_refs: References
) -> None:
    await execution_in(pg_store, pg_refs, ExecutionStatus.COMPLETED)
    await wait_for_horizon(pg_store)
    with pytest.raises(SchemaNotMigrated):
        await Projector(pg_store, [Unmigrated()]).run_until_caught_up()
