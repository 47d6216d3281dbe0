"""Append throughput: interleave the subjects, take medians, write bench/RESULTS.md.

.venv/bin/python -m bench.append --runs 3          # the full run (~6 minutes)
.venv/bin/python -m bench.append --quick           # a smoke run (seconds), writes nothing
"""

from __future__ import annotations

import asyncio
import cProfile
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.table import Table

from bench import harness, profiles
from bench.append_subjects import (
    eventsourcing,
    lifecycle,
    raw_aiosqlite,
    raw_asyncpg,
    store_append,
    time_writers,
)
from bench.harness import Environment, Run, Runs, Server, num, table
from bench.workload import Workload

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.append_subjects import AsyncTimer, AsyncWriter, Backend, Guard, Sample
    from bench.harness import Timing

RESULTS_PATH: Final = Path(__file__).parent / "RESULTS.md"
WARMUP_SCALE: Final = 0.1
LABELS: Final = {
    "raw_asyncpg": "raw asyncpg: one INSERT per event into an equivalent table",
    "store_append": "eventstore `store.append`, one event per append",
    "lifecycle": "eventstore `store.executions`: create, start, progress, complete",
    "eventsourcing": "eventsourcing 9 `PostgresApplicationRecorder.insert_events`, one event per call",
    "store_append_empty_log": "`store_append` on a brand-new, empty, never analyzed log",
    "lifecycle_empty_log": "`lifecycle` on a brand-new, empty, never analyzed log",
    "store_append_unguarded": "`store_append` with the log's append guard switched off (its cost)",
    "lifecycle_unguarded": "`lifecycle` with the log's append guard switched off (its cost)",
    "lifecycle_without_lifecycle_check": "`lifecycle` with the guard's lifecycle check skipped, its other checks kept",
    "raw_aiosqlite": "raw aiosqlite: BEGIN IMMEDIATE; INSERT; COMMIT per event (WAL)",
    "store_append_sqlite": "eventstore `store.append` on SQLite, one event per append",
    "lifecycle_sqlite": "eventstore `store.executions` on SQLite",
    "store_append_sqlite_unguarded": "`store_append_sqlite` with the log's guard triggers dropped (their cost)",
    "lifecycle_sqlite_unguarded": "`lifecycle_sqlite` with the log's guard triggers dropped (their cost)",
    "lifecycle_sqlite_without_lifecycle_check": "`lifecycle_sqlite` with the lifecycle guard trigger dropped, the others kept",
}
# The ratio to its baseline a subject should reach at the most writers.
TARGETS: Final = {"store_append": 0.7, "lifecycle": 0.5}
_LESS_GUARD: Final[dict[str, Guard]] = {
    "_unguarded": "off",
    "_without_lifecycle_check": "without_lifecycle",
}


@dataclass(frozen=True, slots=True)
class Subject:
    """Something that appends the workload and is timed; its key says what.

    `*_sqlite*` write to SQLite; `raw_*` are the baselines of their backend;
    `*_empty_log` start from an empty log even when the run preloads history;
    `*_unguarded` and `*_without_lifecycle_check` run with less of the log's
    append guard (migrations 0006, 0008), paired in the report with the fully
    guarded subject (`guard_of`).
    """

    key: str

    @property
    def backend(self) -> Backend:
        return "sqlite" if "sqlite" in self.key else "postgresql"

    @property
    def baseline(self) -> str | None:
        if self.key.startswith("raw_"):
            return None
        return "raw_aiosqlite" if self.backend == "sqlite" else "raw_asyncpg"

    @property
    def empty_log(self) -> bool:
        return self.key.endswith("_empty_log")

    @property
    def guard(self) -> Guard:
        return next((g for s, g in _LESS_GUARD.items() if self.key.endswith(s)), "full")

    @property
    def guard_of(self) -> str | None:
        suffix = next((s for s in _LESS_GUARD if self.key.endswith(s)), None)
        return self.key.removesuffix(suffix) if suffix else None

    def run(
        self, server: Server, workload: Workload, timer: AsyncTimer = time_writers
    ) -> Sample:
        """One measurement (setup, warm-up, timed section, teardown), in an event loop of its own."""
        if self.key == "eventsourcing":
            return eventsourcing(server, workload)
        if self.key == "raw_aiosqlite":
            return asyncio.run(raw_aiosqlite(server, workload))
        if self.key == "raw_asyncpg":
            return asyncio.run(raw_asyncpg(server, workload, timer=timer))
        kind = store_append if self.key.startswith("store_append") else lifecycle
        return asyncio.run(
            kind(self.backend, server, workload, timer=timer, guard=self.guard)
        )


BY_KEY: Final = {key: Subject(key) for key in LABELS}
# The empty-log and less-guarded variants are diagnostics, run on request (--subjects).
DEFAULT_SUBJECTS: Final = tuple(
    k for k, s in BY_KEY.items() if not s.empty_log and s.guard_of is None
)


@dataclass(frozen=True, slots=True)
class Config:
    """The settings of one run (see `python -m bench.append --help`)."""

    server: Server
    runs: int = 3
    writers: tuple[int, ...] = (8, 32)
    events: int = 12000
    sqlite_events: int = 3000
    events_per_writer: int | None = None
    history: int = 20000
    max_other_cores: float = 0.25
    retries: int = 2
    quiet_wait: float = 120.0
    subjects: tuple[str, ...] = DEFAULT_SUBJECTS
    warmup: bool = True
    profile: bool = True

    def workload(self, subject: Subject, writers: int, scale: float = 1.0) -> Workload:
        """The workload of one measurement (`scale` < 1 for the warm-up round)."""
        total = self.events if subject.backend == "postgresql" else self.sqlite_events
        per_writer = self.events_per_writer or max(total // writers, 1)
        history = (
            0 if subject.empty_log or subject.backend == "sqlite" else self.history
        )
        return Workload.sized(writers, max(int(per_writer * scale), 1), history)

    def schedule(
        self, rounds: int | None = None
    ) -> list[tuple[int, int, Subject, int]]:
        """(round, sequence, subject, writers): every (subject, writer count) pair
        once per round, in the order rotated by one pair each round."""
        pairs = [
            (BY_KEY[key], writers) for writers in self.writers for key in self.subjects
        ]
        return [
            (number, sequence, subject, writers)
            for number in range(1, (rounds or self.runs) + 1)
            for sequence, (subject, writers) in enumerate(
                harness.rotated(pairs, number), 1
            )
        ]


QUICK: Final = Config(
    server=Server(),
    runs=1,
    writers=(2,),
    events=32,
    sqlite_events=16,
    history=100,
    retries=0,
    quiet_wait=5.0,
    warmup=False,
)


def config_from(argv: Sequence[str]) -> tuple[Config, Path | None]:
    """Settings and the report's path from the command line (--quick changes the defaults only)."""
    parser = harness.parser(
        "python -m bench.append",
        "Append throughput: eventstore (store.append, lifecycle) against raw asyncpg, "
        "eventsourcing and raw aiosqlite, interleaved rounds, medians to RESULTS.md.",
        "where to write the report (default bench/RESULTS.md; --quick: nowhere)",
    )
    add = parser.add_argument
    add("--runs", type=int, help="interleaved rounds (default 3; --quick: 1)")
    add("--writers", type=int, nargs="+", help="writer counts (default 8 32)")
    add(
        "--events",
        type=int,
        help="events per PostgreSQL measurement, all writers (default 12000)",
    )
    add(
        "--sqlite-events", type=int, help="events per SQLite measurement (default 3000)"
    )
    add(
        "--events-per-writer",
        type=int,
        help="fixed events per writer (overrides --events and --sqlite-events)",
    )
    add(
        "--history",
        type=int,
        help="events of history bulk-loaded into each PostgreSQL log before a "
        "measurement, then ANALYZE (default 20000; 0: start empty; --quick: 100)",
    )
    add(
        "--subjects",
        nargs="+",
        choices=list(BY_KEY),
        default=list(DEFAULT_SUBJECTS),
        help="what to measure (default: all but the *_empty_log, *_unguarded and "
        "*_without_lifecycle_check diagnostics)",
    )
    add(
        "--max-other-cores",
        type=float,
        help="a measurement during which other programs kept more than this many "
        "cores busy is disturbed and run again (default 0.25)",
    )
    add(
        "--retries",
        type=int,
        help="how often a disturbed measurement is run again, after waiting for a "
        "quiet machine (default 2)",
    )
    add("--no-warmup", action="store_true", help="skip the untimed warm-up round")
    add("--no-profile", action="store_true", help="skip the cProfile section")
    add(
        "--quick",
        action="store_true",
        help="a smoke run of every subject: 1 round, 2 writers, a few events",
    )
    args = parser.parse_args(argv)
    names = (
        "runs",
        "events",
        "sqlite_events",
        "events_per_writer",
        "history",
        "max_other_cores",
        "retries",
    )
    changes: dict[str, Any] = {
        n: getattr(args, n) for n in names if getattr(args, n) is not None
    }
    if args.writers:
        changes["writers"] = tuple(args.writers)
    base = QUICK if args.quick else Config(Server(args.dsn))
    config = replace(
        base,
        server=Server(args.dsn),
        subjects=tuple(args.subjects),
        warmup=base.warmup and not args.no_warmup,
        profile=not args.no_profile,
        **changes,
    )
    if (
        min(
            config.runs,
            *config.writers,
            config.events,
            config.sqlite_events,
            config.events_per_writer or 1,
        )
        < 1
    ):
        raise SystemExit("--runs, --writers and the event counts must be positive")
    config = replace(
        config, history=max(config.history, 0), retries=max(config.retries, 0)
    )
    return config, args.output or (None if args.quick else RESULTS_PATH)


# --- the run ---------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    """Everything one run produced."""

    config: Config
    environment: Environment
    runs: Runs = field(default_factory=Runs)
    disturbed: list[Run] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    profile: tuple[profiles.Profile, profiles.Profile] | None = None
    profile_writers: int = 0


def measure(
    config: Config,
    subject: Subject,
    writers: int,
    number: int,
    sequence: int,
    scale: float = 1.0,
) -> Run:
    """One measurement; disturbed if others used too much CPU meanwhile."""
    sample = subject.run(config.server, config.workload(subject, writers, scale))
    run = Run(
        subject.key,
        number,
        sequence,
        sample.events,
        sample.timing,
        writers,
        sample.data_bytes,
    )
    return run.judged(config.max_other_cores)


def _line(run: Run) -> str:
    return (
        f"{run.subject:<23} W={run.writers:<2} {run.seconds:5.2f} s {run.rate:6,.0f} ev/s "
        f"µs/ev client {run.client_us:4.0f} server {run.server_us:4.0f} "
        f"other {num(run.timing.other_cores, 2)} cores"
        + (" [DISTURBED]" if run.disturbed else "")
    )


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def run(config: Config, console: Console) -> Results:
    """Warm up, run the interleaved rounds, profile; failures are recorded, not raised."""
    uses_postgres = any(BY_KEY[key].backend == "postgresql" for key in config.subjects)
    results = Results(
        config, Environment.collect(config.server if uses_postgres else None)
    )

    def quiet() -> float:
        return harness.wait_until_quiet(
            limit=config.max_other_cores, max_wait=config.quiet_wait
        )

    console.print(f"waited {quiet():.0f} s for a quiet machine")
    if config.warmup:
        console.rule("warm-up (untimed)")
        for number, sequence, subject, writers in config.schedule(rounds=1):
            try:
                warm = measure(config, subject, writers, number, sequence, WARMUP_SCALE)
                console.print(f"[dim]warm-up {_line(warm)}[/dim]")
            except Exception as exc:  # reported, the run goes on
                console.print(
                    f"[red]warm-up {subject.key} W={writers} failed: {exc!r}[/red]"
                )
    planned = config.schedule()
    for index, (number, sequence, subject, writers) in enumerate(planned, 1):
        if sequence == 1:
            console.rule(f"round {number}/{config.runs}")
        label = f"[{index:>2}/{len(planned)}]"
        for attempt in range(1, config.retries + 2):
            try:
                measured = replace(
                    measure(config, subject, writers, number, sequence), attempt=attempt
                )
            except Exception as exc:  # recorded in the report
                results.failures.append(
                    f"round {number}, `{subject.key}` at {writers} writers: {_error(exc)}"
                )
                console.print(
                    f"[red]{label} {subject.key} W={writers} failed: {_error(exc)}[/red]"
                )
                break
            console.print(f"{label} {_line(measured)}")
            if not measured.disturbed or attempt > config.retries:
                results.runs.append(measured)
                break
            results.disturbed.append(measured)
            console.print(
                f"[yellow]{label} disturbed: waited {quiet():.0f} s, again[/yellow]"
            )
    if config.profile and "store_append" in config.subjects:
        writers = max(config.writers)
        console.rule(f"profile: raw asyncpg and store.append at {writers} writers")
        quiet()
        try:
            workload = config.workload(BY_KEY["store_append"], writers)
            results.profile = (
                profile(config.server, workload, "raw_asyncpg"),
                profile(config.server, workload, "store_append"),
            )
            results.profile_writers = writers
        except Exception as exc:  # recorded in the report
            results.failures.append(
                f"round 0, `profile` at {writers} writers: {_error(exc)}"
            )
    results.environment.finish()
    return results


# --- the profile -----------------------------------------------------------------------

RULES: Final = profiles.Rules(
    categories=(
        "eventstore",
        "pydantic",
        "sqlalchemy",
        "asyncpg",
        "asyncio event loop",
        "socket send/recv",
        "hashing",
        "json, uuid, datetime, other stdlib",
        "bench driver",
        "other builtins",
        profiles.IDLE,
    ),
    builtins=(
        ("socket", "socket send/recv"),
        ("hashlib", "hashing"),
        ("sha256", "hashing"),
        ("asyncpg", "asyncpg"),
        ("pydantic", "pydantic"),
        ("_asyncio", "asyncio event loop"),
        ("_contextvars", "asyncio event loop"),
        ("_json", "json, uuid, datetime, other stdlib"),
    ),
    files=(
        ("/eventstore/", "eventstore"),
        ("/pydantic", "pydantic"),
        ("/sqlalchemy/", "sqlalchemy"),
        ("/asyncpg/", "asyncpg"),
        ("/asyncio/", "asyncio event loop"),
        ("selectors.py", "asyncio event loop"),
        ("/bench/", "bench driver"),
    ),
    other_builtin="other builtins",
    other_file="json, uuid, datetime, other stdlib",
    hidden=("/asyncio/", "/bench/", "_contextvars.Context", "builtins.exec"),
    own=("eventstore", "pydantic"),
)


def profile(server: Server, workload: Workload, key: str) -> profiles.Profile:
    """One subject with cProfile on for its timed section, in this process."""
    profiler = cProfile.Profile()

    async def timer(writers: Sequence[AsyncWriter]) -> Timing:
        return await profiles.profiled(profiler, lambda: time_writers(writers))()

    sample = BY_KEY[key].run(server, workload, timer)
    return profiles.summarize(
        key, profiler, RULES, events=sample.events, seconds=sample.timing.seconds
    )


# --- RESULTS.md ------------------------------------------------------------------------

METHOD: Final = """\
## Method

- {runs} interleaved rounds: each round runs every (subject, writer count) pair once, in a fixed order that starts one pair later each round; the tables give the median over rounds.
- Every measurement gets a fresh database: PostgreSQL `CREATE DATABASE bench_<random>`, migrated with `store.migrate()`, dropped `WITH (FORCE)` afterwards (the eventsourcing peer gets its own fresh database with its own tables); SQLite a new file in a temporary directory, WAL mode, migrated the same way.
- {history}
- Workload: W concurrent writers (W = {writers}); each writer drives its own streams one after another, 4 events per stream, one event per append, one transaction per append, `expected_version` = the previous version. Payloads are ~300-byte JSON objects generated up front from a fixed seed (encoding and hashing them is measured work). {sizes}
- Lifecycle: per execution `create` (inputs), `start`, `progress` (detail, usage metrics), `complete` (result, usage metrics) = 4 events; each writer has its own message, all share one graph (created untimed). `ExecutionStarted` carries only a worker id, so the mean payload is smaller.
- Raw asyncpg: `asyncpg.create_pool(max_size=W)`, one `INSERT ... RETURNING position` per event (autocommit: its own transaction) into `raw_events`, a table in the same database with the columns, unique keys, `xid8` default and `(transaction_id, position)` index of `execution_events`; the hash is sha256(previous hash || payload) chained by the client. The store: `EventStore.open(url, settings=StoreSettings(pool_size=W))`.
- eventsourcing: `PostgresDatastore(pool_size=W)` + `PostgresApplicationRecorder.insert_events([StoredEvent])`, one event per call from W threads (`ThreadPoolExecutor(W)`); each call is a transaction that takes the library's EXCLUSIVE table lock and NOTIFYs, as designed.
- Raw aiosqlite: one connection per writer, an asyncio lock queues the writers (as the store does), `BEGIN IMMEDIATE; INSERT; COMMIT` per event, default `synchronous` (FULL).
- Before the rounds, an untimed warm-up round of every pair at a tenth of the size; before every timed section, an untimed warm-up of one stream per writer on the same pool.
- events/s = events of the timed section / its wall time. Client CPU = `time.process_time()` of this process (all its threads; SQLite runs inside it). Server CPU = the CPU time (`/proc/<pid>/stat`) of the PostgreSQL processes serving the benchmark: the backends of the measurement's own `bench_*` database and the server's shared processes (WAL writer, checkpointer ...). Other programs = the machine's busy time (`/proc/stat`) minus both, in cores: the kernel's interrupt work and whatever else ran. The machine is shared: a measurement during which other programs kept more than {max_other_cores} cores busy counts as disturbed and is run again (up to {retries} times, after waiting for a quiet machine); disturbed attempts are listed at the end, not used.
- Stored payload size: PostgreSQL `octet_length(data::text)` (jsonb's text form adds a space after `:` and `,`) or `octet_length(state)` (eventsourcing); SQLite `length(data)`.
"""
GUARD: Final = """\
## The append guard's cost

The same subject with less of the log's append guard (migrations 0006, 0008) in its fresh database, measured in the same rounds: `*_unguarded` has none (PostgreSQL's trigger disabled, SQLite's guard triggers dropped), `*_without_lifecycle_check` all but the lifecycle check (PostgreSQL's guard function returns before that section, SQLite's lifecycle trigger dropped). A ratio is fully guarded over less guarded events/s: 1 means the part left out costs nothing.
"""
PROFILE: Final = """\
cProfile of one extra, untimed-for-the-table run of `raw_asyncpg` and then `store_append` at {writers} writers ({events} events each), in this process, profiler on for the timed section only. Own time (not callees') per event, grouped by where it was spent; cProfile's clock is the wall clock, so the event loop's wait in epoll shows as idle. The profiler inflates Python code more than C code: read the split, not the absolute numbers.

Under the profiler: raw asyncpg {raw_rate:,.0f} events/s, store.append {store_rate:,.0f} events/s.
"""


def _n(value: float | None, digits: int = 0) -> str:
    return num(value, digits, none="n/a")


def _median(runs: list[Run], value: str) -> float:
    return float(statistics.median(getattr(r, value) for r in runs))


def _pairs(results: Results) -> list[tuple[Subject, int, list[Run]]]:
    """(subject, writers, its runs) of every pair that finished, in table order."""
    config = results.config
    found = (
        (BY_KEY[k], w, results.runs.of(k, w))
        for w in config.writers
        for k in config.subjects
    )
    return [pair for pair in found if pair[2]]


def _round_ratios(results: Results, subject: Subject, writers: int) -> list[float]:
    if subject.baseline is None:
        return []
    return results.runs.per_round(subject.key, subject.baseline, writers=writers)


def _summary(results: Results, backend: str) -> list[str]:
    rows = [
        [
            f"`{s.key}`",
            str(w),
            _n(results.runs.median(s.key, writers=w)),
            "1 (baseline)"
            if s.baseline is None
            else f"{_n(results.runs.ratio(s.key, s.baseline, writers=w), 2)}x",
            ", ".join(f"{r:.2f}" for r in _round_ratios(results, s, w)) or "-",
            _n(_median(runs, "client_us")),
            _n(_median(runs, "server_us")) if backend == "postgresql" else "-",
            _n(statistics.mean(r.data_bytes for r in runs)),
            ", ".join(f"{r.rate:,.0f}" for r in runs),
        ]
        for s, w, runs in _pairs(results)
        if s.backend == backend
    ]
    headers = "subject | writers | median events/s | ratio of medians | per-round ratios | client CPU µs/event (median) | server CPU µs/event (median) | stored payload B (mean) | events/s per round"
    return table(headers, rows)


def _targets(results: Results) -> list[str]:
    writers, lines = max(results.config.writers), []
    for key in results.config.subjects:
        if key in TARGETS:
            baseline = BY_KEY[key].baseline or ""
            ratio = results.runs.ratio(key, baseline, writers=writers)
            verdict = (
                "n/a"
                if ratio is None
                else ("met" if ratio >= TARGETS[key] else "NOT met")
            )
            lines.append(
                f"- `{key}` at {writers} writers: {_n(ratio, 2)}x `{baseline}` (target >= {TARGETS[key]}x): **{verdict}**"
            )
    return lines or ["- none measured"]


def _guard(results: Results) -> list[str]:
    """Each subject against itself with less of the log's append guard, round by round."""
    rows = []
    for less, writers, off in _pairs(results):
        on = results.runs.of(less.guard_of or "", writers)
        if less.guard_of is None or not on:
            continue
        per_round = results.runs.per_round(less.guard_of, less.key, writers=writers)
        cpu_on, cpu_off = (
            statistics.median(r.client_us + r.server_us for r in runs)
            for runs in (on, off)
        )
        median_on = results.runs.median(less.guard_of, writers=writers)
        median_off = results.runs.median(less.key, writers=writers)
        rows.append(
            [
                f"`{less.guard_of}`",
                f"`{less.key}`",
                str(writers),
                _n(median_on),
                _n(median_off),
                f"{_n(results.runs.ratio(less.guard_of, less.key, writers=writers), 3)}x",
                ", ".join(f"{r:.3f}" for r in per_round),
                _n(statistics.median(per_round), 3) + "x" if per_round else "n/a",
                _n(cpu_on),
                _n(cpu_off),
                f"{cpu_on - cpu_off:+.0f}",
            ]
        )
    headers = "subject | with less guard | writers | guarded events/s (median) | with less guard events/s (median) | ratio of medians | per-round ratios | median per-round ratio | guarded CPU µs/event (client + server) | with less guard | difference"
    return [GUARD, *table(headers, rows), ""] if rows else []


def _cpu_split(results: Results) -> list[str]:
    nproc, rows = results.environment.nproc, []
    for s, writers, runs in _pairs(results):
        if s.backend == "postgresql":
            client, server = _median(runs, "client_us"), _median(runs, "server_us")
            together = client + server
            rows.append(
                [
                    f"`{s.key}`",
                    str(writers),
                    _n(client),
                    _n(server),
                    _n(together),
                    _n(results.runs.median(s.key, writers=writers)),
                    _n(nproc * 1e6 / together if together else None),
                ]
            )
    if not rows:
        return []
    headers = f"subject | writers | client µs/event | server µs/event | together | median events/s | {nproc} cores / together"
    return [
        "CPU per event on PostgreSQL (medians over rounds): the client process against the server processes serving the "
        f"benchmark. Client and server share {nproc} cores, so {nproc:,} s of CPU per second is the most there is; the last "
        "column is the throughput that budget would allow if nothing else ran and nothing waited.",
        "",
        *table(headers, rows),
        "",
    ]


def _profile(results: Results, path: Path | None) -> list[str]:
    lines = ["## Where the time goes", "", *_cpu_split(results)]
    if results.profile is None:
        return [*lines, "Not profiled in this run (`--no-profile`).", ""]
    raw, store = results.profile
    rows = [
        [c, f"{raw.us(c):.1f}", f"{store.us(c):.1f}", f"{store.us(c) - raw.us(c):+.1f}"]
        for c in RULES.categories
        if raw.us(c) >= 0.05 or store.us(c) >= 0.05
    ]
    rows.append(
        [
            "**client busy (all but idle)**",
            f"**{raw.busy_us:.1f}**",
            f"**{store.busy_us:.1f}**",
            f"**{store.busy_us - raw.busy_us:+.1f}**",
        ]
    )
    ours = sum(store.us(c) for c in ("eventstore", "pydantic", "sqlalchemy"))
    driver = ("asyncpg", "asyncio event loop", "socket send/recv")
    store_driver, raw_driver = (sum(p.us(c) for c in driver) for p in (store, raw))
    return [
        *lines,
        PROFILE.format(
            writers=results.profile_writers,
            events=store.events,
            raw_rate=raw.events / raw.seconds,
            store_rate=store.events / store.seconds,
        ),
        *table(
            "where (own time) | raw asyncpg µs/event | store.append µs/event | difference",
            rows,
        ),
        "",
        f"In `store.append`, eventstore's own code plus pydantic and SQLAlchemy take {ours:.1f} µs/event "
        f"({ours / store.busy_us:.0%} of the busy client time); asyncpg, the event loop and socket calls "
        f"{store_driver:.1f} µs/event ({store_driver / store.busy_us:.0%}), against {raw_driver:.1f} µs/event in raw "
        f"asyncpg. Idle (waiting for the server): raw {raw.us(profiles.IDLE):.1f}, store.append "
        f"{store.us(profiles.IDLE):.1f} µs/event.",
        "",
        "Top functions of `store.append` by cumulative time (the event loop's own frames left out; µs per event, "
        f"{store.events} events; a coroutine counts one call per resumption, so an append that awaits twice shows 3 calls):",
        "",
        *profiles.functions(store, store.top),
        "",
        "eventstore's and pydantic's functions of `store.append` by own time (µs per event; builtins they call are not "
        "included here):",
        "",
        *profiles.functions(store, store.own_top, by_own=True),
        "",
        "Top functions of raw asyncpg, for comparison:",
        "",
        *profiles.functions(raw, raw.top[:8]),
        "",
        *harness.notes(path),
    ]


def _per_run(runs: list[Run]) -> list[str]:
    headers = "round | order | subject | writers | events | wall s | events/s | client CPU µs/event | server CPU µs/event | other programs, cores | attempt"
    rows = [
        [
            str(r.round),
            str(r.sequence),
            f"`{r.subject}`",
            str(r.writers),
            str(r.count),
            f"{r.seconds:.3f}",
            f"{r.rate:,.0f}",
            f"{r.client_us:.0f}",
            f"{r.server_us:.0f}" if BY_KEY[r.subject].backend == "postgresql" else "-",
            _n(r.timing.other_cores, 2),
            f"{r.attempt}" + (" (disturbed)" if r.disturbed else ""),
        ]
        for r in sorted(runs, key=lambda r: (r.round, r.sequence, r.attempt))
    ]
    return table(headers, rows)


def render(results: Results, command: str, path: Path | None) -> str:
    """RESULTS.md (the notes block of the file at `path` kept)."""
    config = results.config
    history = (
        f"History: before the warm-up, each PostgreSQL log (`execution_events`, `raw_events`, eventsourcing's "
        f"`stored_events`) gets {config.history:,} events of history in 4-event streams, bulk-inserted by one SQL "
        "statement, and the database is `ANALYZE`d, so that the measurement times a log in service rather than the "
        "first seconds of a brand-new one"
        + (
            ". The `*_empty_log` subjects skip this: they append to an empty, never analyzed log, as in a plain fresh database."
            if any(BY_KEY[key].empty_log for key in config.subjects)
            else "."
        )
        + " SQLite logs start empty."
        if config.history
        else "History: none; every log starts empty and never analyzed."
    )
    sizes = (
        f"{config.events_per_writer} events per writer."
        if config.events_per_writer
        else f"{config.events} events per PostgreSQL measurement and {config.sqlite_events} per SQLite measurement, "
        "split evenly among the writers."
    )
    lines = [
        "# Append throughput: eventstore against raw drivers and eventsourcing",
        "",
        f"Generated by `{command}` (bench/append.py); the figures below are measured, none are edited.",
        "",
        *results.environment.lines(),
        METHOD.format(
            runs=config.runs,
            history=history,
            writers=", ".join(map(str, config.writers)),
            sizes=sizes,
            max_other_cores=config.max_other_cores,
            retries=config.retries,
        ),
        "## Results: PostgreSQL (ratios against raw asyncpg)",
        "",
        *_summary(results, "postgresql"),
        "",
        "## Results: SQLite (ratios against raw aiosqlite)",
        "",
        *_summary(results, "sqlite"),
        "",
        "## Targets",
        "",
        *_targets(results),
        "",
        *_guard(results),
    ]
    if results.failures:
        lines += [
            "## Failures",
            "",
            *(f"- {failure}" for failure in results.failures),
            "",
        ]
    lines += [
        *_profile(results, path),
        "## Per-run figures",
        "",
        *_per_run(results.runs),
        "",
    ]
    if results.disturbed:
        lines += [
            "Disturbed attempts, run again and left out of the medians:",
            "",
            *_per_run(results.disturbed),
            "",
        ]
    return "\n".join(lines)


def summary_table(results: Results) -> Table:
    """The medians, for the terminal."""
    terminal = Table(title="median events/s")
    for header in ("subject", "writers", "median events/s", "vs baseline", "rounds"):
        terminal.add_column(header, justify="left" if header == "subject" else "right")
    for writers in results.config.writers:
        for key in results.config.subjects:
            baseline, median = (
                BY_KEY[key].baseline,
                results.runs.median(key, writers=writers),
            )
            ratio = (
                results.runs.ratio(key, baseline, writers=writers) if baseline else None
            )
            terminal.add_row(
                key,
                str(writers),
                "failed" if median is None else f"{median:,.0f}",
                "-" if ratio is None else f"{ratio:.2f}x {baseline}",
                str(len(results.runs.of(key, writers))),
            )
    return terminal


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.append`` and ``python -m bench``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    config, output = config_from(arguments)
    console = Console()
    results = run(config, console)
    console.print(summary_table(results))
    if output is not None:
        command = " ".join(["python -m bench.append", *arguments])
        output.write_text(render(results, command, output), encoding="utf-8")
        console.print(f"wrote {output}")
    for failure in results.failures:
        console.print(f"[red]failed: {failure}[/red]")
    if results.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
