"""Garbage-collector settings for a process that folds the log in large batches.

A batch of events is many small containers (events, their data, row
dicts) that live for one batch and form no reference cycles: reference
counting frees them. CPython's generational collector still counts every
one of them, and its full collections walk every live object, the batch
in hand included, again and again. With the default thresholds that was
35-45 % of a rebuild's time (bench/RESULTS.md).

`tune_gc_for_batches` moves what start-up allocated (modules, the store)
out of the collector's view (`gc.freeze`) and raises the thresholds so that
collections run far less often; cycles are still collected. It changes the
whole process: `eventstore project` and `eventstore rebuild` call it; a
service that embeds the projector may call it once after start-up.
"""

from __future__ import annotations

import gc
from typing import Final

# Young collections every 50,000 net allocations (default 700), a middle
# one every 20 of those, a full one every 20 middle ones at most (default 10).
BATCH_THRESHOLDS: Final = (50_000, 20, 20)


def tune_gc_for_batches() -> None:
    """Freeze what exists now and collect less often (see the module's docs)."""
    gc.collect()  # freeze no garbage
    gc.freeze()
    gc.set_threshold(*BATCH_THRESHOLDS)
