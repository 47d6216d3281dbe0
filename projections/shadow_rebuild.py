"""The shadow-table rebuild: fold beside the live table, catch up, swap in one transaction.

See `projections.rebuild` for the whole procedure and its lock order.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import Checkpoint, errors
from eventstore.projecting import upcast_event
from eventstore.schema import projection_checkpoints as checkpoint_table
from projections import checkpoints
from projections.rebuild_model import (
    FoldsInDatabase,
    RebuildReport,
    shadow_checkpoint_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import EventStore, RecordedEvent
    from eventstore.projecting import Reference, ShadowTables
    from projections.rebuild_model import TableProjection


# Streams the reference folds after the database: read this many at a time.
STREAMS_PER_READ: Final = 500


class ShadowRebuild:
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
        self._backend = store.projection_context
        self._projection = projection
        self._shadows = shadows
        self._live = projection.table.name
        self._marker = shadow_checkpoint_name(projection)
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
        """Build (or resume) the shadow, catch it up, swap it in, drop the retired table.

        Raises:
            DatabaseError: another rebuild of the projection is running.
        """
        report = await self.try_run(restart=restart)
        if report is None:
            raise errors.DatabaseError(
                f"another rebuild of {self._projection.name} is running; "
                "wait for it to finish"
            )
        return report

    async def try_run(self, *, restart: bool) -> RebuildReport | None:
        """`run`, or None at once if another rebuild of the projection is running."""
        name = self._projection.name
        async with self._shadows.lock(name) as taken:
            if not taken:
                return None
            retired = self._shadows.retired_name(self._live)
            if not await self._drop(retired):
                raise errors.DatabaseError(
                    f"could not lock {retired}, left by an earlier rebuild, to drop it"
                )
            start = await self._prepare(restart=restart)
            after = await self._catch_up(
                await self._fold_in_database() if start == checkpoints.START else start
            )
            async with self._backend.begin_write() as connection:
                await self._shadows.finish(connection, self._live)
            after = await self._catch_up(after)
            folded = self._folded
            position, swap_seconds, references = await self._swap(after)
            if references:
                async with self._backend.begin_write() as connection:
                    await self._shadows.validate(connection, references)
            dropped = await self._drop(retired)
            # Reported once committed and finished: an error raised there
            # cannot stop what no later run would resume.
            if self._folded > folded:
                self._report(position)
        return RebuildReport(
            projection=name,
            events=self._folded,
            resumed_from=start.position if start != checkpoints.START else None,
            position=position,
            swapped=True,
            swap_seconds=swap_seconds,
            retired_dropped=dropped,
        )

    async def discard(self) -> bool:
        """Drop the shadow and its checkpoint, if no rebuild runs (False: one does)."""
        async with self._shadows.lock(self._projection.name) as taken:
            if not taken:
                return False
            async with self._backend.begin_write() as connection:
                exists = await self._shadows.exists(connection, self._shadow_name)
                await self._drop_shadow(connection, exists=exists)
        return True

    async def _drop_shadow(self, connection: AsyncConnection, *, exists: bool) -> None:
        """Drop the shadow (if it `exists`) and delete its checkpoint row."""
        if exists and not await self._shadows.drop(
            connection,
            self._shadow_name,
            lock_timeout=self._lock_timeout,
            attempts=self._attempts,
        ):
            raise errors.DatabaseError(f"could not lock {self._shadow_name} to drop it")
        await connection.execute(
            sa.delete(checkpoint_table).where(checkpoint_table.c.name == self._marker)
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
            await self._drop_shadow(connection, exists=exists)
            await self._shadows.create(connection, self._live)
            await checkpoints.ensure(connection, self._marker)
        return checkpoints.START

    async def _fold_in_database(self) -> Checkpoint:
        """From the start: the database folds the streams it can, up to now.

        The rest are folded here by the reference, in the log's order. Each
        part is its own short transaction; the shadow's checkpoint moves
        once, at the end, so a run stopped midway starts again from an
        emptied shadow. Until then no archive removes an event: it waits
        for the shadow's checkpoint, as for any projection behind.

        Returns:
            The checkpoint folded to (START if the database folds nothing).
        """
        target = self._target
        if not isinstance(self._projection, FoldsInDatabase):
            return checkpoints.START
        fold = self._projection.database_fold()
        until = None if fold is None else await self._backend.head_checkpoint()
        if fold is None or until is None:
            return checkpoints.START
        async with self._backend.begin_write() as connection:
            await target.reset(connection)  # rows of a run stopped midway
        unfolded: list[UUID] = []
        async for part in fold.fold(until, part=self._batch_size):
            if part.rows:
                async with self._backend.begin_write() as connection:
                    await fold.write(connection, self._shadow_name, part.rows)
            unfolded += part.unfolded
            self._folded += part.events
            self._report(until.position)
        for first in range(0, len(unfolded), STREAMS_PER_READ):
            stored = await fold.read_streams(
                unfolded[first : first + STREAMS_PER_READ], until
            )
            async with self._backend.begin_write() as connection:
                await target.apply(connection, [upcast_event(e) for e in stored])
        async with self._backend.begin_write() as connection:
            await checkpoints.advance(
                connection, self._marker, expected=checkpoints.START, new=until
            )
        return until

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
            reading.cancel()
            # Not awaited itself: the caller's own cancellation must reach it.
            await asyncio.wait([reading])
            if not reading.cancelled():
                reading.exception()  # retrieved: the error raised is the first one

    async def _read(self, after: Checkpoint) -> list[RecordedEvent]:
        return await self._store.log.read_batch(after, limit=self._batch_size)

    async def _swap(self, after: Checkpoint) -> tuple[int, float, list[Reference]]:
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
            references = await self._shadows.swap(
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
        return after.position, time.monotonic() - started, references

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
        await checkpoints.advance(connection, self._marker, expected=after, new=new)
        self._folded += len(events)
        return new

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
