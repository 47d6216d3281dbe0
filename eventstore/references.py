"""Threads, messages and graphs: plain reference tables, not event-sourced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID, uuid4

import pydantic
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from eventstore import errors, hashing, schema
from eventstore.arguments import StoredText
from eventstore.cache import BoundedCache
from eventstore.log import as_stream_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.base import Backend

KNOWN_CACHE_SIZE: Final = 10_000


class Thread(BaseModel):
    """A conversation."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    title: StoredText
    created_at: datetime


class Message(BaseModel):
    """A message of a thread; executions run in reply to one."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    thread_id: UUID
    role: StoredText = Field(min_length=1, max_length=64)
    content: StoredText
    created_at: datetime


class Graph(BaseModel):
    """A crew definition: a graph of agents and tasks."""

    model_config = ConfigDict(frozen=True, coerce_numbers_to_str=True)

    id: UUID
    name: StoredText = Field(min_length=1, max_length=200)
    version: StoredText = Field(min_length=1, max_length=64)
    definition: Any
    created_at: datetime


_M = TypeVar("_M", bound=BaseModel)


def _validated(model: type[_M], what: str, **fields: object) -> _M:
    try:
        return model.model_validate(fields)
    except pydantic.ValidationError as exc:
        raise errors.ValidationError.from_pydantic(exc, what) from exc


def _new_graph(name: str, version: str | int, definition: Any) -> tuple[Graph, str]:
    """A new graph row, validated, and its definition's canonical JSON.

    Raises:
        ValidationError: a malformed field, or a definition that is not JSON.
    """
    graph = _validated(
        Graph,
        "graph",
        id=uuid4(),
        name=name,
        version=version,
        definition=definition,
        created_at=datetime.now(UTC),
    )
    return graph, hashing.canonical_json(graph.definition, what="graph definition")


class _Table:
    """Reads shared by the three reference tables."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def _one(
        self, table: sa.Table, entity: str, entity_id: UUID
    ) -> dict[str, Any]:
        await self._backend.ensure_schema()
        async with self._backend.connect_read() as connection:
            row = (
                (
                    await connection.execute(
                        sa.select(table).where(table.c.id == entity_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise errors.ReferenceNotFound(entity=entity, entity_id=entity_id)
        return dict(row)


class Threads(_Table):
    """`store.threads`: conversations."""

    async def create(self, *, title: str) -> Thread:
        """Create a thread.

        Raises:
            ValidationError: the title is not a string, or holds a NUL or a
                lone surrogate.
        """
        thread = _validated(
            Thread, "thread", id=uuid4(), title=title, created_at=datetime.now(UTC)
        )
        await self._backend.ensure_schema()
        async with self._backend.begin_write() as connection:
            await connection.execute(
                sa.insert(schema.threads).values(thread.model_dump())
            )
        return thread

    async def get(self, thread_id: UUID | str) -> Thread:
        """A thread by id.

        Raises:
            ReferenceNotFound: no such thread.
        """
        row = await self._one(schema.threads, "thread", as_stream_id(thread_id))
        return Thread.model_validate(row)


class Messages(_Table):
    """`store.messages`: the messages executions reply to."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        # message id -> thread id, for the existence check of every create.
        self.known_threads: BoundedCache[UUID, UUID] = BoundedCache(KNOWN_CACHE_SIZE)

    async def create(
        self,
        *,
        thread_id: UUID | str,
        role: str,
        content: str,
        id: UUID | str | None = None,
    ) -> Message:
        """Create a message in a thread.

        With `id`, creating is idempotent: a retry of the same message (an
        HTTP request sent twice) returns the message recorded first.

        Raises:
            ValidationError: a malformed field.
            ReferenceNotFound: the thread does not exist; nothing is written.
            ReferenceConflict: a message with this id is recorded with
                another thread, role or content; nothing is written.
        """
        message = _validated(
            Message,
            "message",
            id=uuid4() if id is None else as_stream_id(id),
            thread_id=as_stream_id(thread_id),
            role=role,
            content=content,
            created_at=datetime.now(UTC),
        )
        await self._backend.ensure_schema()
        async with self._backend.begin_write() as connection:
            if id is not None:
                await self._backend.lock_name(connection, f"message:{message.id}")
                recorded = await self._recorded(connection, message)
                if recorded is not None:
                    return recorded
            found = await connection.scalar(
                sa.select(schema.threads.c.id).where(
                    schema.threads.c.id == message.thread_id
                )
            )
            if found is None:
                raise errors.ReferenceNotFound(
                    entity="thread", entity_id=message.thread_id
                )
            await connection.execute(
                sa.insert(schema.messages).values(message.model_dump())
            )
        self.known_threads.put(message.id, message.thread_id)
        return message

    @staticmethod
    async def _recorded(
        connection: AsyncConnection, message: Message
    ) -> Message | None:
        """The message already recorded under `message.id`, if it is the same one.

        Raises:
            ReferenceConflict: it is recorded with other fields.
        """
        table = schema.messages
        row = (
            (await connection.execute(sa.select(table).where(table.c.id == message.id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        recorded = Message.model_validate(dict(row))
        differing = [
            name
            for name in ("thread_id", "role", "content")
            if getattr(recorded, name) != getattr(message, name)
        ]
        if differing:
            raise errors.ReferenceConflict(
                entity="message",
                entity_id=message.id,
                reason=f"with another {' and '.join(differing)}",
            )
        return recorded

    async def get(self, message_id: UUID | str) -> Message:
        """A message by id.

        Raises:
            ReferenceNotFound: no such message.
        """
        row = await self._one(schema.messages, "message", as_stream_id(message_id))
        return Message.model_validate(row)


class Graphs(_Table):
    """`store.graphs`: crew definitions."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.known: BoundedCache[UUID, UUID] = BoundedCache(KNOWN_CACHE_SIZE)

    async def create(self, *, name: str, version: str | int, definition: Any) -> Graph:
        """Create a graph definition.

        Raises:
            ValidationError: a malformed field, or a definition that is not JSON.
        """
        graph, _ = _new_graph(name, version, definition)
        await self._backend.ensure_schema()
        async with self._backend.begin_write() as connection:
            await connection.execute(
                sa.insert(schema.graphs).values(graph.model_dump())
            )
        self.known.put(graph.id, graph.id)
        return graph

    async def get_or_create(
        self, *, name: str, version: str | int, definition: Any
    ) -> Graph:
        """The graph of this name and version, created on first use.

        For a service that declares its crews at start-up: restarting it
        finds the graphs it created before instead of adding copies. When
        several graphs of this name and version exist already (made by
        `create`, which never looks), the oldest is returned.

        Raises:
            ValidationError: a malformed field, or a definition that is not JSON.
            ReferenceConflict: the name and version are recorded with another
                definition; nothing is written.
        """
        graph, wanted = _new_graph(name, version, definition)
        table = schema.graphs
        await self._backend.ensure_schema()
        async with self._backend.begin_write() as connection:
            await self._backend.lock_name(
                connection, f"graph:{len(graph.name)}:{graph.name}:{graph.version}"
            )
            row = (
                (
                    await connection.execute(
                        sa.select(table)
                        .where(
                            table.c.name == graph.name, table.c.version == graph.version
                        )
                        .order_by(table.c.created_at, table.c.id)
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                await connection.execute(sa.insert(table).values(graph.model_dump()))
        if row is not None:
            graph = Graph.model_validate(dict(row))
            if (
                hashing.canonical_json(graph.definition, what="graph definition")
                != wanted
            ):
                raise errors.ReferenceConflict(
                    entity="graph",
                    entity_id=graph.id,
                    reason=(
                        f"as {graph.name!r} version {graph.version!r} "
                        "with another definition"
                    ),
                )
        self.known.put(graph.id, graph.id)
        return graph

    async def get(self, graph_id: UUID | str) -> Graph:
        """A graph by id.

        Raises:
            ReferenceNotFound: no such graph.
        """
        row = await self._one(schema.graphs, "graph", as_stream_id(graph_id))
        return Graph.model_validate(row)


async def execution_context(
    backend: Backend,
    messages: Messages,
    graphs: Graphs,
    *,
    message_id: UUID,
    graph_id: UUID,
) -> UUID:
    """The message's thread id, after proving that message and graph exist.

    Raises:
        ReferenceNotFound: the message or the graph does not exist.
    """
    thread_id: UUID | None = messages.known_threads.get(message_id)
    graph_known = graphs.known.get(graph_id) is not None
    if thread_id is not None and graph_known:
        return thread_id
    await backend.ensure_schema()
    async with backend.connect_read() as connection:
        thread_id = await connection.scalar(
            sa.select(schema.messages.c.thread_id).where(
                schema.messages.c.id == message_id
            )
        )
        if not isinstance(thread_id, UUID):
            raise errors.ReferenceNotFound(entity="message", entity_id=message_id)
        if not graph_known:
            found = await connection.scalar(
                sa.select(schema.graphs.c.id).where(schema.graphs.c.id == graph_id)
            )
            if found is None:
                raise errors.ReferenceNotFound(entity="graph", entity_id=graph_id)
    messages.known_threads.put(message_id, thread_id)
    graphs.known.put(graph_id, graph_id)
    return thread_id
