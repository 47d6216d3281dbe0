"""Generated calls of the public API, valid and invalid, on both databases (issue 11).

Every lifecycle command, `store.append` and the reference tables are called
with generated arguments (tests/properties/strategies.py), in any order, on
executions that exist, that do not, and on ids that are not ids. Whatever
comes, each call either succeeds or raises an `EventStoreError`; after a
refusal the log and the reference tables are unchanged (the projection only
follows the log); after a success the state returned and `get()` equal a
fresh fold of the stream, whose hash chain verifies. After each example the
projector folds what was appended and every touched execution's row equals
the fold; `verify_log` checks the whole log now and then and at the end.

One store serves all the examples of a test: a database per example would
make the long run (EVENTSTORE_HYPOTHESIS_PROFILE=long, tests/properties/
conftest.py) cost hours.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from hypothesis import event, given
from hypothesis import strategies as st

from eventstore import (
    EventStore,
    EventStoreError,
    ExecutionState,
    NewEvent,
    fold_events,
    schema,
)
from eventstore.audit.integrity import verify_log
from eventstore.chains import verify_chain
from projections import ExecutionsView
from tests.helpers import project_everything, wait_for_horizon
from tests.properties.strategies import COMMANDS, Known, ValidData

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from tests.helpers import References

FULL_VERIFY_EVERY = 200  # examples between checks of the whole log

COUNTED = (
    schema.execution_events,
    schema.threads,
    schema.messages,
    schema.graphs,
    schema.execution_leases,
)


class World:
    """The store under test and the ids it holds, shared by the examples."""

    def __init__(self, store: EventStore, refs: References) -> None:
        self.store = store
        self.known: dict[str, list[Any]] = {
            "execution": [],
            "thread": [refs.thread.id],
            "message": [refs.message.id],
            "graph": [refs.graph.id],
        }
        self.message_threads: dict[Any, Any] = {refs.message.id: refs.thread.id}
        self.examples = 0

    def resolve(self, value: object) -> Any:
        """A Known placeholder becomes an id of its kind (or a new one if none).

        Mostly one of the newest, so that commands meet runs in every status.
        """
        if isinstance(value, Known):
            pool = self.known[value.kind]
            if not pool:
                return uuid.uuid4()
            newest = value.n % 4 != 0
            return (
                pool[-1 - value.n % min(3, len(pool))]
                if newest
                else pool[value.n % len(pool)]
            )
        return value

    async def new_run(self, *, running: bool) -> UUID:
        """A run created (and started) through the lifecycle, known from now on."""
        executions = self.store.executions
        run = await executions.create(
            message_id=self.known["message"][0], graph_id=self.known["graph"][0]
        )
        if running:
            await executions.start(run, worker_id="worker-0")
        self.known["execution"].append(run)
        return run

    def valid_data(self, event_type: object, stream_id: object) -> dict[str, object]:
        """Well-formed data of a lifecycle type, with references that exist."""
        message = self.known["message"][
            hash(str(stream_id)) % len(self.known["message"])
        ]
        data: dict[str, dict[str, object]] = {
            "ExecutionCreated": {
                "message_id": str(message),
                "graph_id": str(self.known["graph"][0]),
                "thread_id": str(self.message_threads[message]),
            },
            "ExecutionStarted": {"worker_id": "w"},
            "ExecutionProgressed": {"step": 1, "metrics": {"prompt_tokens": 1}},
            "ExecutionCompleted": {"result": None},
            "ExecutionFailed": {"error": {"type": "E", "message": "m"}},
        }
        return data.get(event_type, {}) if isinstance(event_type, str) else {}


@pytest.fixture
async def world(store: EventStore, refs: References) -> AsyncIterator[World]:
    shared = World(store, refs)
    yield shared
    await _verify_whole_log(store)


@given(running=st.booleans(), calls=st.lists(COMMANDS, min_size=1, max_size=6))
async def test_every_call_succeeds_or_is_refused_without_a_trace(
    world: World, running: bool, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    # A fresh run, pending or running, that most generated ids will name.
    run = await world.new_run(running=running)
    touched: set[UUID] = {run}
    for name, arguments in calls:
        await _call(world, name, arguments, touched)
    await project_everything(world.store, within=120)
    view = ExecutionsView(world.store)
    for execution_id in touched:
        assert await view.get(execution_id) == await world.store.executions.get(
            execution_id
        )
    world.examples += 1
    if world.examples % FULL_VERIFY_EVERY == 0:
        await _verify_whole_log(world.store)


async def _call(
    world: World, name: str, arguments: dict[str, Any], touched: set[UUID]
) -> None:
    arguments = {key: world.resolve(value) for key, value in arguments.items()}
    before = await _row_counts(world.store)
    try:
        outcome = await _dispatch(world, name, arguments)
    except EventStoreError as exc:
        event(f"{name}: {type(exc).__name__}")  # --hypothesis-show-statistics
        assert await _row_counts(world.store) == before, f"{name} refused, yet wrote"
        return
    event(f"{name}: ok")
    await _check_success(world, name, arguments, outcome, touched)


async def _dispatch(world: World, name: str, arguments: dict[str, Any]) -> object:
    store = world.store
    if name == "create":
        return await store.executions.create(**arguments)
    if name == "append":
        stream_id = arguments["stream_id"]
        events = [
            NewEvent(
                **{
                    **spec,
                    "data": world.valid_data(spec["type"], stream_id)
                    if isinstance(spec["data"], ValidData)
                    else spec["data"],
                }
            )
            for spec in arguments["events"]
        ]
        return await store.append(
            stream_id,
            events,
            expected_version=arguments["expected_version"],
            stream_type=arguments["stream_type"],
        )
    if name in ("thread", "message", "graph"):
        made: object = await getattr(store, f"{name}s").create(**arguments)
        return made
    rest = dict(arguments)
    command = getattr(store.executions, name)
    result: object = await command(rest.pop("execution_id"), **rest)
    return result


async def _check_success(
    world: World,
    name: str,
    arguments: dict[str, Any],
    outcome: object,
    touched: set[UUID],
) -> None:
    store = world.store
    if name in ("thread", "message", "graph"):
        identifier = getattr(outcome, "id")  # noqa: B009 - three model types
        world.known[name].append(identifier)
        if name == "message":
            world.message_threads[identifier] = getattr(outcome, "thread_id")  # noqa: B009
        return
    streams: list[UUID] = []
    if isinstance(outcome, ExecutionState):
        streams.append(outcome.id)
        assert outcome == _fresh_fold(await store.log.read_stream(outcome.id))
    elif isinstance(outcome, uuid.UUID):  # create, retry
        streams.append(outcome)
        if name == "retry":
            streams.append(uuid.UUID(str(arguments["execution_id"])))
    else:  # an append
        streams.append(uuid.UUID(str(arguments["stream_id"])))
    for stream in streams:
        verify_chain(await store.backend.read_stream_as_stored(stream))
        events = await store.log.read_stream(stream)
        if events and events[0].type == "ExecutionCreated":
            assert await store.executions.get(stream) == _fresh_fold(events)
            touched.add(stream)
            if stream not in world.known["execution"]:
                world.known["execution"].append(stream)


def _fresh_fold(events: list[Any]) -> ExecutionState:
    state = fold_events(events)
    assert state is not None
    return state


async def _row_counts(store: EventStore) -> tuple[int, ...]:
    query = sa.select(
        *(
            sa.select(sa.func.count()).select_from(table).scalar_subquery()
            for table in COUNTED
        )
    )
    async with store.backend.connect_read() as connection:
        return tuple((await connection.execute(query)).one())


async def _verify_whole_log(store: EventStore) -> None:
    await wait_for_horizon(store, within=120)
    report = await verify_log(store.backend)
    assert report.ok, report.problems
