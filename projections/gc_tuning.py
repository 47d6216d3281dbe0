"""Garbage collection for a process that folds the log in large batches.

A batch of events is many small containers (events, their data, row
dicts) that live for one batch and form no reference cycles: reference
counting frees them. CPython's generational collector still counts every
one of them and, as they outlive its young generation, walks them again and
again. With the default thresholds that was 35-45 % of a rebuild's time;
with raised thresholds still about 15 % (bench/RESULTS.md).

`gc_for_batches` turns the automatic collector off for the duration and
collects every few seconds instead, so cycles (asyncio and driver objects
make a few) are still freed, at a bounded delay. What start-up allocated
(modules, the store) is frozen out of those collections (`gc.freeze`).
It changes the whole process: `eventstore project` and `eventstore rebuild`
use it; a service that embeds the projector may, knowing that.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

COLLECT_EVERY: Final = 10.0  # seconds between collections


@contextlib.asynccontextmanager
async def gc_for_batches(
    *, collect_every: float = COLLECT_EVERY
) -> AsyncIterator[None]:
    """Within: no automatic collection, a full one every `collect_every` seconds.

    On exit the collector is as it was (enabled if it was), what was frozen
    is unfrozen and collected normally again.
    """
    was_enabled = gc.isenabled()
    gc.collect()  # freeze no garbage
    gc.freeze()
    gc.disable()
    collector = asyncio.create_task(_collect_every(collect_every))
    try:
        yield
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
        gc.unfreeze()
        if was_enabled:
            gc.enable()


async def _collect_every(seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        gc.collect()
