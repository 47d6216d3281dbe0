"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import sqlalchemy as sa

from eventstore import ExecutionStatus, schema
from projections.queries import ExecutionsView

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore import EventStore, ExecutionState, Graph, Message, Thread


@dataclass(frozen=True)
class References:
    thread: Thread
    message: Message
    graph: Graph


async def make_references(store: EventStore) -> References:
    thread = await store.threads.create(title="support chat")
    message = await store.messages.create(
        thread_id=thread.id, role="user", content="summarise the report"
    )
    graph = await store.graphs.create(
        name="summariser", version="1", definition={"agents": ["reader", "writer"]}
    )
    return References(thread=thread, message=message, graph=graph)


async def execution_in(
    store: EventStore, refs: References, status: ExecutionStatus
) -> UUID:
    """A new execution driven to `status` through the lifecycle service."""
    executions = store.executions
    execution_id = await executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id, inputs={"topic": "q3"}
    )
    if status is ExecutionStatus.PENDING:
        return execution_id
    if status is ExecutionStatus.CANCELLED:
        await executions.cancel(execution_id, reason="test")
        return execution_id
    if status is ExecutionStatus.FAILED:
        await executions.fail(execution_id, error={"type": "Boom", "message": "test"})
        return execution_id
    await executions.start(execution_id, worker_id="worker-1")
    if status is ExecutionStatus.COMPLETED:
        await executions.complete(execution_id, result={"ok": True})
    return execution_id


async def count_events(store: EventStore) -> int:
    """How many events the log holds (through SQLAlchemy, not the code under test)."""
    async with store.backend.engine.connect() as connection:
        count = await connection.scalar(
            sa.select(sa.func.count()).select_from(schema.execution_events)
        )
    return int(count or 0)


async def raw_pg(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection to a test database."""
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


async def tamper(url: str, sql: str) -> None:
    """Run SQL on the log behind the immutability triggers' back, as an attacker."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        connection.execute("DROP TRIGGER IF EXISTS execution_events_refuse_update")
        connection.execute("DROP TRIGGER IF EXISTS execution_events_refuse_delete")
        connection.execute(sql)
        connection.commit()
        connection.close()
    else:
        pg = await raw_pg(url)
        try:
            await pg.execute("ALTER TABLE execution_events DISABLE TRIGGER USER")
            await pg.execute(sql)
        finally:
            await pg.close()


async def project_everything(store: EventStore, *, within: float = 30) -> None:
    """Run the projector until it has folded every event appended so far.

    On PostgreSQL a transaction still open anywhere on the server (another
    test's database included) holds the gap-safe horizon back, so "caught
    up" may stop short of the newest events for a moment.
    """
    from projections import Projector

    newest = await count_positions(store)
    projector = Projector(store)
    async with asyncio.timeout(within):
        while True:
            await projector.run_until_caught_up()
            async with store.backend.connect_read() as connection:
                position = await connection.scalar(
                    sa.select(sa.func.max(schema.projection_checkpoints.c.position))
                )
            if (position or 0) >= newest:
                return
            await asyncio.sleep(0.05)


async def count_positions(store: EventStore) -> int:
    """The largest position in the log (0 when empty)."""
    async with store.backend.connect_read() as connection:
        value = await connection.scalar(
            sa.select(sa.func.max(schema.execution_events.c.position))
        )
    return int(value or 0)


async def wait_for_horizon(store: EventStore, *, within: float = 30) -> None:
    """Wait until every event appended so far lies below the gap-safe horizon."""
    newest = await count_positions(store)
    async with asyncio.timeout(within):
        while True:
            head = await store.backend.head_checkpoint()
            if newest == 0 or (head is not None and head.position >= newest):
                return
            await asyncio.sleep(0.02)


async def all_rows(store: EventStore) -> dict[UUID, ExecutionState]:
    view = ExecutionsView(store)
    rows: dict[UUID, ExecutionState] = {}
    cursor = None
    while True:
        page = await view.list(limit=100, cursor=cursor)
        rows.update((state.id, state) for state in page.items)
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


async def assert_projection_equals_fold(
    store: EventStore,
) -> dict[UUID, ExecutionState]:
    """Through the view: one row per execution stream, each a fresh fold."""
    return await assert_rows_are_the_fold(store, await all_rows(store))


async def assert_rows_are_the_fold(
    store: EventStore, rows: dict[UUID, ExecutionState]
) -> dict[UUID, ExecutionState]:
    """`rows` holds one state per execution stream, each equal to `executions.get()`."""
    async with store.backend.engine.connect() as connection:
        streams = set(
            (
                await connection.execute(
                    sa.select(schema.execution_events.c.stream_id)
                    .where(schema.execution_events.c.stream_type == "execution")
                    .distinct()
                )
            ).scalars()
        )
    assert set(rows) == streams
    for execution_id, row in rows.items():
        assert row == await store.executions.get(execution_id)
    return rows


async def event_token_sum(store: EventStore) -> tuple[int, float]:
    tokens, cost = 0, 0.0
    async for event in store.read_all():
        metrics = event.data.get("metrics") or {}
        assert isinstance(metrics, dict)
        for name in ("prompt_tokens", "completion_tokens"):
            value = metrics.get(name, 0)
            assert isinstance(value, int)
            tokens += value
        price = metrics.get("cost_usd", 0)
        assert isinstance(price, int | float)
        cost += price
    return tokens, cost
