"""Who used the CPU during a timed section: this process, our PostgreSQL, everyone else.

The machine's busy time comes from /proc/stat; the server's from the
/proc/<pid>/stat of the PostgreSQL processes that serve the benchmark (the
backends of a ``bench_*`` database, whose process title names it, and the
server's shared processes: WAL writer, checkpointer ...). What is left is
"other": the kernel's interrupt work, other people's programs and their
PostgreSQL sessions. A measurement taken while others used a lot of CPU is
marked as disturbed (the machine is shared).
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
BENCH_DATABASE_PREFIX: Final = "bench_"
# Process titles of the server's own, shared processes (no database in them).
_SHARED: Final = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
    "stats collector",
)
_TICK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CURRENT_DATABASE: ContextVar[str | None] = ContextVar("CURRENT_DATABASE", default=None)
"""The database of the measurement running now (set by bench.databases): only
its backends count as the benchmark's server, not those of other bench runs."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU seconds used since boot: the whole machine, and each of our server processes."""

    machine: float | None
    server: dict[int, float]


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of all cores since boot (everything but idle and iowait)."""
    try:
        fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(field) for field in fields]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICK


def _serves_bench(title: str, database: str | None) -> bool:
    if not title.startswith("postgres:"):
        return "-D" in title.split()  # the postmaster itself
    if any(name in title for name in _SHARED):
        return True
    if database is not None:
        return f" {database} " in f"{title} "
    return f" {BENCH_DATABASE_PREFIX}" in title


def server_processes(database: str | None = None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL process that serves the benchmark, by pid.

    Args:
        database: count only this database's backends (and the shared
            processes); None: the backends of every ``bench_*`` database.
    """
    found: dict[int, float] = {}
    try:
        entries = list(os.scandir(PROC))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (PROC / entry.name / "stat").read_text()
            if stat[stat.find("(") + 1 : stat.rfind(")")] != "postgres":
                continue
            title = (PROC / entry.name / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if _serves_bench(title.decode(errors="replace").strip(), database):
            fields = stat[stat.rfind(")") + 2 :].split()
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return found


def snapshot(database: str | None = None) -> Snapshot:
    """Now (`database` as for `server_processes`)."""
    return Snapshot(machine=machine_busy_seconds(), server=server_processes(database))


def used(before: Snapshot, after: Snapshot) -> tuple[float | None, float]:
    """Machine busy seconds and our server's CPU seconds between two snapshots."""
    machine = (
        None
        if before.machine is None or after.machine is None
        else after.machine - before.machine
    )
    server = sum(
        max(seconds - before.server.get(pid, 0.0), 0.0)
        for pid, seconds in after.server.items()
    )
    return machine, server


def wait_until_quiet(*, limit: float, max_wait: float) -> float:
    """Sleep until the machine's busy time stays below `limit` cores for 2 s in a row.

    Returns:
        The seconds waited (at most about `max_wait`).
    """
    started = time.monotonic()
    quiet = 0
    previous = machine_busy_seconds()
    if previous is None:
        return 0.0
    while quiet < 2 and time.monotonic() - started < max_wait:
        time.sleep(1.0)
        current = machine_busy_seconds() or 0.0
        quiet = quiet + 1 if current - previous < limit else 0
        previous = current
    return time.monotonic() - started
