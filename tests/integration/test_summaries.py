"""Statistics (README, "Command line", `stats`): every group_by key, checked against the same numbers in Python."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventstore import (
    EventStore,
    ExecutionState,
    ExecutionStatus,
    NewEvent,
    ValidationError,
)
from projections import ExecutionStats
from tests.helpers import References, project_everything

if TYPE_CHECKING:
    from projections import StatsRow

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


async def _runs(store: EventStore, refs: References) -> list[ExecutionState]:
    """30 runs over three graph versions, two customers, two workers and 30 hours."""
    graphs = [
        refs.graph,
        await store.graphs.create(name="billing", version="1", definition={}),
        await store.graphs.create(name="billing", version="2", definition={}),
    ]
    chosen = random.Random(11)
    states = []
    for index in range(30):
        run = uuid.uuid4()
        labels = {"env": "prod"} if index % 4 else {}
        labels["customer"] = "42" if index % 3 else "43"
        created = NewEvent(
            type="ExecutionCreated",
            data={
                "message_id": str(refs.message.id),
                "graph_id": str(graphs[index % 3].id),
                "thread_id": str(refs.thread.id),
                "labels": labels,
            },
            occurred_at=NOW - timedelta(hours=30 - index),
        )
        await store.append(run, [created], expected_version=0)
        if index % 7 == 0:
            states.append(await store.executions.get(run))  # pending
            continue
        await store.executions.start(run, worker_id=f"worker-{index % 2}")
        for step in range(index % 3):
            await store.executions.progress(
                run,
                step=step,
                metrics={"prompt_tokens": chosen.randint(1, 900), "cost_usd": 0.25},
            )
        if index % 5 == 0:
            await store.executions.fail(
                run,
                error={"type": "E", "message": "m"},
                metrics={"completion_tokens": 3},
            )
        else:
            await store.executions.complete(
                run, result=index, metrics={"cost_usd": chosen.random()}
            )
        states.append(await store.executions.get(run))
    await project_everything(store)
    return states


def _cont(values: list[float], fraction: float) -> float | None:
    """percentile_cont: linear between the nearest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _measures(state: ExecutionState) -> dict[str, float | None]:
    first = state.first_step_at
    return {
        "queue_ms": state.queue_ms,
        "run_ms": state.run_ms,
        "total_ms": state.total_ms,
        "first_step_ms": None
        if first is None
        else (first - state.created_at) / timedelta(milliseconds=1),
        "cost_usd_per_run": state.metrics.get("cost_usd"),
    }


def _assert_row(row: StatsRow, states: list[ExecutionState]) -> None:
    assert row.runs == len(states)
    assert row.counts == {
        s: sum(1 for x in states if x.status is s) for s in ExecutionStatus
    }
    failed = row.counts[ExecutionStatus.FAILED]
    ended = failed + row.counts[ExecutionStatus.COMPLETED]
    assert row.error_rate == (pytest.approx(failed / ended) if ended else None)
    for name in ("queue_ms", "run_ms", "total_ms", "first_step_ms", "cost_usd_per_run"):
        values = [m for s in states if (m := _measures(s)[name]) is not None]
        got = getattr(row, name)
        for fraction, field in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            expected = _cont([float(v) for v in values], fraction)
            actual = getattr(got, field)
            if expected is None:
                assert actual is None, (name, field)
            else:
                assert actual == pytest.approx(expected, rel=1e-6, abs=0.01), (
                    name,
                    field,
                )
    assert row.prompt_tokens == sum(s.metrics.get("prompt_tokens", 0) for s in states)
    assert row.completion_tokens == sum(
        s.metrics.get("completion_tokens", 0) for s in states
    )
    assert row.cost_usd == pytest.approx(
        sum(s.metrics.get("cost_usd", 0) for s in states)
    )


KeyOf = Callable[[ExecutionState, dict[uuid.UUID, Any]], tuple[str | None, ...]]
GROUPINGS: dict[str, tuple[list[str], KeyOf]] = {
    "none": ([], lambda s, g: ()),
    "graph": (["graph"], lambda s, g: (g[s.graph_id][0],)),
    "graph_version": (
        ["graph_version"],
        lambda s, g: (f"{g[s.graph_id][0]} v{g[s.graph_id][1]}",),
    ),
    "status": (["status"], lambda s, g: (s.status.value,)),
    "worker": (["worker"], lambda s, g: (s.worker_id,)),
    "label": (["label:env"], lambda s, g: (s.labels.get("env"),)),
    "hour": (["hour"], lambda s, g: (s.created_at.strftime("%Y-%m-%dT%H:00:00Z"),)),
    "day and customer": (
        ["day", "label:customer"],
        lambda s, g: (s.created_at.strftime("%Y-%m-%d"), s.labels["customer"]),
    ),
}


@pytest.mark.parametrize("grouping", list(GROUPINGS))
async def test_summary_matches_python(
    store: EventStore, refs: References, grouping: str
) -> None:
    states = await _runs(store, refs)
    graphs = {}
    for state in states:
        found = await store.graphs.get(state.graph_id)
        graphs[state.graph_id] = (found.name, found.version)
    keys, key_of = GROUPINGS[grouping]
    expected: dict[tuple[str | None, ...], list[ExecutionState]] = defaultdict(list)
    for state in states:
        expected[key_of(state, graphs)].append(state)

    rows = await ExecutionStats(store).summary(group_by=keys)
    assert [tuple(row.group[key] for key in keys) for row in rows] == sorted(
        expected, key=lambda g: tuple((v is None, str(v)) for v in g)
    )
    for row in rows:
        _assert_row(row, expected[tuple(row.group[key] for key in keys)])


async def test_summary_takes_the_filters_of_list(
    store: EventStore, refs: References
) -> None:
    states = await _runs(store, refs)
    since = NOW - timedelta(hours=12)
    [row] = await ExecutionStats(store).summary(
        labels={"customer": "42"}, since=since, status=["completed", "failed"]
    )
    _assert_row(
        row,
        [
            s
            for s in states
            if s.labels["customer"] == "42"
            and s.created_at >= since
            and s.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED)
        ],
    )
    assert await ExecutionStats(store).summary(graph_name="nothing") == []


@pytest.mark.parametrize(
    ("group_by", "reason"),
    [
        ("graph", "a list of keys"),
        (["graph", "graph"], "a key twice"),
        (["month"], "invalid group_by key"),
        (["label:Bad"], "invalid group_by key"),
        ([5], "invalid group_by key"),
    ],
)
async def test_bad_group_by_is_refused(
    store: EventStore, group_by: Any, reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        await ExecutionStats(store).summary(group_by=group_by)
