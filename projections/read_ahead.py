"""A slot's next batch, read while its current one is applied.

A slot behind the log spends each batch reading (mostly the server's and
the network's time) and then folding and writing (mostly this process's).
Reading the next batch while the current one is written overlaps the two,
as the shadow rebuild does. The batch read ahead is used only when the slot
asks for exactly it (the same checkpoint and size): after another projector
moved the checkpoint, or a rebuild, it is dropped and read again. The log
after a checkpoint below the transaction horizon does not change, so a
batch read ahead holds what a read at the time of use would hold, up to the
horizon of its own read (ARCHITECTURE §1). So it is used only if it came
back full: a short batch says the slot has caught up, and only a read made
now may say that (`run_until_caught_up` promises every event committed
before it was called).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore import Checkpoint, RecordedEvent
    from eventstore.projecting import ProjectionContext
    from projections.slots import Slot

_Batch = list["RecordedEvent"]


class ReadAhead:
    """At most one batch read ahead per slot."""

    def __init__(self, context: ProjectionContext) -> None:
        self._context = context
        # slot lock name -> (read after, size, the read)
        self._reads: dict[str, tuple[Checkpoint, int, asyncio.Task[_Batch]]] = {}

    async def read(self, slot: Slot, after: Checkpoint, limit: int) -> _Batch:
        """The slot's events after `after`, at most `limit`: the batch read ahead if it is this one, and full."""
        ahead = self._reads.pop(slot.lock_name, None)
        if ahead is not None:
            started_after, size, reading = ahead
            if started_after == after and size == limit:
                try:
                    await asyncio.wait(
                        [reading]
                    )  # raises only the caller's cancellation
                except asyncio.CancelledError:
                    _drop(reading)
                    raise
                # A read ahead that failed is read again: its error (a lost
                # connection, say) may be gone, and a new one is raised anew.
                if reading.exception() is None:
                    batch = reading.result()
                    if len(batch) == limit:
                        return batch
            else:
                _drop(reading)
        return await self._read(slot, after, limit)

    def start(self, slot: Slot, after: Checkpoint, limit: int) -> None:
        """Begin reading the slot's batch after `after` (replacing one begun before)."""
        before = self._reads.pop(slot.lock_name, None)
        if before is not None:
            _drop(before[2])
        reading = asyncio.create_task(
            self._read(slot, after, limit), name=f"eventstore-read-ahead {slot}"
        )
        self._reads[slot.lock_name] = (after, limit, reading)

    def keep_only(self, slots: Sequence[Slot]) -> None:
        """Drop the reads ahead of every slot but these (those this projector leads)."""
        kept = {slot.lock_name for slot in slots}
        for name in [name for name in self._reads if name not in kept]:
            _drop(self._reads.pop(name)[2])

    async def aclose(self) -> None:
        """Stop every read still running, and wait for them to end."""
        reads = [reading for _, _, reading in self._reads.values()]
        self._reads.clear()
        for reading in reads:
            _drop(reading)
        if reads:
            # Each connection goes back to its pool. Not awaited one by one:
            # a cancellation of the caller must reach the caller.
            await asyncio.wait(reads)

    async def _read(self, slot: Slot, after: Checkpoint, limit: int) -> _Batch:
        return await self._context.read_all_as_stored(
            after, limit=limit, partition=slot.partition
        )


def _drop(reading: asyncio.Task[_Batch]) -> None:
    """Cancel a read nobody will use; its error, if any, is nobody's."""
    reading.cancel()
    reading.add_done_callback(_forget)


def _forget(reading: asyncio.Task[_Batch]) -> None:
    if not reading.cancelled():
        reading.exception()  # retrieved: asyncio does not log it as lost
