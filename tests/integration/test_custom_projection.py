"""A read model of the user's own (examples/daily_metrics.py) runs beside executions."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from eventstore import EventStore, StoreSettings
from eventstore.cli.demo_workload import run_workload
from examples.daily_metrics import TERMINAL, DailyMetricsProjection, daily
from projections import ExecutionsProjection, Projector
from tests.helpers import assert_projection_equals_fold, wait_for_horizon

if TYPE_CHECKING:
    from datetime import date
    from uuid import UUID


async def _expected(store: EventStore) -> dict[tuple[UUID, date], dict[str, Any]]:
    graphs: dict[UUID, UUID] = {}
    totals: dict[tuple[UUID, date], dict[str, Any]] = defaultdict(
        lambda: {"created": 0, "completed": 0, "failed": 0, "cancelled": 0,
                 "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    )  # fmt: skip
    async for event in store.read_all():
        if event.type == "ExecutionCreated":
            graphs[event.stream_id] = event.payload().graph_id  # type: ignore[attr-defined]
        if event.stream_id not in graphs:
            continue
        row = totals[graphs[event.stream_id], event.occurred_at.date()]
        if event.type == "ExecutionCreated":
            row["created"] += 1
        if event.type in TERMINAL:
            row[TERMINAL[event.type]] += 1
        metrics = event.data.get("metrics") or {}
        assert isinstance(metrics, dict)
        for name in ("prompt_tokens", "completion_tokens", "cost_usd"):
            row[name] += metrics.get(name, 0)
    return totals


async def test_daily_metrics_equal_an_aggregation_of_the_log(url: str) -> None:
    async with EventStore.open(url, settings=StoreSettings(pool_size=8)) as store:
        metrics = DailyMetricsProjection()
        async with store.backend.begin_write() as connection:
            await metrics.create_tables(connection)
        await run_workload(
            store, executions=40, workers=4, seed=21, on_change=lambda _: None
        )
        await wait_for_horizon(store)
        projector = Projector(
            store, [ExecutionsProjection(store.backend), metrics], batch_size=13,
            partitions=2,
        )  # fmt: skip
        await projector.run_until_caught_up()
        await assert_projection_equals_fold(store)
        async with store.backend.connect_read() as connection:
            rows = {
                (row.graph_id, row.day): {
                    k: v
                    for k, v in row._mapping.items()
                    if k not in ("graph_id", "day")
                }
                for row in await connection.execute(sa.select(daily))
            }
        expected = await _expected(store)
        assert rows.keys() == expected.keys()
        for key, values in expected.items():
            assert rows[key]["cost_usd"] == __import__("pytest").approx(
                values["cost_usd"]
            )
            assert {k: v for k, v in rows[key].items() if k != "cost_usd"} == {
                k: v for k, v in values.items() if k != "cost_usd"
            }
        # Nothing more to fold: running again changes nothing.
        assert await projector.run_until_caught_up() == 0
