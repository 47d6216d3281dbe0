"""Reference rows a service may create twice: a retried message, a crew declared at start-up."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import ReferenceConflict, ReferenceNotFound, schema

if TYPE_CHECKING:
    from eventstore import EventStore


async def _rows(store: EventStore, table: sa.Table) -> int:
    async with store.backend.engine.connect() as connection:
        return int(
            (
                await connection.execute(sa.select(sa.func.count()).select_from(table))
            ).scalar_one()
        )


async def test_a_message_created_again_with_its_id_is_the_first_one(
    store: EventStore,
) -> None:
    thread = await store.threads.create(title="t")
    identifier = uuid.uuid4()
    first = await store.messages.create(
        thread_id=thread.id, role="user", content="hello", id=identifier
    )
    again = await store.messages.create(
        thread_id=str(thread.id), role="user", content="hello", id=str(identifier)
    )
    assert again == first
    assert first.id == identifier
    assert await _rows(store, schema.messages) == 1
    assert await store.messages.get(identifier) == first


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"content": "bye"}, "content"),
        ({"role": "assistant"}, "role"),
        ({"role": "assistant", "content": "bye"}, "role and content"),
    ],
)
async def test_a_message_id_reused_for_another_message_is_refused(
    store: EventStore, changes: dict[str, str], named: str
) -> None:
    thread = await store.threads.create(title="t")
    identifier = uuid.uuid4()
    await store.messages.create(
        thread_id=thread.id, role="user", content="hello", id=identifier
    )
    fields = {"role": "user", "content": "hello"} | changes
    with pytest.raises(ReferenceConflict, match=f"with another {named}$") as caught:
        await store.messages.create(thread_id=thread.id, id=identifier, **fields)
    assert caught.value.entity_id == identifier
    assert await _rows(store, schema.messages) == 1


async def test_a_message_id_in_another_thread_is_refused(store: EventStore) -> None:
    one = await store.threads.create(title="a")
    other = await store.threads.create(title="b")
    identifier = uuid.uuid4()
    await store.messages.create(
        thread_id=one.id, role="user", content="x", id=identifier
    )
    with pytest.raises(ReferenceConflict, match="another thread_id"):
        await store.messages.create(
            thread_id=other.id, role="user", content="x", id=identifier
        )


async def test_a_message_with_an_id_still_needs_its_thread(store: EventStore) -> None:
    with pytest.raises(ReferenceNotFound):
        await store.messages.create(
            thread_id=uuid.uuid4(), role="user", content="x", id=uuid.uuid4()
        )
    assert await _rows(store, schema.messages) == 0


async def test_concurrent_retries_of_one_message_record_it_once(
    store: EventStore,
) -> None:
    thread = await store.threads.create(title="t")
    identifier = uuid.uuid4()
    created = await asyncio.gather(
        *(
            store.messages.create(
                thread_id=thread.id, role="user", content="hello", id=identifier
            )
            for _ in range(8)
        )
    )
    assert {message.created_at for message in created} == {created[0].created_at}
    assert await _rows(store, schema.messages) == 1


async def test_get_or_create_finds_the_graph_it_made(store: EventStore) -> None:
    definition = {"agents": ["triage", "refunds"], "budget": 3}
    first = await store.graphs.get_or_create(
        name="billing", version="3", definition=definition
    )
    # A restart: same name, version and definition (keys in another order).
    again = await store.graphs.get_or_create(
        name="billing",
        version=3,
        definition={"budget": 3, "agents": ["triage", "refunds"]},
    )
    assert again == first
    other_version = await store.graphs.get_or_create(
        name="billing", version="4", definition=definition
    )
    assert other_version.id != first.id
    assert await _rows(store, schema.graphs) == 2


async def test_get_or_create_refuses_another_definition(store: EventStore) -> None:
    first = await store.graphs.get_or_create(
        name="billing", version="3", definition={"agents": ["triage"]}
    )
    with pytest.raises(ReferenceConflict, match="another definition") as caught:
        await store.graphs.get_or_create(
            name="billing", version="3", definition={"agents": ["refunds"]}
        )
    assert caught.value.entity_id == first.id
    assert await _rows(store, schema.graphs) == 1


async def test_get_or_create_returns_the_oldest_of_earlier_copies(
    store: EventStore,
) -> None:
    oldest = await store.graphs.create(name="crew", version="1", definition={})
    await store.graphs.create(name="crew", version="1", definition={})
    found = await store.graphs.get_or_create(name="crew", version="1", definition={})
    assert found == oldest
    assert await _rows(store, schema.graphs) == 2


async def test_concurrent_start_ups_create_one_graph(store: EventStore) -> None:
    made = await asyncio.gather(
        *(
            store.graphs.get_or_create(name="crew", version="1", definition={"n": 1})
            for _ in range(8)
        )
    )
    assert len({graph.id for graph in made}) == 1
    assert await _rows(store, schema.graphs) == 1
