"""What one measurement records, and the clocks around the writers."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    AsyncWriter = Callable[[], Awaitable[None]]
    AsyncTimer = Callable[[Sequence[AsyncWriter]], Awaitable["Timing"]]


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall and client CPU time of the timed section (CPU: every thread of this process)."""

    seconds: float
    cpu_seconds: float


@dataclass(frozen=True, slots=True)
class Measurement:
    """One subject at one writer count in one round.

    Attributes:
        subject: the subject's key (see bench/subjects.py and bench/baselines.py).
        writers: concurrent writers.
        round: which interleaved round (1-based) produced it.
        events: events appended in the timed section.
        seconds: wall time of the timed section.
        cpu_seconds: CPU time of this (client) process in the timed section.
        data_bytes: mean size of a stored payload, read back from the database.
    """

    subject: str
    writers: int
    round: int
    events: int
    seconds: float
    cpu_seconds: float
    data_bytes: float

    @property
    def events_per_second(self) -> float:
        """Throughput: events / wall time."""
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        """Client CPU microseconds per event."""
        return self.cpu_seconds / self.events * 1e6


async def time_writers(writers: Sequence[AsyncWriter]) -> Timing:
    """Run async writers concurrently and time them from start to the last one's end."""
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer() for writer in writers))
    return Timing(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)


def time_threads(pool: ThreadPoolExecutor, writers: Sequence[Callable[[], None]]) -> Timing:
    """Run blocking writers on a thread pool and time them until all have returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    futures = [pool.submit(writer) for writer in writers]
    for future in futures:
        future.result()
    return Timing(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)


@dataclass(frozen=True, slots=True)
class Sample:
    """What a subject returns: the timed section, its event count, the payload size."""

    timing: Timing
    events: int
    data_bytes: float
