"""Rebuild a projection from the log while readers keep reading it (ARCHITECTURE §5).

Where the backend has shadow tables (PostgreSQL), the log is folded into a
shadow table beside the live one, in large batches: each batch is read
gap-safe after the shadow's own checkpoint, folded in memory by the
projection's own `apply` (aimed at the shadow) and committed together with
that checkpoint. Memory is bounded by one batch, and a rebuild that
crashed resumes where it stopped. From the start, a projection whose rows
the database can fold itself (`FoldsInDatabase`: the executions
projection) has it fold the log up to the gap-safe head first, and folds
here only the streams it hands back (ARCHITECTURE §5). Then the shadow gets its other indexes
and statistics, catches up, and one transaction swaps it in, taking its
locks in the one order (docs/PROJECTIONS.md, "Lock order"):

1. it holds the projection's gate: no projector transaction on the
   projection starts until the swap commits (the slots wait and
   `project --status` says so), and those in flight are waited for;
2. it locks the projection's checkpoint rows and the shadow's, in key
   order;
3. it folds what the log gained meanwhile into the shadow;
4. it renames the shadow into the live table's place, indexes and
   constraints back to their canonical names (readers wait for these
   renames only, and never see a half-built table);
5. it moves the projection's checkpoints to the shadow's and deletes the
   shadow's.

A projector started meanwhile, even one that changes the partition count,
reads its checkpoint after the swap, so it never applies a batch to the
table being swapped nor one the shadow already folded. The retired table
is dropped afterwards, in a transaction of its own.

The shadow's checkpoint is a row of `projection_checkpoints` like any
other (the shape of ARCHITECTURE §9), named ``<projection>:rebuild``, partition 0; no
projector reads that name. While it exists the archive refuses to remove
events the shadow has not folded, as for any projection behind; events it
removes after the shadow folded them are taken out of the shadow when the
rebuild meets the archive's receipt in the log.

Elsewhere (SQLite: one writer at a time) the rebuild empties the table and
replays the log in one transaction, holding the projection's gate like the
swap; readers (WAL) keep the old rows until it commits.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import Checkpoint, errors
from eventstore.schema import execution_events
from projections import checkpoints
from projections.rebuild_model import (
    SWAP_ATTEMPTS,
    SWAP_LOCK_TIMEOUT,
    RebuildPlan,
    RebuildReport,
    TableProjection,
    place_checkpoints,
    shadow_checkpoint_name,
)
from projections.shadow_rebuild import ShadowRebuild

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventstore import EventStore
    from eventstore.projecting import ShadowTables
    from projections.base import Projection

__all__ = [
    "DEFAULT_BATCH",
    "RebuildPlan",
    "RebuildReport",
    "TableProjection",
    "plan_rebuild",
    "rebuild",
    "run_rebuild",
]

DEFAULT_BATCH: Final = 10_000


async def rebuild(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = DEFAULT_BATCH,
    restart: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Rebuild a projection from the log (see `run_rebuild`, which reports more).

    Args:
        store: the store whose log is folded.
        projection: the read model to rebuild.
        batch_size: events per batch (executions per part while the
            database folds, from the start on PostgreSQL).
        restart: drop a shadow left by an interrupted run instead of resuming it.
        on_batch: called with (events folded so far by this run, last
            position) after each batch.

    Returns:
        How many events this run folded.

    Raises:
        ProjectionError: an event cannot be applied; the live table is untouched.
        DatabaseError: another rebuild of the projection is running, or the
            swap could not lock the live table in time (the shadow is kept).
    """
    report = await run_rebuild(
        store, projection, batch_size=batch_size, restart=restart, on_batch=on_batch
    )
    return report.events


async def run_rebuild(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = DEFAULT_BATCH,
    restart: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    swap_lock_timeout: float = SWAP_LOCK_TIMEOUT,
    swap_attempts: int = SWAP_ATTEMPTS,
) -> RebuildReport:
    """Rebuild a projection from the log; readers keep the old rows until the end.

    Args:
        store: the store whose log is folded.
        projection: the read model to rebuild.
        batch_size: events per batch (and per transaction) of the build;
            executions per part (and per transaction) while the database
            folds, from the start on PostgreSQL.
        restart: drop a shadow left by an interrupted run instead of resuming it.
        on_batch: called with (events folded so far by this run, last
            position) after each batch; an exception raised there stops the
            rebuild, which a later run resumes.
        swap_lock_timeout: seconds one try at the swap's locks (and at the
            gate of a rebuild in place) may wait.
        swap_attempts: tries at those locks before giving up.

    Returns:
        What was done.

    Raises:
        ProjectionError: an event cannot be applied; the live table is untouched.
        DatabaseError: another rebuild of the projection is running, or the
            swap could not lock the live table in time (the shadow is kept).
    """
    if batch_size < 1:
        raise errors.ValidationError(f"invalid batch size {batch_size}: 1 or more")
    started = time.monotonic()
    backend = store.projection_context
    await backend.ensure_schema()
    shadows = _shadow_tables(store, projection)
    if shadows is None or not isinstance(projection, TableProjection):
        report = await _rebuild_in_place(
            store,
            projection,
            batch_size=batch_size,
            on_batch=on_batch,
            lock_timeout=swap_lock_timeout,
            attempts=swap_attempts,
        )
    else:
        report = await ShadowRebuild(
            store,
            projection,
            shadows,
            batch_size=batch_size,
            on_batch=on_batch,
            lock_timeout=swap_lock_timeout,
            attempts=swap_attempts,
        ).run(restart=restart)
    return dataclasses.replace(report, seconds=time.monotonic() - started)


async def plan_rebuild(
    store: EventStore, projection: Projection, *, restart: bool = False
) -> RebuildPlan:
    """What `run_rebuild` would do now: how many events, resumed from where."""
    backend = store.projection_context
    await backend.ensure_schema()
    shadows = _shadow_tables(store, projection)
    after: Checkpoint = checkpoints.START
    if shadows is not None and isinstance(projection, TableProjection) and not restart:
        async with backend.connect_read() as connection:
            if await shadows.exists(
                connection, shadows.shadow_name(projection.table.name)
            ):
                after = await checkpoints.load(
                    connection, shadow_checkpoint_name(projection)
                )
    async with backend.connect_read() as connection:
        query = sa.select(sa.func.count()).select_from(execution_events)
        if after != checkpoints.START:
            query = query.where(~backend.at_or_before(execution_events, after))
        count = int(await connection.scalar(query) or 0)
    return RebuildPlan(
        events=count,
        resume_from=after.position if after != checkpoints.START else None,
        shadow=shadows is not None,
    )


def _shadow_tables(store: EventStore, projection: Projection) -> ShadowTables | None:
    if not isinstance(projection, TableProjection):
        return None
    return store.projection_context.shadow_tables()


async def _rebuild_in_place(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None,
    lock_timeout: float,
    attempts: int,
) -> RebuildReport:
    """Empty the projection and replay the log, in one transaction."""
    backend = store.projection_context
    replayed = 0
    after: Checkpoint = checkpoints.START
    async with backend.rebuild_write(
        projection.name, lock_timeout=lock_timeout, attempts=attempts
    ) as connection:
        await checkpoints.ensure(connection, projection.name)
        # The gate, then the checkpoint rows in key order, then the tables:
        # the order of the swap and of every projector transaction.
        await checkpoints.lock(connection, [projection.name])
        await place_checkpoints(connection, projection.name, checkpoints.START)
        await projection.reset(connection)
        while events := await store.log.read_batch(after, limit=batch_size):
            await projection.apply(connection, events)
            replayed += len(events)
            after = events[-1].checkpoint
            if on_batch is not None:
                on_batch(replayed, after.position)
        await place_checkpoints(connection, projection.name, after)
    return RebuildReport(
        projection=projection.name,
        events=replayed,
        resumed_from=None,
        position=after.position,
        swapped=False,
    )
