"""The projection's batch write: forward-only, JSON None as SQL NULL, all or nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from eventstore import DatabaseError, ExecutionStatus, schema
from projections.executions import COLUMNS

if TYPE_CHECKING:
    from eventstore import EventStore
    from tests.helpers import References

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
table = schema.executions


def row(refs: References, *, version: int, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "message_id": refs.message.id,
        "graph_id": refs.graph.id,
        "thread_id": refs.thread.id,
        "status": ExecutionStatus.RUNNING,
        "inputs": None,
        "result": None,
        "error": None,
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=1),
        "finished_at": None,
        "cancel_requested_at": None,
        "worker_id": "w-1",
        "attempt": 1,
        "retry_of": None,
        "queue_ms": 1000,
        "run_ms": None,
        "total_ms": None,
        "steps_completed": 0,
        "metrics": {},
        "version": version,
        "last_position": version * 10,
        "labels": {"customer": "42"},
        "first_step_at": None,
    }
    return {**base, **changes}


async def stored(store: EventStore) -> dict[uuid.UUID, dict[str, Any]]:
    async with store.backend.connect_read() as connection:
        rows = await connection.execute(sa.select(table))
        return {r["id"]: dict(r) for r in rows.mappings()}


async def upsert(store: EventStore, rows: list[dict[str, Any]]) -> None:
    async with store.backend.begin_write() as connection:
        await store.backend.upsert_rows(connection, table, rows, guard="version")


async def test_rows_are_inserted_then_only_moved_forward(
    store: EventStore, refs: References
) -> None:
    first = row(refs, version=2, inputs={"q": [1, None, "x"]}, metrics={"t": 1.5})
    second = row(refs, version=3, worker_id=None, queue_ms=None)
    await upsert(store, [first, second])
    assert await stored(store) == {
        first["id"]: {c: first[c] for c in COLUMNS},
        second["id"]: {c: second[c] for c in COLUMNS},
    }

    older = {**first, "version": 1, "status": ExecutionStatus.PENDING}
    same = {**second, "steps_completed": 99}  # same version: not newer
    newer = {
        **second,
        "version": 4,
        "status": ExecutionStatus.COMPLETED,
        "result": {"ok": True},
        "finished_at": T0 + timedelta(seconds=9),
        "metrics": {"t": 2, "cost": 0.25},
    }
    await upsert(store, [older])
    await upsert(store, [same])
    await upsert(store, [newer])
    after = await stored(store)
    assert after[first["id"]]["version"] == 2
    assert after[first["id"]]["status"] == "running"
    assert after[second["id"]] == {c: newer[c] for c in COLUMNS}
    await upsert(store, [])  # nothing to write is not an error
    assert await stored(store) == after


async def test_python_none_is_sql_null_in_nullable_json_columns(
    store: EventStore, refs: References
) -> None:
    nothing = row(refs, version=1)
    json_null_inside = row(refs, version=1, result={"value": None}, error={"a": []})
    await upsert(store, [nothing, json_null_inside])
    async with store.backend.connect_read() as connection:
        null_results = await connection.scalars(
            sa.select(table.c.id).where(table.c.result.is_(None))
        )
        assert set(null_results) == {nothing["id"]}
    assert (await stored(store))[json_null_inside["id"]]["result"] == {"value": None}


async def test_a_failing_row_writes_nothing_of_its_batch(
    store: EventStore, refs: References
) -> None:
    good = row(refs, version=1)
    orphan = row(refs, version=1, message_id=uuid.uuid4())  # no such message
    with pytest.raises(DatabaseError):
        await upsert(store, [good, orphan])
    assert await stored(store) == {}
