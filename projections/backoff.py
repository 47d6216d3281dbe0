"""Capped, jittered backoff: after failures in a row, and for projections a rebuild holds.

A slot turned away by a rebuild's gate waits outside the database; a
daemon cut off from the database waits before it tries again. Either way
the wait is jittered, so projectors cut off together do not come back
together (docs/PROJECTIONS.md, "Rebuilds and running projectors").
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Final

REBUILD_POLL: Final = 0.05
MAX_REBUILD_POLL: Final = 2.0
MAX_RETRY_DELAY: Final = 10.0
logger: Final = logging.getLogger("eventstore.projections.projector")


def retry_delay(base: float, failures: int, *, cap: float = MAX_RETRY_DELAY) -> float:
    """How long to wait after `failures` failures in a row: capped, jittered backoff.

    Exponential from `base` up to `cap`, then a random point in its upper
    half, so projectors cut off together do not come back together.
    """
    ceiling = min(cap, base * 2.0 ** min(failures, 32))
    return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


@dataclass(slots=True)
class _Hold:
    """A projection a rebuild held when last tried: when to try again."""

    tries: int
    retry_at: float  # time.monotonic()


class RebuildHolds:
    """The projections a rebuild held when last tried, and when to try each again."""

    def __init__(self) -> None:
        self._held: dict[str, _Hold] = {}

    def __contains__(self, projection: str) -> bool:
        return projection in self._held

    def release(self, projection: str) -> None:
        """The projection was had: no rebuild holds it now."""
        self._held.pop(projection, None)

    def due(self, projection: str) -> bool:
        """Whether a projection is to be tried now (False: a rebuild held it just now)."""
        hold = self._held.get(projection)
        return hold is None or time.monotonic() >= hold.retry_at

    def hold(self, projection: str) -> None:
        """Note that a rebuild holds the projection: try again after a jittered backoff."""
        hold = self._held.get(projection)
        tries = 0 if hold is None else hold.tries + 1
        if hold is None:
            logger.info("projector: a rebuild holds %s; its slots wait", projection)
        delay = retry_delay(REBUILD_POLL, tries, cap=MAX_REBUILD_POLL)
        self._held[projection] = _Hold(tries, time.monotonic() + delay)

    def until_retry(self) -> float:
        """Seconds until the first held projection is to be tried again."""
        now = time.monotonic()
        return max(
            0.0, min((hold.retry_at - now for hold in self._held.values()), default=0)
        )
