"""Wrong argument types and values get a typed error naming the argument (issue 11).

Each case below escaped as a raw Python or driver error before (ValueError from
``dict("lots")``, UnicodeEncodeError, TypeError, IndexError, a generic
DatabaseError from PostgreSQL, a wait that never returned). Now each is a
`ValidationError` that names what was wrong, on both databases alike, and
nothing is written: no event, no thread, message, graph or lease row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from eventstore import (
    EventStore,
    ExecutionStatus,
    InvalidTransition,
    NewEvent,
    StoreSettings,
    ValidationError,
    schema,
)
from projections import ExecutionsView
from tests.helpers import (
    References,
    execution_in,
    make_references,
    project_everything,
)

if TYPE_CHECKING:
    from uuid import UUID

# Python refuses to print an integer of more than 4,300 digits (CVE-2020-10735).
HUGE = 10**4301


def untyped(value: object) -> Any:
    """A value of the wrong type, as a caller without a type checker passes it."""
    return value


Call = Callable[[EventStore, References, "UUID"], Awaitable[object]]

CASES: dict[str, tuple[Call, str]] = {
    "metrics as a string": (
        lambda s, r, run: s.executions.progress(run, step="s", metrics=untyped("lots")),
        "metrics: a mapping is required",
    ),
    "a metric beyond a float": (
        lambda s, r, run: s.executions.progress(run, step="s", metrics={"x": 2**2000}),
        "metric 'x' is beyond",
    ),
    "a huge integer in progress detail": (
        lambda s, r, run: s.executions.progress(run, step="s", detail={"n": HUGE}),
        "detail: .*more digits than JSON readers accept",
    ),
    "a huge integer as the step": (
        lambda s, r, run: s.executions.progress(run, step=HUGE),
        r"\$.step: an integer of",
    ),
    "a huge integer in a result": (
        lambda s, r, run: s.executions.complete(run, result=[HUGE]),
        r"result: .*\$\[0\]: an integer of",
    ),
    "a huge integer in inputs": (
        lambda s, r, run: s.executions.create(
            message_id=r.message.id, graph_id=r.graph.id, inputs=HUGE
        ),
        "inputs: .*more digits",
    ),
    "a huge integer in metadata": (
        lambda s, r, run: s.executions.progress(run, step="s", metadata={"k": HUGE}),
        r"invalid metadata: \$.k: an integer of",
    ),
    "a huge integer in a custom event": (
        lambda s, r, run: s.append(
            uuid.uuid4(), [_note({"n": -HUGE})], stream_type="note"
        ),
        r"\$.n: an integer of",
    ),
    "a lone surrogate in an idempotency key": (
        lambda s, r, run: s.executions.create(
            message_id=r.message.id, graph_id=r.graph.id, idempotency_key="k\ud800"
        ),
        "idempotency_key: it must not contain a lone surrogate",
    ),
    "metadata as a list": (
        lambda s, r, run: s.executions.progress(run, step="s", metadata=untyped(["a"])),
        "metadata: a mapping is required, not list",
    ),
    "a NUL in the actor": (
        lambda s, r, run: s.executions.progress(
            run, step="s", metadata={"actor": "\0"}
        ),
        "metadata: actor: .*NUL",
    ),
    "read_all with batch_size 0": (
        lambda s, r, run: _first(s.read_all(batch_size=0)),
        "batch_size 0: an integer from 1",
    ),
    "subscribe with types as one string": (
        lambda s, r, run: _first(s.subscribe(types="ExecutionStarted")),
        "types: a collection",
    ),
    "read_all after a position beyond 64 bits": (
        lambda s, r, run: _first(s.read_all(after=2**70)),
        "invalid after .*71 bits",
    ),
    "read_stream after a version beyond 32 bits": (
        lambda s, r, run: _first(s.read_stream(run, after_version=2**40)),
        "after_version 1099511627776",
    ),
    "expected_version beyond 32 bits": (
        lambda s, r, run: s.append(run, [_note({})], expected_version=2**31),
        "expected_version 2147483648",
    ),
    "schema_version beyond 32 bits": (
        lambda s, r, run: s.append(
            uuid.uuid4(), [_note({}, schema_version=2**40)], stream_type="note"
        ),
        "schema_version 1099511627776",
    ),
    "an attempt beyond 32 bits": (
        lambda s, r, run: s.append(
            uuid.uuid4(),
            [
                NewEvent(
                    type="ExecutionCreated",
                    data={
                        "message_id": str(r.message.id),
                        "graph_id": str(r.graph.id),
                        "thread_id": str(r.thread.id),
                        "attempt": 2**40,
                    },
                )
            ],
        ),
        "attempt: Input should be less than or equal to 2147483647",
    ),
    "a stream type that is not a string": (
        lambda s, r, run: s.append(uuid.uuid4(), [_note({})], stream_type=untyped(5)),
        "invalid stream type 5",
    ),
    "wait with a timeout string": (
        lambda s, r, run: s.executions.wait(run, timeout=untyped("1")),
        "timeout '1'",
    ),
    "wait with a NaN timeout": (
        lambda s, r, run: asyncio.wait_for(
            s.executions.wait(run, timeout=float("nan")), 30
        ),
        "timeout nan",
    ),
    "wait with a negative timeout": (
        lambda s, r, run: s.executions.wait(run, timeout=-1),
        "timeout -1",
    ),
    "wait with a timeout below the floats": (
        lambda s, r, run: s.executions.wait(run, timeout=-(10**400)),
        "timeout .*bits",
    ),
    "list by status 5": (
        lambda s, r, run: ExecutionsView(s).list(status=untyped(5)),
        "unknown status in 5",
    ),
    "list with cursor 5": (
        lambda s, r, run: ExecutionsView(s).list(cursor=untyped(5)),
        "invalid cursor 5",
    ),
    "list created before a string": (
        lambda s, r, run: ExecutionsView(s).list(created_before=untyped("2026")),
        "created_before '2026': a timezone-aware datetime",
    ),
    "a NUL in a thread title": (
        lambda s, r, run: s.threads.create(title="a\0b"),
        "thread: title: .*NUL",
    ),
    "a lone surrogate in a thread title": (
        lambda s, r, run: s.threads.create(title="a\udc00"),
        "thread: title: .*lone surrogate",
    ),
    "a NUL in message content": (
        lambda s, r, run: s.messages.create(
            thread_id=r.thread.id, role="user", content="\0"
        ),
        "message: content: .*NUL",
    ),
    "a NUL in a graph name": (
        lambda s, r, run: s.graphs.create(name="g\0", version="1", definition={}),
        "graph: name: .*NUL",
    ),
    "a huge integer in a graph definition": (
        lambda s, r, run: s.graphs.create(name="g", version="1", definition=[HUGE]),
        r"graph definition: \$\[0\]: an integer of",
    ),
    "a NUL in a heartbeat's worker id": (
        lambda s, r, run: s.executions.heartbeat(run, worker_id="w\0"),
        "worker_id: it must not contain NUL",
    ),
}


def _note(data: dict[str, object], *, schema_version: int | None = None) -> NewEvent:
    return NewEvent(type="Note", data=data, schema_version=schema_version)


async def _first(events: Any) -> None:
    async for _ in events:
        return


TABLES = (
    schema.execution_events,
    schema.threads,
    schema.messages,
    schema.graphs,
    schema.execution_leases,
)


async def _row_counts(store: EventStore) -> dict[str, int]:
    async with store.backend.connect_read() as connection:
        return {
            table.name: int(
                await connection.scalar(sa.select(sa.func.count()).select_from(table))
                or 0
            )
            for table in TABLES
        }


@pytest.mark.parametrize("case", list(CASES))
async def test_a_bad_argument_is_a_validation_error_and_nothing_is_written(
    store: EventStore, refs: References, case: str
) -> None:
    call, message = CASES[case]
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    before = await _row_counts(store)
    with pytest.raises(ValidationError, match=message) as caught:
        await call(store, refs, run)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300
    assert await _row_counts(store) == before
    # The run is untouched and still takes good commands.
    state = await store.executions.progress(run, step="after")
    assert state.status is ExecutionStatus.RUNNING


async def test_an_infinite_timeout_waits_for_the_outcome(
    store: EventStore, refs: References
) -> None:
    run = await execution_in(store, refs, ExecutionStatus.RUNNING)
    waiter = asyncio.create_task(store.executions.wait(run, timeout=float("inf")))
    await asyncio.sleep(0)
    done = await store.executions.complete(run, result=1)
    assert await asyncio.wait_for(waiter, 30) == done


async def test_a_status_filter_takes_one_status_or_any_iterable_of_them(
    store: EventStore, refs: References
) -> None:
    running = await execution_in(store, refs, ExecutionStatus.RUNNING)
    failed = await execution_in(store, refs, ExecutionStatus.FAILED)
    await project_everything(store)
    view = ExecutionsView(store)
    assert [s.id for s in (await view.list(status="running")).items] == [running]
    both = await view.list(status=(s for s in (ExecutionStatus.FAILED, "running")))
    assert {s.id for s in both.items} == {running, failed}
    assert (await view.list(status=[])).items == []


# Issue 11 item 2: with no retries, a command on a remembered state that is
# stale must still end in InvalidTransition: refreshing the memory is not a
# retry. Before the fix these raised "ConcurrencyError: ... at version 2,
# expected 2".


async def test_without_retries_starting_a_running_execution_is_invalid(
    url: str,
) -> None:
    async with EventStore.open(url, settings=StoreSettings(command_retries=0)) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        with pytest.raises(InvalidTransition) as caught:
            await store.executions.start(run, worker_id="w-2")
        assert caught.value.status == "running"
        assert caught.value.event_type == "ExecutionStarted"


async def test_without_retries_a_stale_memory_is_refreshed_not_counted(
    url: str,
) -> None:
    settings = StoreSettings(command_retries=0)
    async with (
        EventStore.open(url, settings=settings) as mine,
        EventStore.open(url, settings=settings) as other,
    ):
        refs = await make_references(mine)
        run = await execution_in(mine, refs, ExecutionStatus.RUNNING)
        # Another process moves the run on behind this store's memory.
        await other.executions.progress(run, step="elsewhere")
        state = await mine.executions.progress(run, step="here")
        assert state.version == 4
        await other.executions.complete(run, result=1)
        with pytest.raises(InvalidTransition) as caught:
            await mine.executions.progress(run, step="late")
        assert caught.value.status == "completed"


@pytest.mark.postgres
async def test_without_retries_the_loser_of_a_real_race_re_decides(
    pg_url: str,
) -> None:
    """Two stores complete and fail one run at once: one wins, the other is told why."""
    settings = StoreSettings(command_retries=0)
    async with (
        EventStore.open(pg_url, settings=settings) as first,
        EventStore.open(pg_url, settings=settings) as second,
    ):
        refs = await make_references(first)
        for _ in range(10):
            run = await execution_in(first, refs, ExecutionStatus.RUNNING)
            await second.executions.get(run)  # both remember the running state
            outcomes = await asyncio.gather(
                first.executions.complete(run, result=1),
                second.executions.fail(run, error={"type": "E", "message": "m"}),
                return_exceptions=True,
            )
            refused = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(refused) == 1, outcomes
            assert isinstance(refused[0], InvalidTransition), refused
