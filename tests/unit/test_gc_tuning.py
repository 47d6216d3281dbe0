"""The batch processes' collector: off within, cycles still freed, restored after.

Run in a fresh interpreter: it changes the whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import asyncio, gc, json, weakref
from projections.gc_tuning import gc_for_batches

class Node:
    pass

def a_cycle():
    node = Node()
    node.me = node
    return weakref.ref(node)

async def main():
    seen = {}
    async with gc_for_batches(collect_every=0.05):
        seen["enabled_within"] = gc.isenabled()
        seen["frozen_within"] = gc.get_freeze_count()
        cycle = a_cycle()
        seen["cycle_left_at_once"] = cycle() is not None
        # Freed by a periodic collection (every 0.05 s), waited for under a
        # deadline: a busy machine may run the first one late.
        deadline = asyncio.get_running_loop().time() + 30
        while cycle() is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        seen["cycle_freed_by_the_periodic_collection"] = cycle() is None
    seen["enabled_after"] = gc.isenabled()
    seen["frozen_after"] = gc.get_freeze_count()
    return seen

print(json.dumps(asyncio.run(main())))
"""


def test_collection_is_periodic_within_and_restored_after() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == {
        "enabled_within": False,
        "frozen_within": json.loads(done.stdout)["frozen_within"],
        "cycle_left_at_once": True,
        "cycle_freed_by_the_periodic_collection": True,
        "enabled_after": True,
        "frozen_after": 0,
    }
    assert json.loads(done.stdout)["frozen_within"] > 1000  # start-up objects
