"""Rebuild a projection from the log: empty it and replay, in one transaction.

Readers keep seeing the old rows until the transaction commits (on SQLite,
writers wait for it). The zero-downtime shadow-table rebuild is a later step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections import checkpoints

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore import Checkpoint, EventStore
    from projections.base import Projection

DEFAULT_BATCH = 5000


async def rebuild(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Replay the whole log into an emptied projection.

    Args:
        store: the store whose log is replayed.
        projection: the read model to rebuild.
        batch_size: events per read.
        on_batch: called with (events so far, last position) after each batch.

    Returns:
        How many events were replayed.

    Raises:
        ProjectionError: an event cannot be applied; nothing changed.
    """
    backend = store.backend
    await backend.ensure_schema()
    replayed = 0
    async with backend.begin_write() as connection:
        await checkpoints.ensure(connection, projection.name)
        # Taking the checkpoint row first makes a running projector wait for
        # this transaction, then find its checkpoint moved and skip its batch.
        await checkpoints.reset(connection, projection.name)
        await projection.reset(connection)
        after: Checkpoint = checkpoints.START
        while True:
            events = await store.log.read_batch(after, limit=batch_size)
            if not events:
                break
            await projection.apply(connection, events)
            replayed += len(events)
            new = events[-1].checkpoint
            await checkpoints.advance(
                connection, projection.name, expected=after, new=new
            )
            after = new
            if on_batch is not None:
                on_batch(replayed, new.position)
    return replayed
