"""A projector starts a projection on a long log by a rebuild (docs/ARCHITECTURE.md §4).

Folding a long log from the start batch by batch is bound by this
process's CPU; a rebuild from the start has PostgreSQL group the log by
stream (§5) and folds it about three times as fast. So a projector that
leads every slot of a projection standing at the start, on a log whose
head is at position `REBUILD_AT_START` or beyond, catches it up by a
rebuild and goes on in batches from where the swap left the checkpoints.
Readers meanwhile read the live table, as in any rebuild.

A log with a poison event takes the batches after all (the shadow
dropped), so that the projector stops where it always does: at the
poison event, every event before it applied.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from eventstore import errors
from projections import checkpoints
from projections.rebuild import DEFAULT_BATCH
from projections.rebuild_model import SWAP_ATTEMPTS, SWAP_LOCK_TIMEOUT, FoldsInDatabase
from projections.shadow_rebuild import ShadowRebuild

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from eventstore import EventStore
    from projections.base import Projection
    from projections.rebuild_model import RebuildReport

REBUILD_AT_START: Final = 50_000
"""The head position from which a projection at the start is caught up by a rebuild.

Below it the rebuild's fixed cost (a table made, indexed and swapped)
outweighs what it saves.
"""

logger: Final = logging.getLogger(f"eventstore.{__name__}")


class _Stopped(Exception):
    """The projector was stopped: the rebuild ends at its next part or batch."""


async def start_by_rebuild(
    store: EventStore,
    projection: Projection,
    partitions: Sequence[int],
    *,
    at_least: int = REBUILD_AT_START,
    stop: asyncio.Event | None = None,
) -> RebuildReport | None:
    """Catch `projection` up from the start by a rebuild, where that is the faster way.

    The caller leads every slot of the projection (`partitions`, their
    indexes), so no batch of it is applied meanwhile. Taken only where the
    database folds the projection, every slot's checkpoint is at the start
    and the log's head is at position `at_least` or beyond.

    Once `stop` is set the rebuild ends at its next part or batch, leaving
    its shadow for the next start to resume.

    Returns:
        What the rebuild did; None if it was not the way (or met a poison
        event): fold in batches. None too if stopped.

    Raises:
        RebuildInProgress: another rebuild of the projection is running;
            the slots wait for it.
    """
    backend = store.projection_context
    shadows = backend.shadow_tables()
    if (
        shadows is None
        or not isinstance(projection, FoldsInDatabase)
        or projection.database_fold() is None
    ):
        return None
    async with backend.connect_read() as connection:
        for partition in partitions:
            place = await checkpoints.load(connection, projection.name, partition)
            if place != checkpoints.START:
                return None
    head = await backend.head_checkpoint()
    if head is None or head.position < at_least:
        return None

    def stop_here(_events: int, _position: int) -> None:
        if stop is not None and stop.is_set():
            raise _Stopped

    run = ShadowRebuild(
        store,
        projection,
        shadows,
        batch_size=DEFAULT_BATCH,
        on_batch=stop_here,
        lock_timeout=SWAP_LOCK_TIMEOUT,
        attempts=SWAP_ATTEMPTS,
    )
    logger.info(
        "projection %s starts on a log whose head is at position %d: rebuilding it",
        projection.name,
        head.position,
    )
    try:
        report = await run.try_run(restart=False)
    except _Stopped:
        logger.info(
            "projection %s: stopped while rebuilding; the next start resumes it",
            projection.name,
        )
        return None
    except errors.EventStoreError as exc:
        if isinstance(exc, errors.DatabaseError) and exc.transient:
            raise  # waited out by the daemon; the next try resumes the shadow
        # A poison event (one the fold refuses, or a row a foreign key
        # refuses when the shadow's keys are checked): the batches stop at
        # it, having applied every event before it, and name it.
        logger.warning(
            "projection %s: the rebuild from the start failed (%s); "
            "folding in batches instead",
            projection.name,
            exc,
        )
        await run.discard()
        return None
    if report is None:
        raise errors.RebuildInProgress(projection=projection.name)
    return report
