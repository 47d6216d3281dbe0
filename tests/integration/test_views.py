"""ExecutionsView: get, filters and keyset pagination over the projection; stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from eventstore import EventStore, ExecutionNotFound, ExecutionStatus, ValidationError
from projections import ExecutionsView, Projector
from projections.stats import execution_stats
from tests.helpers import References, execution_in

if TYPE_CHECKING:
    import uuid


async def test_filters_and_pages(store: EventStore, refs: References) -> None:
    other_thread = await store.threads.create(title="other")
    other_message = await store.messages.create(
        thread_id=other_thread.id, role="user", content="x"
    )
    other_graph = await store.graphs.create(name="other", version=2, definition={})
    created: dict[uuid.UUID, ExecutionStatus] = {}
    for status in list(ExecutionStatus) * 3:
        created[await execution_in(store, refs, status)] = status
    elsewhere = await store.executions.create(
        message_id=other_message.id, graph_id=other_graph.id
    )
    await Projector(store).run_until_caught_up()
    view = ExecutionsView(store)

    everything = []
    cursor = None
    while True:
        page = await view.list(limit=4, cursor=cursor)
        assert len(page.items) <= 4
        everything.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(everything) == 16
    assert len({s.id for s in everything}) == 16
    keys = [(s.created_at, s.id) for s in everything]
    assert keys == sorted(keys, reverse=True)

    running = await view.list(status="running")
    assert {s.id for s in running.items} == {
        i for i, s in created.items() if s == "running"
    }
    ended = await view.list(status=[ExecutionStatus.FAILED, "cancelled"])
    assert len(ended.items) == 6
    assert [s.id for s in (await view.list(graph_id=other_graph.id)).items] == [
        elsewhere
    ]
    assert [s.id for s in (await view.list(thread_id=other_thread.id)).items] == [
        elsewhere
    ]
    assert [
        s.id for s in (await view.list(message_id=str(other_message.id))).items
    ] == [elsewhere]
    assert len((await view.list(message_id=refs.message.id, limit=1000)).items) == 15
    middle = everything[8].created_at
    newer = await view.list(created_after=middle, limit=1000)
    older = await view.list(created_before=middle, limit=1000)
    assert all(s.created_at > middle for s in newer.items)
    assert all(s.created_at < middle for s in older.items)
    assert len(newer.items) + len(older.items) == 15
    future = datetime.now(UTC) + timedelta(days=1)
    assert (await view.list(created_after=future)).items == []

    one = everything[0]
    assert await view.get(one.id) == one
    assert await view.get(str(one.id)) == await store.executions.get(one.id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "paused"}, "unknown status"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"graph_id": "nope"}, "UUID"),
        ({"created_after": datetime(2026, 1, 1)}, "timezone-aware"),  # noqa: DTZ001
    ],
)
async def test_bad_list_arguments_are_refused(
    store: EventStore, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await ExecutionsView(store).list(**kwargs)  # type: ignore[arg-type]


async def test_get_of_an_unprojected_execution(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.PENDING)
    with pytest.raises(ExecutionNotFound):
        await ExecutionsView(store).get(execution_id)
    await Projector(store).run_until_caught_up()
    assert (
        await ExecutionsView(store).get(execution_id)
    ).status is ExecutionStatus.PENDING


async def test_stats_count_and_measure(store: EventStore, refs: References) -> None:
    for status in [*ExecutionStatus, ExecutionStatus.COMPLETED]:
        execution_id = await execution_in(store, refs, status)
        if status is ExecutionStatus.RUNNING:
            await store.executions.progress(
                execution_id, step="a", metrics={"prompt_tokens": 7, "cost_usd": 0.5}
            )
    await Projector(store).run_until_caught_up()
    stats = await execution_stats(store)
    assert stats.counts == {
        ExecutionStatus.PENDING: 1,
        ExecutionStatus.RUNNING: 1,
        ExecutionStatus.COMPLETED: 2,
        ExecutionStatus.FAILED: 1,
        ExecutionStatus.CANCELLED: 1,
    }
    [graph] = stats.graphs
    assert graph.graph_id == refs.graph.id
    assert graph.counts == stats.counts
    assert graph.prompt_tokens == 7
    assert graph.cost_usd == pytest.approx(0.5)
    rows = (await ExecutionsView(store).list(limit=100)).items
    totals = sorted(r.total_ms for r in rows if r.total_ms is not None)
    assert graph.total_ms.p50 == pytest.approx(_percentile(totals, 0.5))
    assert graph.total_ms.p99 == pytest.approx(_percentile(totals, 0.99))
    runs = sorted(r.run_ms for r in rows if r.run_ms is not None)
    assert graph.run_ms.p95 == pytest.approx(_percentile(runs, 0.95))


def _percentile(ordered: list[int], fraction: float) -> float:
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
