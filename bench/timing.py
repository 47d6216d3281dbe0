"""What one measurement records, and the clocks around the writers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench import cpu

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from concurrent.futures import ThreadPoolExecutor

    AsyncWriter = Callable[[], Awaitable[None]]
    AsyncTimer = Callable[[Sequence[AsyncWriter]], Awaitable["Timing"]]


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall time and CPU time of a timed section.

    Attributes:
        seconds: wall time.
        cpu_seconds: this (client) process, all its threads.
        machine_cpu_seconds: all cores busy, whoever used them (None off Linux).
        server_cpu_seconds: the PostgreSQL processes serving the benchmark.
    """

    seconds: float
    cpu_seconds: float
    machine_cpu_seconds: float | None = None
    server_cpu_seconds: float = 0.0


class _Clock:
    def __init__(self) -> None:
        self.database = cpu.CURRENT_DATABASE.get()
        self.snapshot = cpu.snapshot(self.database)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> Timing:
        wall, process = time.perf_counter(), time.process_time()
        machine, server = cpu.used(self.snapshot, cpu.snapshot(self.database))
        return Timing(
            seconds=wall - self.wall,
            cpu_seconds=process - self.cpu,
            machine_cpu_seconds=machine,
            server_cpu_seconds=server,
        )


@dataclass(frozen=True, slots=True)
class Measurement:
    """One subject at one writer count in one round.

    Attributes:
        subject: the subject's key (see bench/subjects.py and bench/baselines.py).
        writers: concurrent writers.
        round: which interleaved round (1-based) produced it.
        sequence: its place (1-based) in that round's order.
        events: events appended in the timed section.
        seconds: wall time of the timed section.
        cpu_seconds: CPU time of this (client) process in the timed section.
        machine_cpu_seconds: busy CPU time of the whole machine in it (client,
            server, kernel, anything else), None where /proc/stat is missing.
        server_cpu_seconds: CPU time of the PostgreSQL processes serving it.
        attempt: 1, or more when earlier attempts were disturbed.
        disturbed: other programs used more CPU than allowed during it.
        data_bytes: mean size of a stored payload, read back from the database.
    """

    subject: str
    writers: int
    round: int
    sequence: int
    events: int
    seconds: float
    cpu_seconds: float
    machine_cpu_seconds: float | None
    server_cpu_seconds: float
    data_bytes: float
    attempt: int = 1
    disturbed: bool = False

    @property
    def events_per_second(self) -> float:
        """Throughput: events / wall time."""
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        """Client CPU microseconds per event."""
        return self.cpu_seconds / self.events * 1e6

    @property
    def server_us_per_event(self) -> float:
        """CPU microseconds per event of the PostgreSQL processes serving the benchmark."""
        return self.server_cpu_seconds / self.events * 1e6

    @property
    def other_cpu_seconds(self) -> float | None:
        """Busy CPU time neither the client nor our server used (kernel, others)."""
        if self.machine_cpu_seconds is None:
            return None
        return max(
            self.machine_cpu_seconds - self.cpu_seconds - self.server_cpu_seconds, 0.0
        )

    @property
    def other_cores(self) -> float | None:
        """`other_cpu_seconds` per second of wall time: cores busy with other work."""
        other = self.other_cpu_seconds
        return None if other is None else other / self.seconds


async def time_writers(writers: Sequence[AsyncWriter]) -> Timing:
    """Run async writers concurrently and time them from start to the last one's end."""
    clock = _Clock()
    await asyncio.gather(*(writer() for writer in writers))
    return clock.stop()


def time_threads(
    pool: ThreadPoolExecutor, writers: Sequence[Callable[[], None]]
) -> Timing:
    """Run blocking writers on a thread pool and time them until all have returned."""
    clock = _Clock()
    futures = [pool.submit(writer) for writer in writers]
    for future in futures:
        future.result()
    return clock.stop()


@dataclass(frozen=True, slots=True)
class Sample:
    """What a subject returns: the timed section, its event count, the payload size."""

    timing: Timing
    events: int
    data_bytes: float
