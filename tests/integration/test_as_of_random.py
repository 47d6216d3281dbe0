"""The state as of random positions and times equals a fold of the prefix.

A few dozen executions are driven through the lifecycle API in a random
interleaving (some commands concurrent, on distinct executions). Then, for
many random moments (positions, in gaps and beyond the head; times exactly
on, just before and between the recorded_at values read back from the log,
before the first event and after the last, in random UTC offsets):

- one execution as of the moment (`state_as_of`, `eventstore audit ID
  --as-of X --json`) equals `fold_events(history[:k])`, k the number of the
  execution's events recorded by then, counted here;
- the store-wide statuses (`statuses_as_of`, `eventstore audit --as-of X
  --json`) equal that fold for every stream: status, the occurred_at of the
  event that set it, and its version.

The seed differs per run and is in every assertion message; set
EVENTSTORE_TEST_SEED to replay a failure's sequence of commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from eventstore import ExecutionStatus, NewEvent, fold_events
from eventstore.audit.replay import AsOf, state_as_of, statuses_as_of
from tests.cli.runner import run_cli
from tests.helpers import make_references, raw_pg

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator, Sequence
    from uuid import UUID

    from eventstore import EventStore, ExecutionState, RecordedEvent
    from tests.helpers import References

# Written out here, not taken from the code under test.
STATUS_SETTING = {
    "ExecutionCreated": ExecutionStatus.PENDING,
    "ExecutionStarted": ExecutionStatus.RUNNING,
    "ExecutionCompleted": ExecutionStatus.COMPLETED,
    "ExecutionFailed": ExecutionStatus.FAILED,
    "ExecutionCancelled": ExecutionStatus.CANCELLED,
}
STEPS: list[str | int] = ["read", "plan", "write", 3]
OFFSETS = [timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)]

Histories = dict["UUID", list["RecordedEvent"]]


def seed_for_this_run() -> int:
    """A new seed per run, unless EVENTSTORE_TEST_SEED replays one."""
    given = os.environ.get("EVENTSTORE_TEST_SEED")
    return int(given) if given else int.from_bytes(os.urandom(4), "big")


@contextlib.contextmanager
def reporting(seed: int) -> Iterator[str]:
    """Name the seed on whatever fails inside (an error as well as an assertion)."""
    about = f"seed {seed} (EVENTSTORE_TEST_SEED={seed} replays it)"
    try:
        yield about
    except BaseException as exc:
        exc.add_note(about)
        raise


def included(event: RecordedEvent, moment: AsOf) -> bool:
    """Whether the event was in the log at the moment (the reading of docs/AUDIT.md, "Replay any moment")."""
    if moment.position is not None:
        return event.position <= moment.position
    if moment.time is not None:
        return event.recorded_at <= moment.time
    return True  # AsOf(): now


def prefix_length(history: Sequence[RecordedEvent], moment: AsOf) -> int:
    """How many of a stream's events were in the log at the moment."""
    return sum(1 for event in history if included(event, moment))


def reference_state(
    history: Sequence[RecordedEvent], moment: AsOf
) -> ExecutionState | None:
    """The fold of the stream's prefix at the moment."""
    return fold_events(history[: prefix_length(history, moment)])


def reference_statuses(
    histories: Histories, moment: AsOf
) -> dict[UUID, tuple[ExecutionStatus, datetime, int]]:
    """Each stream replayed to the moment: status, since (occurred_at), version."""
    statuses = {}
    for execution_id, history in histories.items():
        prefix = history[: prefix_length(history, moment)]
        setting = [event for event in prefix if event.type in STATUS_SETTING]
        if not setting:
            continue
        last = setting[-1]
        state = fold_events(prefix)
        assert state is not None
        assert state.status is STATUS_SETTING[last.type]
        statuses[execution_id] = (state.status, last.occurred_at, last.version)
    return statuses


def check_premises(histories: Histories) -> None:
    """Each stream's versions run 1..n, in increasing positions and recorded_at.

    With these, "the events in the log at the moment" is a prefix of each
    stream, so counting them (as the references do) picks the prefix.
    """
    for execution_id, history in histories.items():
        assert [e.version for e in history] == list(range(1, len(history) + 1))
        for before, after in itertools.pairwise(history):
            assert before.position < after.position, execution_id
            assert before.recorded_at <= after.recorded_at, execution_id


@dataclass
class Workload:
    """What the random driver did: the executions and the states it was handed."""

    ids: list[UUID] = field(default_factory=list)
    # (execution, version) -> the state a command returned when it wrote it
    returned: dict[tuple[UUID, int], ExecutionState] = field(default_factory=dict)


def _metrics(rng: random.Random) -> dict[str, float]:
    names = ["prompt_tokens", "completion_tokens", "cost_usd", "tool_calls"]
    metrics: dict[str, float] = {}
    for name in rng.sample(names, k=rng.randint(0, len(names))):
        metrics[name] = (
            round(rng.random() / 50, 6) if name == "cost_usd" else rng.randint(0, 900)
        )
    return metrics


async def drive(
    store: EventStore, rng: random.Random, *, executions: int = 36, steps: int = 200
) -> Workload:
    """Create `executions` and move them on at random through the lifecycle API."""
    refs = await make_references(store)
    other = await store.messages.create(
        thread_id=refs.thread.id, role="user", content="and translate it"
    )
    graph = await store.graphs.create(
        name="translator", version="2", definition={"agents": ["translator"]}
    )
    messages, graphs = [refs.message.id, other.id], [refs.graph.id, graph.id]
    lifecycle = store.executions
    work = Workload()
    status: dict[UUID, ExecutionStatus] = {}
    retried: set[UUID] = set()

    async def run(command: Awaitable[ExecutionState]) -> None:
        state = await command
        work.returned[(state.id, state.version)] = state
        status[state.id] = state.status

    def command_for(execution_id: UUID) -> Awaitable[None] | None:
        current = status[execution_id]
        roll = rng.random()
        if current is ExecutionStatus.PENDING:
            if roll < 0.55:
                return run(
                    lifecycle.start(execution_id, worker_id=f"w{rng.randint(1, 4)}")
                )
            if roll < 0.7:
                return run(
                    lifecycle.fail(
                        execution_id, error={"type": "Queue", "message": "lost"}
                    )
                )
            if roll < 0.85:
                return run(lifecycle.request_cancel(execution_id, reason="user"))
            return run(lifecycle.cancel(execution_id, reason="shutdown"))
        if current is ExecutionStatus.RUNNING:
            if roll < 0.6:
                return run(
                    lifecycle.progress(
                        execution_id,
                        step=rng.choice(STEPS),
                        detail=rng.choice([None, {"page": rng.randint(1, 9)}]),
                        metrics=_metrics(rng),
                    )
                )
            if roll < 0.72:
                return run(
                    lifecycle.complete(
                        execution_id,
                        result={"summary": f"r{rng.randint(0, 99)}"},
                        metrics=_metrics(rng),
                    )
                )
            if roll < 0.82:
                return run(
                    lifecycle.fail(
                        execution_id,
                        error={
                            "type": "ToolError",
                            "message": "timeout",
                            "retryable": rng.random() < 0.5,
                        },
                        metrics=_metrics(rng),
                    )
                )
            if roll < 0.92:
                return run(lifecycle.request_cancel(execution_id, reason="user"))
            return run(lifecycle.cancel(execution_id, reason="acknowledged"))
        if current is ExecutionStatus.FAILED and execution_id not in retried:
            retried.add(execution_id)
            return retry(execution_id)
        return None

    async def create() -> None:
        execution_id = await lifecycle.create(
            message_id=rng.choice(messages),
            graph_id=rng.choice(graphs),
            inputs=rng.choice([None, {"topic": f"t{rng.randint(0, 9)}"}, [1, 2.5]]),
        )
        work.ids.append(execution_id)
        status[execution_id] = ExecutionStatus.PENDING

    async def retry(execution_id: UUID) -> None:
        new_id = await lifecycle.retry(execution_id)
        work.ids.append(new_id)
        status[new_id] = ExecutionStatus.PENDING

    step = 0
    while step < steps or len(work.ids) < executions:
        step += 1
        if len(work.ids) < executions and (rng.random() < 0.3 or not work.ids):
            await create()
            continue
        movable = [
            i
            for i in work.ids
            if not status[i].is_terminal
            or (status[i] is ExecutionStatus.FAILED and i not in retried)
        ]
        if not movable:
            continue
        chosen = rng.sample(movable, k=min(len(movable), rng.choice([1, 1, 1, 2, 3])))
        commands = [c for c in (command_for(i) for i in chosen) if c is not None]
        await asyncio.gather(*commands)  # distinct executions: no race between them
        if rng.random() < 0.15:
            await asyncio.sleep(0.003)  # room between recorded_at values
    return work


def _in_offset(moment: datetime, rng: random.Random) -> datetime:
    return moment.astimezone(timezone(rng.choice(OFFSETS)))


def random_moments(
    events: Sequence[RecordedEvent], rng: random.Random, *, count: int = 40
) -> list[AsOf]:
    """Positions and times on, just before, between, before and after the events."""
    head = events[-1].position
    positions = {0, 1, head, head + 7, *(rng.randint(1, head) for _ in range(count))}
    times = sorted({event.recorded_at for event in events})
    moments = [
        times[0] - timedelta(days=1),
        times[0] - timedelta(microseconds=1),
        times[0],
        times[-1],
        times[-1] + timedelta(microseconds=1),
        times[-1] + timedelta(days=1),
    ]
    for _ in range(count // 2):
        index = rng.randrange(len(times))
        moments.append(times[index])
        moments.append(times[index] - timedelta(microseconds=1))
        if index + 1 < len(times):
            moments.append(times[index] + (times[index + 1] - times[index]) / 2)
    span = times[-1] - times[0]
    moments += [times[0] + span * rng.random() for _ in range(count // 2)]
    return [AsOf(position=p) for p in sorted(positions)] + [
        AsOf(time=_in_offset(moment, rng)) for moment in moments
    ]


async def built(
    store: EventStore, rng: random.Random
) -> tuple[Workload, Histories, list[RecordedEvent]]:
    """The random workload, each execution's history, and every event by position."""
    work = await drive(store, rng)
    histories = {i: await store.executions.history(i) for i in work.ids}
    check_premises(histories)
    events = sorted(
        (e for history in histories.values() for e in history),
        key=lambda e: e.position,
    )
    return work, histories, events


def _argument(moment: AsOf) -> str:
    if moment.position is not None:
        return str(moment.position)
    assert moment.time is not None
    return moment.time.isoformat()


async def test_the_state_as_of_random_moments_is_the_fold_of_the_prefix(
    store: EventStore, url: str
) -> None:
    seed = seed_for_this_run()
    with reporting(seed) as about:
        await _one_execution_as_of(store, url, random.Random(seed), about)


async def _one_execution_as_of(
    store: EventStore, url: str, rng: random.Random, about: str
) -> None:
    work, histories, events = await built(store, rng)
    # What each command handed back is the fold of the stream up to its event.
    for (execution_id, version), state in work.returned.items():
        assert fold_events(histories[execution_id][:version]) == state, about

    moments = random_moments(events, rng)
    for moment in moments:
        for execution_id, history in histories.items():
            expected = reference_state(history, moment)
            assert state_as_of(history, moment) == expected, (
                f"{about}: {execution_id} as of {moment}"
            )

    # The command line, for a sample (each run is a process).
    for moment in rng.sample(moments, k=6):
        execution_id = rng.choice(work.ids)
        history = histories[execution_id]
        done = run_cli(
            "audit",
            str(execution_id),
            "--as-of",
            _argument(moment),
            "--json",
            "--url",
            url,
        )
        assert done.returncode == 0, f"{about}: {done.stderr}"
        shown = json.loads(done.stdout)
        expected = reference_state(history, moment)
        where = f"{about}: audit {execution_id} --as-of {_argument(moment)}"
        assert shown["state"] == (
            None if expected is None else expected.model_dump(mode="json")
        ), where
        assert [e["position"] for e in shown["events"]] == [
            e.position for e in history[: prefix_length(history, moment)]
        ], where


async def test_store_wide_as_of_random_moments_is_every_stream_replayed(
    store: EventStore, url: str
) -> None:
    seed = seed_for_this_run()
    with reporting(seed) as about:
        await _store_as_of(store, url, random.Random(seed), about)


async def _store_as_of(
    store: EventStore, url: str, rng: random.Random, about: str
) -> None:
    work, histories, events = await built(store, rng)
    moments = [*random_moments(events, rng), AsOf()]
    for moment in moments:
        found = {
            s.execution_id: (s.status, s.since, s.version)
            for s in await statuses_as_of(store.backend, moment)
        }
        assert found == reference_statuses(histories, moment), (
            f"{about}: as of {moment}"
        )
    now = {s.execution_id: s.status for s in await statuses_as_of(store.backend)}
    assert now == {i: (await store.executions.get(i)).status for i in work.ids}

    for moment in rng.sample(moments[:-1], k=3):
        done = run_cli("audit", "--as-of", _argument(moment), "--json", "--url", url)
        assert done.returncode == 0, f"{about}: {done.stderr}"
        shown: list[dict[str, Any]] = json.loads(done.stdout)["executions"]
        assert {
            row["execution_id"]: (
                row["status"],
                datetime.fromisoformat(row["since"]).astimezone(UTC),
                row["version"],
            )
            for row in shown
        } == {
            str(i): (status.value, since, version)
            for i, (status, since, version) in reference_statuses(
                histories, moment
            ).items()
        }, f"{about}: audit --as-of {_argument(moment)}"


async def test_recorded_at_never_runs_backwards_in_a_stream(
    pg_store: EventStore, pg_refs: References, pg_url: str
) -> None:
    store = pg_store
    execution_id = await store.executions.create(
        message_id=pg_refs.message.id, graph_id=pg_refs.graph.id
    )
    lock = "hashtextextended($1::text, 0)"
    holder = await raw_pg(pg_url)  # another any-version writer of the stream
    try:
        await holder.execute(f"SELECT pg_advisory_lock({lock})", str(execution_id))
        completed = NewEvent(type="ExecutionCompleted", data={"result": 1})
        late = asyncio.create_task(
            store.append(execution_id, [completed], expected_version=None)
        )
        async with asyncio.timeout(10):  # until the append waits for the lock
            while True:
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                if waiting:
                    break
                await asyncio.sleep(0.01)
        await store.executions.start(execution_id, worker_id="w")  # version 2
        await holder.execute(f"SELECT pg_advisory_unlock({lock})", str(execution_id))
        await late  # version 3
    finally:
        await holder.close()
    history = await store.executions.history(execution_id)
    moment = AsOf(time=history[2].recorded_at)
    state = state_as_of(history, moment)
    statuses = await statuses_as_of(store.backend, moment)
    assert [(s.version, s.status) for s in statuses] == [
        (state.version, state.status) if state else None
    ]
    check_premises({execution_id: history})
