"""Run queries (README, "Reading the projection"): every filter, counts, and keyset pages, against a Python oracle."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
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
from projections import ExecutionsView
from tests.helpers import References, count_events, project_everything

if TYPE_CHECKING:
    from collections.abc import Callable

NOW = datetime.now(UTC).replace(microsecond=0)
CUSTOMERS = ("42", "43", "44")


async def _runs(store: EventStore, refs: References) -> list[ExecutionState]:
    """24 runs over two graphs (one in two versions), created an hour apart."""
    graphs = [
        refs.graph,
        await store.graphs.create(name="billing", version="1", definition={}),
        await store.graphs.create(name="billing", version="2", definition={}),
    ]
    chosen = random.Random(7)
    states = []
    for index in range(24):
        run = uuid.uuid4()
        graph = graphs[index % 3]
        labels = {"customer": CUSTOMERS[index % 3]}
        if index % 2:
            labels["env"] = "prod"
        created = NewEvent(
            type="ExecutionCreated",
            data={
                "message_id": str(refs.message.id),
                "graph_id": str(graph.id),
                "thread_id": str(refs.thread.id),
                "labels": labels,
            },
            occurred_at=NOW - timedelta(hours=24 - index),
        )
        await store.append(run, [created], expected_version=0)
        status = chosen.choice(list(ExecutionStatus))
        if status is not ExecutionStatus.PENDING:
            worker = f"worker-{index % 2}"
            if status is ExecutionStatus.CANCELLED:
                await store.executions.cancel(run)
            elif status is ExecutionStatus.FAILED:
                await store.executions.fail(run, error={"type": "E", "message": "m"})
            else:
                await store.executions.start(run, worker_id=worker)
                if status is ExecutionStatus.COMPLETED:
                    await store.executions.complete(run, result=index)
        states.append(await store.executions.get(run))
    await project_everything(store)
    return states


async def _all_pages(
    view: ExecutionsView, *, limit: int, **query: Any
) -> list[ExecutionState]:
    found: list[ExecutionState] = []
    cursor = None
    while True:
        page = await view.list(limit=limit, cursor=cursor, **query)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _graph_names(refs: References) -> dict[uuid.UUID, tuple[str, str]]:
    return {refs.graph.id: (refs.graph.name, refs.graph.version)}


CASES: dict[str, tuple[dict[str, Any], Callable[[ExecutionState], bool]]] = {
    "no filter": ({}, lambda s: True),
    "status": ({"status": "failed"}, lambda s: s.status == "failed"),
    "statuses": (
        {"status": [ExecutionStatus.COMPLETED, "cancelled"]},
        lambda s: s.status in ("completed", "cancelled"),
    ),
    "one label": (
        {"labels": {"customer": "42"}},
        lambda s: s.labels["customer"] == "42",
    ),
    "two labels": (
        {"labels": {"customer": "43", "env": "prod"}},
        lambda s: s.labels == {"customer": "43", "env": "prod"},
    ),
    "worker": ({"worker_id": "worker-1"}, lambda s: s.worker_id == "worker-1"),
    "since a duration": (
        {"since": timedelta(hours=6, minutes=30)},
        lambda s: s.created_at >= NOW - timedelta(hours=6),
    ),
    "since and until": (
        {"since": NOW - timedelta(hours=20), "until": NOW - timedelta(hours=10)},
        lambda s: NOW - timedelta(hours=20) <= s.created_at < NOW - timedelta(hours=10),
    ),
    "status, label and time": (
        {
            "status": ["failed", "completed"],
            "labels": {"env": "prod"},
            "since": timedelta(hours=30),
        },
        lambda s: s.status in ("failed", "completed") and s.labels.get("env") == "prod",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_filter_lists_and_counts_what_python_selects(
    store: EventStore, refs: References, case: str
) -> None:
    states = await _runs(store, refs)
    query, wanted = CASES[case]
    expected = [s for s in states if wanted(s)]
    view = ExecutionsView(store)

    newest = await _all_pages(view, limit=5, **query)
    assert [s.id for s in newest] == [s.id for s in reversed(expected)]
    assert newest == list(reversed(expected))  # the rows are the folds
    oldest = await _all_pages(view, limit=4, order="oldest", **query)
    assert [s.id for s in oldest] == [s.id for s in expected]
    assert await view.count(**query) == len(expected)
    counts = await view.count_by_status(**query)
    assert counts == {
        status: Counter(s.status for s in expected)[status]
        for status in ExecutionStatus
    }


async def test_graph_name_and_version(store: EventStore, refs: References) -> None:
    states = await _runs(store, refs)
    view = ExecutionsView(store)
    billing = {s.id for s in states[1::3]} | {s.id for s in states[2::3]}
    assert {
        s.id for s in await _all_pages(view, limit=7, graph_name="billing")
    } == billing
    v2 = await _all_pages(view, limit=7, graph_name="billing", graph_version="2")
    assert {s.id for s in v2} == {s.id for s in states[2::3]}
    assert await view.count(graph_name="nothing") == 0
    assert await view.count(graph_id=refs.graph.id) == 8


async def test_pages_neither_skip_nor_repeat_while_runs_arrive(
    store: EventStore, refs: References
) -> None:
    """Writers create and project runs between page reads; the first pages hold on."""
    before = await _runs(store, refs)
    view = ExecutionsView(store)
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            await store.executions.create(
                message_id=refs.message.id,
                graph_id=refs.graph.id,
                labels={"customer": "42"},
            )
            await project_everything(store)

    for order in ("newest", "oldest"):
        writers = [asyncio.create_task(writer()) for _ in range(2)]
        seen: list[uuid.UUID] = []
        cursor = None
        try:
            while True:
                page = await view.list(limit=3, cursor=cursor, order=order)
                seen.extend(s.id for s in page.items)
                await asyncio.sleep(0)  # let the writers in between pages
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        finally:
            stop.set()
            await asyncio.gather(*writers)
            stop.clear()
        assert len(seen) == len(set(seen)), "a run was repeated"
        assert {s.id for s in before} <= set(seen), "a run was skipped"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"stauts": "failed"}, "unknown filter 'stauts'"),
        ({"status": "done"}, "unknown status"),
        ({"labels": {"Customer": "42"}}, "label key"),
        ({"labels": {"customer": 42}}, "labels"),
        ({"labels": ["customer"]}, "labels"),
        ({"since": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001
        ({"since": timedelta(hours=-1)}, "0 or more"),
        ({"until": "yesterday"}, "until"),
        ({"graph_name": ""}, "graph_name"),
        ({"worker_id": 5}, "worker_id"),
        ({"graph_id": "not-a-uuid"}, "graph"),
    ],
)
async def test_bad_filters_are_refused_by_every_query(
    store: EventStore, query: dict[str, Any], reason: str
) -> None:
    view = ExecutionsView(store)
    before = await count_events(store)
    for call in (view.list, view.count, view.count_by_status):
        with pytest.raises(ValidationError, match=reason):
            await call(**query)
    assert await count_events(store) == before


async def test_bad_pages_are_refused(store: EventStore, refs: References) -> None:
    await _runs(store, refs)
    view = ExecutionsView(store)
    newest = await view.list(limit=2)
    assert newest.next_cursor is not None
    with pytest.raises(ValidationError, match="same order"):
        await view.list(order="oldest", cursor=newest.next_cursor)
    with pytest.raises(ValidationError, match="order"):
        await view.list(order="random")  # type: ignore[arg-type]
    for limit in (0, 1001, True, "5"):
        with pytest.raises(ValidationError, match="limit"):
            await view.list(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cursor"):
        await view.list(cursor="bm90IGEgY3Vyc29y")
