"""Small builders shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import sqlalchemy as sa

from eventstore import ExecutionStatus, schema

if TYPE_CHECKING:
    from uuid import UUID

    from eventstore import EventStore, Graph, Message, Thread


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
