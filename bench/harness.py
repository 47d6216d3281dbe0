"""What every benchmark shares: throwaway databases, who used the CPU, clocks,
interleaved rounds and their medians, the machine, reports and command lines."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import operator
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
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import jinja2

from eventstore import EventStore
from eventstore.settings import StoreSettings

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterable,
        Iterator,
        Sequence,
    )

    from rich.console import Console

T = TypeVar("T")
REPOSITORY: Final = Path(__file__).parent.parent
CODE: Final = ("eventstore", "projections", "migrations")
DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
GUARD: Final = "TRIGGER execution_events_guard_append"  # the log's append guard
PROC: Final = Path("/proc")
TICK: Final = os.sysconf("SC_CLK_TCK")

# --- databases ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
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


async def fetchval(dsn: str, query: str, *arguments: Any) -> Any:
    """The first value of a query's first row, on a fresh connection."""
    async with connected(dsn) as connection:
        return await connection.fetchval(query, *arguments)


# The database of the measurement running now: only its backends count as
# the benchmark's server, not those of other bench runs.
CURRENT_DATABASE: ContextVar[str | None] = ContextVar("CURRENT_DATABASE", default=None)


@contextlib.asynccontextmanager
async def throwaway_database(
    server: Server, prefix: str = "bench_", *, keep: bool = False
) -> AsyncIterator[str]:
    """A fresh database for the block, dropped afterwards unless `keep`; yields its DSN."""
    name = f"{prefix}{secrets.token_hex(6)}"
    await execute(server.admin_dsn, f'CREATE DATABASE "{name}"')
    token = CURRENT_DATABASE.set(name)
    try:
        yield server.dsn(name)
    finally:
        CURRENT_DATABASE.reset(token)
        if not keep:
            drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            await execute(server.admin_dsn, drop)


@contextlib.asynccontextmanager
async def migrated_store(url: str, pool_size: int = 2) -> AsyncIterator[EventStore]:
    """A store on `url` with `pool_size` connections, migrated; closed afterwards."""
    settings = StoreSettings(pool_size=pool_size)
    async with EventStore.open(url, settings=settings) as store:
        await store.migrate()
        yield store


async def migrate(url: str) -> None:
    """Create the store's schema in the database at `url`."""
    async with migrated_store(url):
        pass


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

_SHARED: Final = re.compile(
    "checkpointer|background writer|walwriter|autovacuum launcher|"
    "logical replication launcher|archiver|stats collector"
)


def process_cpu(pid: int | str) -> float | None:
    """CPU seconds (user + system) of one process, None once it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def server_processes(database: str | None = None) -> dict[int, float]:
    """CPU seconds, by pid, of the postmaster, the server's shared processes and
    the backends of `database` (None: of every bench_* database)."""
    found: dict[int, float] = {}
    for entry in PROC.iterdir():
        try:
            if not entry.name.isdigit() or (entry / "comm").read_text() != "postgres\n":
                continue
            raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        title = raw.decode(errors="replace")
        if not title.startswith("postgres:"):
            ours = "-D" in title.split()  # the postmaster itself
        else:
            backend = f" {database} " in f"{title} " if database else " bench_" in title
            ours = backend or bool(_SHARED.search(title))
        if ours and (used := process_cpu(entry.name)) is not None:
            found[int(entry.name)] = used
    return found


def busy_seconds() -> float | None:
    """Busy CPU seconds of all cores since boot (all but idle and iowait)."""
    with contextlib.suppress(OSError):
        line = (PROC / "stat").read_text().split("\n", 1)[0]
        ticks = [int(t) for t in line.split()[1:]]
        return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK
    return None


class Snapshot(NamedTuple):
    """CPU seconds since boot: all cores busy (None off Linux), and our server's processes."""

    machine: float | None
    server: dict[int, float]


def snapshot(database: str | None) -> Snapshot:
    return Snapshot(busy_seconds(), server_processes(database))


def wait_until_quiet(*, limit: float, max_wait: float) -> float:
    """Sleep until the machine's busy time stays below `limit` cores for 2 s in a
    row; returns the seconds waited (at most about `max_wait`)."""
    started, quiet, previous = time.monotonic(), 0, busy_seconds()
    while previous is not None and quiet < 2 and time.monotonic() - started < max_wait:
        time.sleep(1.0)
        current = busy_seconds() or 0.0
        quiet, previous = quiet + 1 if current - previous < limit else 0, current
    return time.monotonic() - started


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


async def spawn(command: Sequence[str]) -> tuple[float, float, str]:
    """Run a command to its end: wall seconds, its CPU seconds, its stdout."""
    children, wall = children_cpu(), time.perf_counter()
    env = {**os.environ, "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=-1, stderr=-1, env=env
    )
    try:
        stdout, stderr = await process.communicate()
    except asyncio.CancelledError:
        # A sibling failed: its subject's other processes must not run on.
        process.kill()
        await process.wait()
        raise
    seconds = time.perf_counter() - wall
    if process.returncode != 0:
        error = stderr.decode(errors="replace").strip()
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}: {error}"
        )
    return seconds, children_cpu() - children, stdout.decode(errors="replace")


# --- clocks, runs, rounds ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    """Wall and CPU seconds of a timed section: client = this process (or a child),
    server = our PostgreSQL processes, machine = all cores' busy time; RSS in
    bytes, where measured."""

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
    """Started when made; `stop()` returns the Timing since. Client CPU counts this
    process and the children it waited for meanwhile. With `rss`, the peak RSS
    high-water mark is reset to the current RSS first (Linux >= 4.0), so that
    the peak is the timed section's own."""

    def __init__(self, database: str | None, *, rss: bool = False) -> None:
        self.rss, self.rss_before = rss, 0
        if rss:
            # without it, the peak is the process's so far
            with contextlib.suppress(OSError):
                (PROC / "self/clear_refs").write_text("5")
            with contextlib.suppress(OSError, IndexError):
                status = (PROC / "self/status").read_text()
                self.rss_before = int(status.split("VmRSS:", 1)[1].split()[0]) * 1024
        self.database, self.before = database, snapshot(database)
        self.wall, self.cpu = time.perf_counter(), _own_cpu()

    def stop(self, after: Snapshot | None = None) -> Timing:
        """The Timing since; `after` replaces the end snapshot."""
        seconds, cpu = time.perf_counter() - self.wall, _own_cpu() - self.cpu
        before, after = self.before, after or snapshot(self.database)
        server = sum(
            max(s - before.server.get(pid, 0.0), 0.0) for pid, s in after.server.items()
        )
        machine = None
        if before.machine is not None and after.machine is not None:
            machine = after.machine - before.machine
        peak = peak_rss() if self.rss else 0
        return Timing(seconds, cpu, server, machine, peak, self.rss_before)


def _own_cpu() -> float:
    return time.process_time() + children_cpu()


async def timed(
    work: Callable[[], Awaitable[T]],
    database: str | None = None,
    *,
    rss: bool = False,
    sample_server: bool = False,
) -> tuple[T, Timing]:
    """Await `work` on a Clock; its result and the Timing.

    With `sample_server`, the server's processes are sampled while `work` runs:
    a backend whose client (a child process) disconnects before the end takes
    its CPU counter along.
    """
    clock = Clock(database, rss=rss)
    if not sample_server:
        return await work(), clock.stop()
    seen = dict(clock.before.server)
    sampler = asyncio.create_task(sample_server_cpu(seen, database))
    try:
        result = await work()
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    after = snapshot(database)
    return result, clock.stop(Snapshot(after.machine, {**seen, **after.server}))


SERVER_SAMPLE_SECONDS: Final = 0.05
SCAN_EVERY: Final = 5  # samples between scans of /proc for new server processes (~2 ms)


async def sample_server_cpu(seen: dict[int, float], database: str | None) -> None:
    """Keep the latest CPU seconds of every server process: the known ones read
    every sample, new ones looked for every SCAN_EVERY samples."""
    for samples in itertools.count(1):
        await asyncio.sleep(SERVER_SAMPLE_SECONDS)
        if samples % SCAN_EVERY == 1:
            seen.update(server_processes(database))
            continue
        for pid in list(seen):
            if (used := process_cpu(pid)) is not None:
                seen[pid] = used


def peak_rss() -> int:
    """`ru_maxrss` of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One subject measured once: `count` events (or rows), in `round` at `sequence`;
    `attempt` > 1 when earlier attempts were disturbed."""

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
        return self.timing.seconds

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def client_us(self) -> float:
        return self.timing.client / self.count * 1e6

    @property
    def server_us(self) -> float:
        return self.timing.server / self.count * 1e6

    @property
    def cpu(self) -> float:
        return self.timing.client + self.timing.server

    def judged(self, limit: float, *, busy: bool = False) -> Run:
        """Disturbed if other programs kept more than `limit` cores busy (or `busy`)."""
        other = self.timing.other_cores
        disturbed = busy or self.disturbed or (other is not None and other > limit)
        return dataclasses.replace(self, disturbed=disturbed)

    def line(self) -> str:
        """One line for the terminal."""
        writers = f" W={self.writers:<2}" if self.writers else ""
        return (
            f"{self.subject:<24}{writers} {self.seconds:7.2f} s {self.rate:9,.0f}/s "
            f"µs/item client {self.client_us:5.1f} server {self.server_us:5.1f} "
            f"other {num(self.timing.other_cores, 2)} cores"
            + (f" PROBLEM: {self.problem}" if self.problem else "")
            + (" [DISTURBED]" if self.disturbed else "")
        )


def median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def percentile(values: Iterable[float], fraction: float) -> float:
    """The value at `fraction` of the sorted values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


class Runs(list[Run]):
    """The kept runs of a benchmark; medians and ratios of an attribute of the runs
    (their rate unless told otherwise) over the rounds."""

    def of(self, subject: str, writers: int = 0) -> list[Run]:
        found = (r for r in self if r.subject == subject and r.writers == writers)
        return sorted(found, key=lambda r: r.round)

    def median(
        self, subject: str, value: str = "rate", writers: int = 0
    ) -> float | None:
        return median(map(operator.attrgetter(value), self.of(subject, writers)))

    def ratio(
        self, mine: str, theirs: str | None, value: str = "rate", writers: int = 0
    ) -> float | None:
        """The ratio of the medians."""
        a = self.median(mine, value, writers)
        b = self.median(theirs or "", value, writers)
        return a / b if a is not None and b else None

    def per_round(
        self, mine: str, theirs: str | None, value: str = "rate", writers: int = 0
    ) -> list[float]:
        """Per round, `mine` over `theirs` in the same round."""
        get = operator.attrgetter(value)
        by_round = {r.round: get(r) for r in self.of(theirs or "", writers)}
        mine_ = self.of(mine, writers)
        return [get(r) / by_round[r.round] for r in mine_ if by_round.get(r.round)]


PER_RUN: Final = """\
| round | order | subject |{{ " writers |" if writers }} items | wall s | items/s | client CPU s | server CPU s | other programs, cores |{{ " peak RSS |" if rss }} attempt |
|---|---|---|{{ "---|" if writers }}---|---|---|---|---|---|{{ "---|" if rss }}---|
{% for r in runs|sort(attribute="round,sequence,attempt") %}
| {{ r.round }} | {{ r.sequence }} | `{{ r.subject }}` |{{ " %d |"|format(r.writers) if writers }} {{ r.count|num }} | {{ "%.3f"|format(r.seconds) }} | {{ r.rate|num }} | {{ "%.2f"|format(r.timing.client) }} | {{ "%.2f"|format(r.timing.server) }} | {{ r.timing.other_cores|n(2) }} |{{ " %s |"|format(r.timing.peak_rss|mib if r.timing.peak_rss else "-") if rss }} {{ r.attempt }}{{ " (disturbed)" if r.disturbed }}{{ " (" + r.problem + ")" if r.problem }} |
{% endfor %}
"""


def per_run_table(runs: Iterable[Run]) -> str:
    """Every run as a markdown table row (writers and peak RSS where measured)."""
    found = list(runs)
    writers = any(r.writers for r in found)
    rss = any(r.timing.peak_rss for r in found)
    return report(PER_RUN, runs=found, writers=writers, rss=rss)


@dataclasses.dataclass(slots=True)
class Rounds:
    """What interleaved rounds produced: the kept runs (medians come from these),
    the disturbed attempts that were run again, and the failures."""

    runs: Runs = dataclasses.field(default_factory=Runs)
    disturbed: list[Run] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)


async def until_quiet(limit: float, max_wait: float = 120.0) -> float:
    """`wait_until_quiet` off the event loop; the seconds waited."""
    return await asyncio.to_thread(wait_until_quiet, limit=limit, max_wait=max_wait)


async def interleaved(
    subjects: Sequence[T],
    measure: Callable[[T, int, int], Awaitable[Run]],
    *,
    rounds: int,
    max_other_cores: float,
    console: Console,
    retries: int = 2,
    quiet_wait: float = 120.0,
    into: Rounds | None = None,
) -> Rounds:
    """Measure every subject once per round, in the order `rotated` gives.

    `measure(subject, round, sequence)` returns its Run. A run during which
    other programs kept more than `max_other_cores` cores busy (or that the
    measure marked disturbed) is run again, up to `retries` times, after
    waiting for a quiet machine; the last attempt is kept either way. A
    failing measure is recorded in `failures` and the rounds go on; a run
    with a `problem` is kept and its problem recorded too.
    """
    found = into if into is not None else Rounds()
    for number in range(1, rounds + 1):
        console.rule(f"round {number}/{rounds}")
        for sequence, subject in enumerate(rotated(subjects, number), 1):
            for attempt in range(1, retries + 2):
                try:
                    run = await measure(subject, number, sequence)
                except Exception as exc:  # recorded in the report; the rounds go on
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    found.failures.append(f"round {number}, {subject}: {error}")
                    console.print(f"[red]{found.failures[-1]}[/red]")
                    break
                run = dataclasses.replace(run.judged(max_other_cores), attempt=attempt)
                console.print(run.line())
                if not run.disturbed or attempt > retries:
                    found.runs.append(run)
                    if run.problem:
                        found.failures.append(
                            f"round {number}, {run.subject}: {run.problem}"
                        )
                    break
                found.disturbed.append(run)
                waited = await until_quiet(max_other_cores, quiet_wait)
                console.print(f"[yellow]disturbed: waited {waited:.0f} s, again[/]")
    return found


def rotated(items: Sequence[T], round_number: int) -> list[T]:
    """A round's order: the fixed order, starting one later each round (1-based),
    so that no subject always runs first."""
    shift = (round_number - 1) % len(items)
    return [*items[shift:], *items[:shift]]


# --- the machine ---------------------------------------------------------------------

SETTINGS: Final = (
    *("shared_buffers", "synchronous_commit", "fsync", "wal_level", "autovacuum"),
    "max_connections",
)
PACKAGES: Final = (
    *("asyncpg", "aiosqlite", "sqlalchemy", "pydantic", "eventsourcing", "psycopg"),
)


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
    command = ["git", *arguments]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        run = subprocess.run(  # noqa: S603 - git, from PATH
            command, capture_output=True, text=True, check=True, cwd=REPOSITORY
        )
        return run.stdout.strip()
    return ""


async def _postgres(server: Server) -> str:
    async with connected(server.admin_dsn) as connection:
        settings = [f"{n}={await connection.fetchval(f'SHOW {n}')}" for n in SETTINGS]
        version = await connection.fetchval("SELECT version()")
    return f"{version} (local, TCP 127.0.0.1); " + ", ".join(settings)


class Environment:
    """The machine, the versions, the code and the load, at the run's start and end."""

    def __init__(self, server: Server | None) -> None:
        model = re.search(r"model name\s*:\s*(.*)", (PROC / "cpuinfo").read_text())
        memory = int((PROC / "meminfo").read_text().split()[1]) / 2**20
        changed = len(_git("status", "--porcelain", "--", *CODE).splitlines())
        self.nproc, self.started_at = os.cpu_count() or 0, datetime.now(UTC)
        self.finished_at: datetime | None = None
        self.load = [os.getloadavg(), (0.0, 0.0, 0.0)]
        self.cpu = f"{model.group(1) if model else 'unknown'}), memory {memory:.1f} GiB"
        modified = " ({} paths of eventstore/, projections/, migrations/ modified or untracked)"
        self.facts = [
            f"PostgreSQL: {asyncio.run(_postgres(server)) if server else 'not used'}",
            f"SQLite: {sqlite3.sqlite_version}; Python {platform.python_version()}; {platform.platform()}",
            "Packages: " + ", ".join(f"{name} {_version(name)}" for name in PACKAGES),
            f"eventstore commit: {_git('rev-parse', '--short', 'HEAD') or 'unknown'}"
            + (modified.format(changed) if changed else ""),
        ]

    def finish(self) -> None:
        """Record the end time and the load average after the run."""
        self.finished_at, self.load[1] = datetime.now(UTC), os.getloadavg()

    def lines(
        self,
        title: str = "Machine",
        shares: str = "client and server share these cores",
    ) -> str:
        """The report's machine section."""
        end = (
            self.finished_at.isoformat(timespec="seconds") if self.finished_at else "-"
        )
        before, after = ("/".join(f"{x:.2f}" for x in load) for load in self.load)
        facts = "".join(f"- {fact}\n" for fact in self.facts)
        return (
            f"## {title}\n\n- Date: {self.started_at.isoformat(timespec='seconds')} to {end} (UTC)\n"
            f"- nproc: {self.nproc} ({self.cpu}; {shares}\n{facts}"
            f"- Load average (1/5/15 min) before: {before}, after: {after}\n"
        )


# --- reports and command lines -------------------------------------------------------

NOTES_BEGIN: Final = "<!-- notes: kept when the file is regenerated -->"
NOTES_END: Final = "<!-- /notes -->"


def notes(path: Path | None) -> str:
    """The hand-written notes block of an earlier report at `path`, kept on regeneration."""
    text = path.read_text(encoding="utf-8") if path and path.exists() else ""
    kept = ""
    if NOTES_BEGIN in text:
        kept = text.split(NOTES_BEGIN + "\n", 1)[1].split(NOTES_END, 1)[0]
    return f"{NOTES_BEGIN}\n{kept.strip()}\n{NOTES_END}\n"


def num(value: float | None, digits: int = 0, none: str = "-") -> str:
    """A figure with thousands separators, or `none`."""
    return none if value is None else f"{value:,.{digits}f}"


def mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


REPORTS: Final = jinja2.Environment(  # noqa: S701 - markdown, not HTML
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
REPORTS.filters.update(
    num=num,
    n=lambda value, digits=0: num(value, digits, "n/a"),
    mib=mib,
    ratios=lambda values, digits=2: ", ".join(f"{v:.{digits}f}" for v in values),
)


def report(template: str, **context: Any) -> str:
    """A report from its template (markdown with jinja2: the layout as it reads)."""
    text = REPORTS.from_string(template).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def options(
    prog: str,
    description: str,
    settings: Any,
    output: str | None,
    quick: str | None = None,
    **helps: str,
) -> argparse.ArgumentParser:
    """A command line with --dsn, --output and --quick (`output`, `quick` their
    helps) unless None, and an option per field of the `settings` dataclass that
    `helps` describes: a tuple takes several values, `foo=True` gives --no-foo."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    dsn = os.environ.get("BENCH_PG_DSN", DEFAULT_DSN)
    parser.add_argument(
        "--dsn",
        default=dsn,
        help="PostgreSQL DSN of a database to CREATE DATABASE from ($BENCH_PG_DSN)",
    )
    if output is not None:
        parser.add_argument("--output", type=Path, help=output)
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    for name, help_ in helps.items():
        default, option = getattr(settings, name), "--" + name.replace("_", "-")
        if isinstance(default, bool):
            no = f"--no-{option[2:]}"
            parser.add_argument(
                no, dest=name, action="store_false", default=None, help=help_
            )
        else:
            many = isinstance(default, tuple)
            kind = type(default[0] if many else default or 1)
            nargs = "+" if many else None
            parser.add_argument(option, type=kind, nargs=nargs, help=help_)
    return parser


def configured(settings: Any, args: argparse.Namespace) -> Any:
    """`settings` with the options given on the command line."""
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(settings)}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return dataclasses.replace(
        settings, **{k: v for k, v in given.items() if v is not None}
    )
