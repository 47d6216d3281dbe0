"""Leadership of projection slots: one process applies a projection's batches.

A slot is a projection, or one partition of it. Its leader holds a lock
that the database (or the operating system) releases when the holder dies,
even by SIGKILL, so a standby takes over on its next try. The lock only
saves wasted work: exactly-once comes from the checkpoint's compare-and-set,
which also fences a leader that lost its lock without noticing (ARCHITECTURE §4).
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

PROJECTOR_APPLICATION: Final = "eventstore-projector"


def process_identity() -> str:
    """``host:pid`` of this process, as leaders are shown to operators."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a slot's lock."""

    identity: str
    pid: int | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class HorizonHolder:
    """The oldest transaction in flight: the gap-safe reads stop below it."""

    pid: int
    database: str | None
    state: str | None
    age_seconds: float | None
    """None when the server hides it (another role's session)."""
    query: str | None


class LeaderLocks(ABC):
    """The slot locks of one projector process."""

    @abstractmethod
    async def try_acquire(self, slot: str) -> bool:
        """Take the slot's lock if nobody holds it; True if this process holds it."""

    @abstractmethod
    async def release(self, slot: str) -> None:
        """Give the slot's lock up (a standby may take it)."""

    @abstractmethod
    async def alive(self) -> bool:
        """Whether the locks taken are still held; False: all were lost, start over."""

    @abstractmethod
    async def members(self, groups: Sequence[str]) -> dict[str, int]:
        """How many projector processes run each group now, this one included.

        A group is the set of slots one projection is split into (its name
        and partition count): a slot's fair share is counted among the
        processes that run its projection, not among every projector of
        the database. Asking joins this process to the groups; it leaves
        them when it closes (or dies).
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release every lock."""
