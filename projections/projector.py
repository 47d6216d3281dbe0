"""The projector: folds the log into read models, batch by batch, exactly once.

Each batch is read gap-safe after the projection's checkpoint, then applied
in one transaction that first moves the checkpoint forward by
compare-and-set: a crash leaves the whole batch or none of it, and of two
projectors racing for the same batch one applies it and the other rolls
back (DESIGN §4). The daemon polls; a stop request ends it after the batch
in hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from eventstore import errors
from projections import checkpoints
from projections.executions import ExecutionsProjection

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore import EventStore
    from projections.base import Projection

DEFAULT_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What one pass over the projections did."""

    events: int
    position: int | None
    caught_up: bool


class Projector:
    """Runs projections over the log of one store."""

    def __init__(
        self,
        store: EventStore,
        projections: Sequence[Projection] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH,
        poll_interval: float = 0.5,
    ) -> None:
        self._store = store
        self._projections = (
            list(projections)
            if projections is not None
            else [ExecutionsProjection(store.backend)]
        )
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._ready = False

    @property
    def projections(self) -> list[Projection]:
        """The projections this projector runs."""
        return list(self._projections)

    async def run_once(self) -> BatchReport:
        """Apply at most one batch to each projection.

        Returns:
            How many events were applied, and the last position reached.

        Raises:
            ProjectionError: a projection cannot apply an event.
        """
        await self._prepare()
        reports = [
            await self._apply_batch(projection) for projection in self._projections
        ]
        positions = [r.position for r in reports if r.position is not None]
        return BatchReport(
            events=sum(r.events for r in reports),
            position=max(positions) if positions else None,
            caught_up=all(r.caught_up for r in reports),
        )

    async def run_until_caught_up(
        self, *, on_batch: Callable[[BatchReport], None] | None = None
    ) -> int:
        """Apply batches until the log is folded; return how many events were applied."""
        total = 0
        while True:
            report = await self.run_once()
            total += report.events
            if report.caught_up:
                return total
            if on_batch is not None:
                on_batch(report)

    async def run(self, stop: asyncio.Event) -> None:
        """Run as a daemon until `stop` is set; the batch in hand is finished first."""
        while not stop.is_set():
            report = await self.run_once()
            if report.caught_up:
                try:
                    await asyncio.wait_for(stop.wait(), self._poll_interval)
                except TimeoutError:
                    continue

    async def _prepare(self) -> None:
        if self._ready:
            return
        await self._store.backend.ensure_schema()
        async with self._store.backend.begin_write() as connection:
            for projection in self._projections:
                await checkpoints.ensure(connection, projection.name)
        self._ready = True

    async def _apply_batch(self, projection: Projection) -> BatchReport:
        backend = self._store.backend
        async with backend.connect_read() as connection:
            start = await checkpoints.load(connection, projection.name)
        events = await self._store.log.read_batch(start, limit=self._batch_size)
        if not events:
            return BatchReport(events=0, position=None, caught_up=True)
        try:
            async with backend.begin_write() as connection:
                await checkpoints.advance(
                    connection,
                    projection.name,
                    expected=start,
                    new=events[-1].checkpoint,
                )
                await projection.apply(connection, events)
        except errors.CheckpointConflict:
            # Another projector applied this batch; go on from where it is.
            return BatchReport(events=0, position=None, caught_up=False)
        return BatchReport(
            events=len(events),
            position=events[-1].position,
            caught_up=len(events) < self._batch_size,
        )
