"""Rebuild a projection from the log while readers keep reading it (ARCHITECTURE §5).

Where the backend has shadow tables (PostgreSQL), the log is folded into a
shadow table beside the live one, in large batches: each batch is read
gap-safe after the shadow's own checkpoint, folded in memory by the
projection's own `apply` (aimed at the shadow) and committed together with
that checkpoint. Memory is bounded by one batch, and a rebuild that
crashed resumes where it stopped. Then the shadow gets its other indexes
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

import asyncio
import contextlib
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import sqlalchemy as sa

from eventstore import Checkpoint, errors
from eventstore.events.system_payloads import ArchiveReceipt
from eventstore.schema import SHADOW_CHECKPOINT_SUFFIX, execution_events
from eventstore.schema import projection_checkpoints as checkpoint_table
from projections import checkpoints
from projections.base import Projection

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import EventStore, RecordedEvent
    from eventstore.backends.shadow import ShadowTables

DEFAULT_BATCH: Final = 10_000
# Each try at the swap's locks (the gate, the live table) waits this long at
# most: readers that queue behind a waiting swap wait no longer than that.
# The tries are bounded as a whole too: meanwhile the swap holds the
# projector back, and its open transaction holds back every gap-safe reader
# of the log.
SWAP_LOCK_TIMEOUT: Final = 0.5
SWAP_ATTEMPTS: Final = 20
# Ids per DELETE ... IN: below both drivers' limits on bound parameters.
IDS_PER_STATEMENT: Final = 500


@runtime_checkable
class TableProjection(Projection, Protocol):
    """A projection into one table, which can be aimed at another of its shape."""

    @property
    def table(self) -> sa.Table:
        """The table the projection writes."""
        ...

    def for_table(self, table: sa.Table) -> Projection:
        """The same projection writing `table` instead."""
        ...


@dataclass(frozen=True, slots=True)
class RebuildPlan:
    """What a rebuild would do now.

    Attributes:
        events: events in the log it would fold (the log may grow meanwhile).
        resume_from: the position a shadow left by an earlier run stands at,
            when the rebuild resumes it; None when it starts from the log's start.
        shadow: whether it builds beside the live table and swaps
            (otherwise it replays in one transaction).
    """

    events: int
    resume_from: int | None
    shadow: bool


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did.

    Attributes:
        projection: the projection's name.
        events: events this run folded (fewer than the log when it resumed).
        resumed_from: the position the resumed shadow stood at; None when
            this run started from the log's start.
        position: the log position the projection has folded now.
        swapped: a shadow table was swapped in (False: rebuilt in place).
        swap_seconds: how long the swap's transaction held the live table.
        retired_dropped: the replaced table is gone (False: it could not be
            locked in time and is dropped by the next rebuild).
        seconds: how long the run took, start to end.
    """

    projection: str
    events: int
    resumed_from: int | None
    position: int
    swapped: bool
    swap_seconds: float = 0.0
    retired_dropped: bool = True
    seconds: float = 0.0


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
        batch_size: events per batch.
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
        batch_size: events per batch (and per transaction) of the build.
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
    backend = store.backend
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
        report = await _ShadowRebuild(
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
    backend = store.backend
    await backend.ensure_schema()
    shadows = _shadow_tables(store, projection)
    after: Checkpoint = checkpoints.START
    if shadows is not None and isinstance(projection, TableProjection) and not restart:
        async with backend.connect_read() as connection:
            if await shadows.exists(
                connection, shadows.shadow_name(projection.table.name)
            ):
                after = await checkpoints.load(connection, _marker(projection))
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
    return store.backend.shadow_tables()


def _marker(projection: Projection) -> str:
    """The name of the shadow's checkpoint row."""
    return projection.name + SHADOW_CHECKPOINT_SUFFIX


class _ShadowRebuild:
    """One run of the shadow-table rebuild."""

    def __init__(
        self,
        store: EventStore,
        projection: TableProjection,
        shadows: ShadowTables,
        *,
        batch_size: int,
        on_batch: Callable[[int, int], None] | None,
        lock_timeout: float,
        attempts: int,
    ) -> None:
        self._store = store
        self._backend = store.backend
        self._projection = projection
        self._shadows = shadows
        self._live = projection.table.name
        self._marker = _marker(projection)
        self._shadow_name = shadows.shadow_name(self._live)
        # For DML only: the DDL copies the live table itself.
        self._shadow = projection.table.to_metadata(
            sa.MetaData(), name=self._shadow_name
        )
        self._target = projection.for_table(self._shadow)
        self._batch_size = batch_size
        self._on_batch = on_batch
        self._lock_timeout = lock_timeout
        self._attempts = attempts
        self._folded = 0

    async def run(self, *, restart: bool) -> RebuildReport:
        name = self._projection.name
        async with self._shadows.lock(name) as taken:
            if not taken:
                raise errors.DatabaseError(
                    f"another rebuild of {name} is running; wait for it to finish"
                )
            retired = self._shadows.retired_name(self._live)
            if not await self._drop(retired):
                raise errors.DatabaseError(
                    f"could not lock {retired}, left by an earlier rebuild, to drop it"
                )
            start = await self._prepare(restart=restart)
            after = await self._catch_up(start)
            async with self._backend.begin_write() as connection:
                await self._shadows.finish(connection, self._live)
            after = await self._catch_up(after)
            folded = self._folded
            position, swap_seconds = await self._swap(after)
            if self._folded > folded:  # reported once committed
                self._report(position)
            dropped = await self._drop(retired)
        return RebuildReport(
            projection=name,
            events=self._folded,
            resumed_from=start.position if start != checkpoints.START else None,
            position=position,
            swapped=True,
            swap_seconds=swap_seconds,
            retired_dropped=dropped,
        )

    async def _prepare(self, *, restart: bool) -> Checkpoint:
        """Resume the shadow left by an earlier run, or create one at START."""
        async with self._backend.begin_write() as connection:
            exists = await self._shadows.exists(connection, self._shadow_name)
            stored = (
                await connection.execute(
                    sa.select(
                        checkpoint_table.c.transaction_id, checkpoint_table.c.position
                    ).where(checkpoint_table.c.name == self._marker)
                )
            ).first()
            if exists and stored is not None and not restart:
                return Checkpoint.stored(stored.transaction_id, stored.position)
            if exists and not await self._shadows.drop(
                connection,
                self._shadow_name,
                lock_timeout=self._lock_timeout,
                attempts=self._attempts,
            ):
                raise errors.DatabaseError(
                    f"could not lock {self._shadow_name} to drop it"
                )
            await connection.execute(
                sa.delete(checkpoint_table).where(
                    checkpoint_table.c.name == self._marker
                )
            )
            await self._shadows.create(connection, self._live)
            await checkpoints.ensure(connection, self._marker)
        return checkpoints.START

    async def _catch_up(self, after: Checkpoint) -> Checkpoint:
        """Fold batches, one transaction each, until a batch comes back short.

        The next batch is read while this one is folded and written, so the
        database and this process work at once; two batches at most are in
        memory.
        """
        reading = asyncio.ensure_future(self._read(after))
        try:
            while True:
                events = await reading
                if len(events) == self._batch_size:
                    reading = asyncio.ensure_future(self._read(events[-1].checkpoint))
                if events:
                    async with self._backend.begin_write() as connection:
                        after = await self._apply(connection, after, events)
                    self._report(after.position)
                if len(events) < self._batch_size:
                    return after
        finally:
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading

    async def _read(self, after: Checkpoint) -> list[RecordedEvent]:
        return await self._store.log.read_batch(after, limit=self._batch_size)

    async def _swap(self, after: Checkpoint) -> tuple[int, float]:
        """Fold the rest and swap the shadow in, in one transaction."""
        name = self._projection.name
        async with self._backend.rebuild_write(
            name, lock_timeout=self._lock_timeout, attempts=self._attempts
        ) as connection:
            # A projection no projector ever ran gets its checkpoint row
            # now, so that it starts after the swap, not from the start.
            await checkpoints.ensure(connection, name)
            live = await self._lock_checkpoints(connection)
            while events := await self._store.log.read_batch(
                after, limit=self._batch_size
            ):
                after = await self._apply(connection, after, events)
            if any(place > after for place in live.values()):
                # The projector read past what this transaction can see:
                # impossible while the horizon only moves forward.
                raise errors.DatabaseError(
                    f"projection {name} is ahead of its rebuild; run it again"
                )
            started = time.monotonic()
            await self._shadows.swap(
                connection,
                self._live,
                lock_timeout=self._lock_timeout,
                attempts=self._attempts,
            )
            for partition, place in live.items():
                if place < after:
                    await checkpoints.advance(
                        connection, name, expected=place, new=after, partition=partition
                    )
            await connection.execute(
                sa.delete(checkpoint_table).where(
                    checkpoint_table.c.name == self._marker
                )
            )
        return after.position, time.monotonic() - started

    async def _lock_checkpoints(
        self, connection: AsyncConnection
    ) -> dict[int, Checkpoint]:
        """Lock the projection's and the shadow's checkpoint rows, in key order.

        Under the gate no projector holds them, and none re-creates them
        (a change of partition count) before the swap commits.

        Returns:
            The projection's checkpoint per partition.
        """
        rows = await checkpoints.lock(connection, [self._projection.name, self._marker])
        return {
            row.partition: row.checkpoint
            for row in rows
            if row.name == self._projection.name
        }

    async def _apply(
        self,
        connection: AsyncConnection,
        after: Checkpoint,
        events: Sequence[RecordedEvent],
    ) -> Checkpoint:
        """Fold one batch into the shadow and move the shadow's checkpoint past it."""
        new = events[-1].checkpoint
        # The fold comes before the first write: a transaction holds back
        # every gap-safe reader (the live projector too) from its first
        # write to its commit, so that stretch is kept short. The
        # compare-and-set still refuses a batch applied twice.
        await self._target.apply(connection, events)
        await self._forget_archived(connection, events)
        await checkpoints.advance(connection, self._marker, expected=after, new=new)
        self._folded += len(events)
        return new

    async def _forget_archived(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        """Delete the rows of executions an archive removed after the shadow folded them.

        The archive deletes them from the live table only; its receipt
        follows their events in the log.
        """
        archived = [
            stream.stream_id
            for event in events
            if event.stream_type == "system" and event.type == ArchiveReceipt.event_type
            for stream in ArchiveReceipt.model_validate(event.data).streams
        ]
        [key] = self._shadow.primary_key.columns
        for start in range(0, len(archived), IDS_PER_STATEMENT):
            chunk = archived[start : start + IDS_PER_STATEMENT]
            await connection.execute(sa.delete(self._shadow).where(key.in_(chunk)))

    async def _drop(self, table: str) -> bool:
        async with self._backend.begin_write() as connection:
            return await self._shadows.drop(
                connection,
                table,
                lock_timeout=self._lock_timeout,
                attempts=self._attempts,
            )

    def _report(self, position: int) -> None:
        if self._on_batch is not None:
            self._on_batch(self._folded, position)


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
    backend = store.backend
    replayed = 0
    after: Checkpoint = checkpoints.START
    async with backend.rebuild_write(
        projection.name, lock_timeout=lock_timeout, attempts=attempts
    ) as connection:
        await checkpoints.ensure(connection, projection.name)
        # The gate, then the checkpoint rows in key order, then the tables:
        # the order of the swap and of every projector transaction.
        await checkpoints.lock(connection, [projection.name])
        await _place(connection, projection.name, checkpoints.START)
        await projection.reset(connection)
        while events := await store.log.read_batch(after, limit=batch_size):
            await projection.apply(connection, events)
            replayed += len(events)
            after = events[-1].checkpoint
            if on_batch is not None:
                on_batch(replayed, after.position)
        await _place(connection, projection.name, after)
    return RebuildReport(
        projection=projection.name,
        events=replayed,
        resumed_from=None,
        position=after.position,
        swapped=False,
    )


async def _place(connection: AsyncConnection, name: str, place: Checkpoint) -> None:
    """Put every partition's checkpoint of a projection at `place`."""
    await connection.execute(
        sa.update(checkpoint_table)
        .where(checkpoint_table.c.name == name)
        .values(
            transaction_id=place.transaction_id,
            position=place.position,
            updated_at=datetime.now(UTC),
        )
    )
