"""Times and lengths are the same on both databases: refused or kept whole.

Issue: a year-1 `occurred_at` was written as '1-06-01' on SQLite (the whole
log then failed to read) and read back as 2001 by PostgreSQL's append
function; a worker id over 200 characters was cut short by PostgreSQL's bulk
upsert while SQLite kept it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from eventstore import EventStore, ExecutionStatus, NewEvent, ValidationError
from eventstore.audit.integrity import verify_log
from eventstore.audit.replay import AsOf
from projections import ExecutionsView, Projector
from tests.helpers import count_events, execution_in, make_references

EDGES = [
    datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(1, 6, 1, 12, 30, 0, 5, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC),
    datetime(2026, 12, 3, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
]


@pytest.mark.parametrize("expected_version", [0, None], ids=["known-head", "any"])
async def test_every_representable_time_round_trips_and_verifies(
    url: str, expected_version: int | None
) -> None:
    async with EventStore.open(url) as store:
        stream = uuid.uuid4()
        for n, moment in enumerate(EDGES):
            await store.append(
                stream,
                [NewEvent(type="Note", data={"n": n}, occurred_at=moment)],
                expected_version=None if expected_version is None else n,
                stream_type="note",
            )
        read = [event.occurred_at async for event in store.read_stream(stream)]
        assert read == [moment.astimezone(UTC) for moment in EDGES]
        report = await verify_log(store.backend)
        assert report.ok, report.problems


async def test_an_ancient_execution_is_projected_and_read(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await store.executions.progress(run, step="s")
        await store.append(
            run,
            [
                NewEvent(
                    type="ExecutionCompleted",
                    data={"result": 1},
                    occurred_at=datetime(1, 6, 1, tzinfo=UTC),
                )
            ],
            expected_version=3,
        )
        await Projector(store).run_until_caught_up()
        row = await ExecutionsView(store).get(run)
        assert row.finished_at == datetime(1, 6, 1, tzinfo=UTC)
        assert (await store.executions.get(run)).finished_at == row.finished_at


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        datetime.min.replace(tzinfo=UTC),  # asyncpg's -infinity
        datetime.max.replace(tzinfo=UTC),  # asyncpg's infinity
        datetime(2026, 1, 1),  # noqa: DTZ001 - a naive time is the point
    ],
    ids=["before-year-1-in-utc", "after-9999-in-utc", "min", "max", "naive"],
)
async def test_a_time_outside_the_range_is_refused_and_nothing_written(
    url: str, moment: datetime
) -> None:
    async with EventStore.open(url) as store:
        before = await count_events(store)
        with pytest.raises(ValidationError, match="occurred_at"):
            await store.append(
                uuid.uuid4(),
                [NewEvent(type="Note", data={}, occurred_at=moment)],
                stream_type="note",
            )
        assert await count_events(store) == before


def test_an_as_of_time_outside_the_range_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="as-of"):
        AsOf.parse("0001-01-01T00:00:00+05:00")
    assert AsOf.parse("0001-01-01T00:00:00.000001Z").time == datetime(
        1, 1, 1, 0, 0, 0, 1, tzinfo=UTC
    )


async def test_a_worker_id_is_kept_whole_or_refused(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        executions = store.executions
        longest = "w" * 200
        run = await execution_in(store, refs, ExecutionStatus.PENDING)
        before = await count_events(store)
        with pytest.raises(ValidationError, match="worker_id"):
            await executions.start(run, worker_id=longest + "x")
        assert await count_events(store) == before
        await executions.start(run, worker_id=longest)
        with pytest.raises(ValidationError, match="worker_id"):
            await executions.heartbeat(run, worker_id=longest + "x")
        await executions.heartbeat(run, worker_id=longest)
        await Projector(store).run_until_caught_up()
        assert (await ExecutionsView(store).get(run)).worker_id == longest


async def test_a_metric_the_fold_could_not_sum_is_refused_at_append(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await store.executions.progress(run, step="a", metrics={"x": 2**52})
        before = await count_events(store)
        for value in (2**1023, 2**2000, 1e300):
            with pytest.raises(ValidationError, match="metric 'x'"):
                await store.executions.progress(run, step="b", metrics={"x": value})
        assert await count_events(store) == before
        await store.executions.progress(run, step="c", metrics={"x": 0.5})
        await Projector(store).run_until_caught_up()
        row = await ExecutionsView(store).get(run)
        assert row.metrics["x"] == 2**52 + 0.5
