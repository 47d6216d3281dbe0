"""The batch processes' collector settings (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

from projections.gc_tuning import BATCH_THRESHOLDS

PROBE = """
import gc, json
from projections.gc_tuning import tune_gc_for_batches
before = gc.get_threshold()
tune_gc_for_batches()
cycle = []
cycle.append(cycle)
del cycle
print(json.dumps({
    "before": before,
    "after": gc.get_threshold(),
    "frozen": gc.get_freeze_count(),
    "collected": gc.collect(),
}))
"""


def test_start_up_objects_are_frozen_and_collections_run_less_often() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    )
    probe = json.loads(done.stdout)
    assert probe["before"] == [700, 10, 10]
    assert probe["after"] == list(BATCH_THRESHOLDS)
    assert probe["after"][0] > probe["before"][0]
    assert probe["frozen"] > 1000  # the modules' objects, out of the collector's view
    assert probe["collected"] >= 1  # cycles made afterwards are still collected
