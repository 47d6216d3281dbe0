"""What every benchmark shares: the server and throwaway databases, who used the
CPU, clocks, interleaved rounds and their medians, the machine, report tables."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import resource
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from eventstore import EventStore
from eventstore.settings import StoreSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence

REPOSITORY: Final = Path(__file__).parent.parent
CODE: Final = ("eventstore", "projections", "migrations")
DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
PROC: Final = Path("/proc")
TICK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
T = TypeVar("T")

# --- the server and throwaway databases -------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    """A PostgreSQL server, named by a DSN of a database we may CREATE DATABASE from."""

    admin_dsn: str = DEFAULT_DSN

    def dsn(self, database: str) -> str:
        """The DSN of another database on the same server."""
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def connected(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own, closed afterwards."""
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def execute(dsn: str, *statements: str) -> None:
    """Run statements on a fresh connection, each in its own transaction."""
    async with connected(dsn) as connection:
        for statement in statements:
            await connection.execute(statement)


async def fetchval(dsn: str, query: str, *args: object) -> Any:
    """One value, on a fresh connection."""
    async with connected(dsn) as connection:
        return await connection.fetchval(query, *args)


CURRENT_DATABASE: ContextVar[str | None] = ContextVar("CURRENT_DATABASE", default=None)
"""The database of the measurement running now: only its backends count as
the benchmark's server, not those of other bench runs."""


async def create_database(server: Server, prefix: str = "bench_") -> str:
    """CREATE DATABASE <prefix><random>; returns its name."""
    name = f"{prefix}{secrets.token_hex(6)}"
    await execute(server.admin_dsn, f'CREATE DATABASE "{name}"')
    return name


async def drop_database(server: Server, name: str) -> None:
    """DROP DATABASE ... WITH (FORCE)."""
    await execute(server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def throwaway_database(
    server: Server, prefix: str = "bench_", *, keep: bool = False
) -> AsyncIterator[str]:
    """A fresh database for the block, dropped afterwards (unless `keep`); yields its DSN."""
    name = await create_database(server, prefix)
    token = CURRENT_DATABASE.set(name)
    try:
        yield server.dsn(name)
    finally:
        CURRENT_DATABASE.reset(token)
        if not keep:
            await drop_database(server, name)


@contextlib.asynccontextmanager
async def migrated_store(url: str, pool_size: int = 2) -> AsyncIterator[EventStore]:
    """A store on `url` with `pool_size` connections, migrated; closed afterwards."""
    settings = StoreSettings(pool_size=pool_size)
    async with EventStore.open(url, settings=settings) as store:
        await store.migrate()
        yield store


@contextlib.contextmanager
def sqlite_file() -> Iterator[Path]:
    """A path in a fresh temporary directory, removed afterwards (WAL files too)."""
    with tempfile.TemporaryDirectory(prefix="bench_") as directory:
        yield Path(directory) / "bench.db"


# --- who used the CPU ----------------------------------------------------------------
# The machine's busy time comes from /proc/stat; the server's from the
# /proc/<pid>/stat of the PostgreSQL processes that serve the benchmark (the
# backends of a bench_* database, whose process title names it, and the
# server's shared processes). The rest is "other": the kernel's interrupt
# work, other people's programs and their sessions (the machine is shared).

_SHARED: Final = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
    "stats collector",
)


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of all cores since boot (everything but idle and iowait)."""
    try:
        ticks = [
            int(f) for f in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
        ]
    except OSError:
        return None
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of one process, None once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _serves_bench(title: str, database: str | None) -> bool:
    if not title.startswith("postgres:"):
        return "-D" in title.split()  # the postmaster itself
    if any(name in title for name in _SHARED):
        return True
    if database is not None:
        return f" {database} " in f"{title} "
    return " bench_" in title


def server_processes(database: str | None = None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL process serving `database` (None: any bench_*
    database), and of the server's shared processes, by pid."""
    found: dict[int, float] = {}
    for entry in PROC.iterdir() if PROC.exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        used = process_cpu(int(entry.name))
        if used is not None and _serves_bench(
            title.decode(errors="replace").strip(), database
        ):
            found[int(entry.name)] = used
    return found


@dataclass(frozen=True, slots=True)
class Snapshot:
    """CPU seconds since boot: the whole machine, and each of our server processes."""

    machine: float | None
    server: dict[int, float]

    @classmethod
    def now(cls, database: str | None) -> Snapshot:
        """Now (`database` as for `server_processes`)."""
        return cls(machine_busy_seconds(), server_processes(database))

    def used_until(self, after: Snapshot) -> tuple[float | None, float]:
        """Machine busy seconds and our server's CPU seconds from here to `after`."""
        machine = (
            None
            if self.machine is None or after.machine is None
            else after.machine - self.machine
        )
        server = sum(
            max(s - self.server.get(pid, 0.0), 0.0) for pid, s in after.server.items()
        )
        return machine, server


def wait_until_quiet(*, limit: float, max_wait: float) -> float:
    """Sleep until the machine's busy time stays below `limit` cores for 2 s in a row;
    returns the seconds waited (at most about `max_wait`)."""
    started, quiet, previous = time.monotonic(), 0, machine_busy_seconds()
    if previous is None:
        return 0.0
    while quiet < 2 and time.monotonic() - started < max_wait:
        time.sleep(1.0)
        current = machine_busy_seconds() or 0.0
        quiet = quiet + 1 if current - previous < limit else 0
        previous = current
    return time.monotonic() - started


def running(pattern: str) -> bool:
    """Whether `pgrep -f pattern` finds a process (another benchmark)."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)  # noqa: S603, S607
    return found.returncode == 0


def eventstore_cli(*arguments: str) -> list[str]:
    """The `eventstore` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("eventstore")
    if script.exists():
        return [str(script), *arguments]
    return [sys.executable, "-m", "eventstore.cli", *arguments]


def children_cpu() -> float:
    """CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- clocks --------------------------------------------------------------------------


def rss() -> int:
    """The current resident set size in bytes (VmRSS)."""
    with contextlib.suppress(OSError):
        for line in (PROC / "self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    """`ru_maxrss` of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall and CPU seconds of a timed section: client = this process (or a child
    process), server = our PostgreSQL processes, machine = all cores' busy time
    (None off Linux); RSS in bytes where measured."""

    seconds: float
    client: float
    server: float
    machine: float | None
    peak_rss: int = 0
    rss_before: int = 0

    @property
    def other_cores(self) -> float | None:
        """Cores kept busy by neither the client nor our server, on average."""
        if self.machine is None or not self.seconds:
            return None
        return max(self.machine - self.client - self.server, 0.0) / self.seconds


class Clock:
    """Started when made; `stop()` returns the Timing since.

    With `rss`, the peak-RSS high-water mark is reset to the current RSS
    first (Linux >= 4.0), so the peak is the timed section's own.
    """

    def __init__(self, database: str | None, *, rss_too: bool = False) -> None:
        self.rss_before = 0
        if rss_too:
            with contextlib.suppress(OSError):
                (PROC / "self/clear_refs").write_text("5")
            self.rss_before = rss()
        self.database = database
        self.before = Snapshot.now(database)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, after: Snapshot | None = None) -> Timing:
        """The Timing since; `after` replaces the end snapshot."""
        seconds, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        machine, server = self.before.used_until(after or Snapshot.now(self.database))
        peak = peak_rss() if self.rss_before else 0
        return Timing(seconds, cpu, server, machine, peak, self.rss_before)


# --- runs, rounds, medians -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One subject measured once: `count` events (or rows) in `round`, at `sequence`
    in its order; `attempt` > 1 when earlier attempts were disturbed."""

    subject: str
    round: int
    sequence: int
    count: int
    timing: Timing
    writers: int = 0
    data_bytes: float = 0.0
    attempt: int = 1
    disturbed: bool = False
    problem: str | None = None

    @property
    def seconds(self) -> float:
        """Wall time."""
        return self.timing.seconds

    @property
    def rate(self) -> float:
        """Events (or rows) per second."""
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def client_us(self) -> float:
        """Client CPU microseconds per event."""
        return self.timing.client / self.count * 1e6

    @property
    def server_us(self) -> float:
        """Server CPU microseconds per event."""
        return self.timing.server / self.count * 1e6

    def judged(self, limit: float, *, busy: bool = False) -> Run:
        """Marked disturbed if other programs kept more than `limit` cores busy (or `busy`)."""
        other = self.timing.other_cores
        return replace(self, disturbed=busy or (other is not None and other > limit))


def rate(run: Run) -> float:
    """Events per second (the default value of the statistics below)."""
    return run.rate


def median(values: Iterator[float] | Sequence[float]) -> float | None:
    """The median, None of nothing."""
    values = list(values)
    return statistics.median(values) if values else None


class Runs(list[Run]):
    """The kept runs of one benchmark, with medians and ratios over rounds."""

    def of(self, subject: str, writers: int = 0) -> list[Run]:
        """One subject's runs (at one writer count), by round."""
        found = (r for r in self if r.subject == subject and r.writers == writers)
        return sorted(found, key=lambda r: r.round)

    def median(
        self, subject: str, value: Callable[[Run], float] = rate, writers: int = 0
    ) -> float | None:
        """Median of `value` over the rounds."""
        return median([value(r) for r in self.of(subject, writers)])

    def ratio(
        self,
        mine: str,
        theirs: str,
        value: Callable[[Run], float] = rate,
        writers: int = 0,
    ) -> float | None:
        """The ratio of the medians."""
        a, b = self.median(mine, value, writers), self.median(theirs, value, writers)
        return a / b if a is not None and b else None

    def per_round(
        self,
        mine: str,
        theirs: str,
        value: Callable[[Run], float] = rate,
        writers: int = 0,
    ) -> list[float]:
        """Per round: `value` of `mine` over that of `theirs` in the same round."""
        by_round = {r.round: value(r) for r in self.of(theirs, writers)}
        return [
            value(r) / by_round[r.round]
            for r in self.of(mine, writers)
            if by_round.get(r.round)
        ]


def rotated(items: Sequence[T], round_number: int) -> list[T]:
    """A round's order: the fixed order, starting one later each round (1-based),
    so that no subject always runs first."""
    shift = (round_number - 1) % len(items)
    return [*items[shift:], *items[:shift]]


# --- the machine -----------------------------------------------------------------------

SETTINGS: Final = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "autovacuum",
    "max_connections",
)
PACKAGES: Final = (
    "asyncpg",
    "aiosqlite",
    "sqlalchemy",
    "pydantic",
    "eventsourcing",
    "psycopg",
)


def _proc_line(name: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in (PROC / name).read_text().splitlines():
            if line.startswith(key):
                return line
    return None


def _version(package: str) -> str:
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
    if package == "psycopg":
        import psycopg  # only to ask which implementation loaded

        version += f" ({psycopg.pq.__impl__} implementation)"
    return version


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(  # noqa: S603 - a constant command
            ["git", *arguments],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=True,
            cwd=REPOSITORY,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _commit() -> str:
    changed = len(_git("status", "--porcelain", "--", *CODE).splitlines())
    return (_git("rev-parse", "--short", "HEAD") or "unknown") + (
        f" ({changed} paths of {', '.join(f'{c}/' for c in CODE)} modified or "
        "untracked in the working tree while it ran)"
        if changed
        else ""
    )


async def _postgres(server: Server) -> tuple[str, dict[str, str]]:
    async with connected(server.admin_dsn) as connection:
        version = str(await connection.fetchval("SELECT version()"))
        return version, {
            n: str(await connection.fetchval(f"SHOW {n}")) for n in SETTINGS
        }


@dataclass(slots=True)
class Environment:
    """Facts about the run, gathered at its start (the load and the time also at its end)."""

    started_at: datetime
    nproc: int
    cpu: str
    memory: str
    postgres: str
    postgres_settings: dict[str, str]
    packages: dict[str, str]
    commit: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    finished_at: datetime | None = None
    python: str = field(default_factory=platform.python_version)
    system: str = field(default_factory=platform.platform)
    sqlite: str = sqlite3.sqlite_version

    @classmethod
    def collect(cls, server: Server | None) -> Environment:
        """Now; PostgreSQL's version and settings unless `server` is None."""
        model, memory = (
            _proc_line("cpuinfo", "model name"),
            _proc_line("meminfo", "MemTotal"),
        )
        postgres, settings = (
            asyncio.run(_postgres(server)) if server else ("not used", {})
        )
        return cls(
            started_at=datetime.now(UTC),
            nproc=os.cpu_count() or 0,
            cpu=model.split(":", 1)[1].strip()
            if model
            else platform.processor() or "unknown",
            memory=f"{int(memory.split()[1]) / 2**20:.1f} GiB" if memory else "unknown",
            postgres=postgres,
            postgres_settings=settings,
            packages={name: _version(name) for name in PACKAGES},
            commit=_commit(),
            load_before=os.getloadavg(),
        )

    def finish(self) -> None:
        """Record the end time and the load average after the run."""
        self.finished_at, self.load_after = datetime.now(UTC), os.getloadavg()

    def lines(
        self,
        title: str = "Machine",
        shares: str = "client and server share these cores",
    ) -> list[str]:
        """The report's machine section."""
        end = (
            self.finished_at.isoformat(timespec="seconds") if self.finished_at else "-"
        )
        load = [
            f"{'/'.join(f'{x:.2f}' for x in load)}"
            for load in (self.load_before, self.load_after)
        ]
        return [
            f"## {title}",
            "",
            f"- Date: {self.started_at.isoformat(timespec='seconds')} to {end} (UTC)",
            f"- nproc: {self.nproc} ({self.cpu}), memory {self.memory}; {shares}",
            f"- PostgreSQL: {self.postgres} (local, TCP 127.0.0.1); "
            + ", ".join(f"{k}={v}" for k, v in self.postgres_settings.items()),
            f"- SQLite: {self.sqlite}; Python {self.python}; {self.system}",
            "- Packages: " + ", ".join(f"{k} {v}" for k, v in self.packages.items()),
            f"- eventstore commit: {self.commit}",
            f"- Load average (1/5/15 min) before: {load[0]}, after: {load[1]}",
            "",
        ]


# --- reports and the command line ------------------------------------------------------

NOTES_BEGIN: Final = "<!-- notes: kept when the file is regenerated -->"
NOTES_END: Final = "<!-- /notes -->"


def notes(path: Path | None) -> list[str]:
    """The hand-written notes block of an earlier report at `path`, kept on regeneration."""
    pattern = re.escape(NOTES_BEGIN) + r"\n(.*?)" + re.escape(NOTES_END)
    try:
        found = (
            re.search(pattern, path.read_text(encoding="utf-8"), re.DOTALL)
            if path
            else None
        )
    except OSError:
        found = None
    return [NOTES_BEGIN, found.group(1).strip("\n") if found else "", NOTES_END, ""]


def table(headers: str, rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """A markdown table; `headers` as its first line reads, "a | b"; `align` an "r"
    for each right-aligned column."""
    count = headers.count("|") + 1
    rule = ("---:" if a == "r" else "---" for a in align.ljust(count, "l"))
    lines = [f"| {headers} |", "|" + "|".join(rule) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def num(value: float | None, digits: int = 0, none: str = "-") -> str:
    """A figure with thousands separators, or `none`."""
    return none if value is None else f"{value:,.{digits}f}"


def mib(size: float) -> str:
    """Bytes as MiB."""
    return f"{size / 2**20:,.0f} MiB"


def parser(
    prog: str, description: str, output: str | None = None
) -> argparse.ArgumentParser:
    """A command line with --dsn, and --output (`output` its help) for a report."""
    made = argparse.ArgumentParser(prog=prog, description=description)
    made.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG_DSN", DEFAULT_DSN),
        help="PostgreSQL DSN of a database to CREATE DATABASE from ($BENCH_PG_DSN)",
    )
    if output is not None:
        made.add_argument("--output", type=Path, help=output)
    return made
