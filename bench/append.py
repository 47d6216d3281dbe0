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
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.markdown import Markdown

from bench import harness, profiles
from bench.append_subjects import (
    eventsourcing,
    raw_aiosqlite,
    raw_asyncpg,
    store_subject,
    time_writers,
)
from bench.harness import Environment, Run, Runs, Server, median, num
from bench.workload import Workload

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.append_subjects import AsyncTimer, AsyncWriter, Backend, Guard, Sample
    from bench.harness import Timing

RESULTS_PATH: Final = Path(__file__).parent / "RESULTS.md"
WARMUP_SCALE: Final = 0.1
# What each subject is, from its key: see Subject.
SUBJECTS: Final = (
    *("raw_asyncpg", "store_append", "lifecycle", "eventsourcing"),
    *("store_append_empty_log", "lifecycle_empty_log"),
    *(
        "store_append_unguarded",
        "lifecycle_unguarded",
        "lifecycle_without_lifecycle_check",
    ),
    *("raw_aiosqlite", "store_append_sqlite", "lifecycle_sqlite"),
    *("store_append_sqlite_unguarded", "lifecycle_sqlite_unguarded"),
    "lifecycle_sqlite_without_lifecycle_check",
)
# The ratio to its baseline a subject should reach at the most writers.
TARGETS: Final = {"store_append": 0.9, "lifecycle": 0.85}  # issue 16, at 32 writers
_LESS_GUARD: Final[dict[str, Guard]] = {
    "_unguarded": "off",
    "_without_lifecycle_check": "without_lifecycle",
}


@dataclass(frozen=True, slots=True)
class Subject:
    """Something that appends the workload and is timed; its key says what:
    `raw_*` the baselines, `store_append*` / `lifecycle*` eventstore, `*_sqlite*`
    on SQLite, `*_empty_log` on a never analyzed log without history,
    `*_unguarded` / `*_without_lifecycle_check` with less of the append guard
    (paired in the report with the fully guarded subject, `guard_of`)."""

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
            return asyncio.run(eventsourcing(server, workload))
        if self.key == "raw_aiosqlite":
            return asyncio.run(raw_aiosqlite(server, workload))
        if self.key == "raw_asyncpg":
            return asyncio.run(raw_asyncpg(server, workload, timer=timer))
        kind = "store_append" if self.key.startswith("store_append") else "lifecycle"
        return asyncio.run(
            store_subject(
                kind, self.backend, server, workload, timer=timer, guard=self.guard
            )
        )


BY_KEY: Final = {key: Subject(key) for key in SUBJECTS}
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
    parser = harness.options(
        "python -m bench.append",
        "Append throughput: eventstore (store.append, lifecycle) against raw asyncpg, eventsourcing and raw aiosqlite, "
        "interleaved rounds, medians to RESULTS.md.",
        Config(Server()),
        "where to write the report (default bench/RESULTS.md; --quick: nowhere)",
        "a smoke run of every subject: 1 round, 2 writers, a few events",
        runs="interleaved rounds (default 3; --quick: 1)",
        writers="writer counts (default 8 32)",
        events="events per PostgreSQL measurement, all writers (default 12000)",
        sqlite_events="events per SQLite measurement (default 3000)",
        events_per_writer="fixed events per writer (overrides --events and --sqlite-events)",
        history="events of history bulk-loaded into each PostgreSQL log before a measurement, then ANALYZE "
        "(default 20000; 0: start empty; --quick: 100)",
        max_other_cores="a measurement during which other programs kept more than this many cores busy is "
        "disturbed and run again (default 0.25)",
        retries="how often a disturbed measurement is run again, after waiting for a quiet machine (default 2)",
        warmup="skip the untimed warm-up round",
        profile="skip the cProfile section",
    )
    parser.add_argument(
        "--subjects",
        nargs="+",
        choices=SUBJECTS,
        help="what to measure (default: all but the *_empty_log, *_unguarded and *_without_lifecycle_check diagnostics)",
    )
    args = parser.parse_args(argv)
    config: Config = harness.configured(QUICK if args.quick else Config(Server()), args)
    config = replace(
        config,
        server=Server(args.dsn),
        history=max(config.history, 0),
        retries=max(config.retries, 0),
    )
    sizes = (config.runs, *config.writers, config.events, config.sqlite_events)
    if min(*sizes, config.events_per_writer or 1) < 1:
        raise SystemExit("--runs, --writers and the event counts must be positive")
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
    timing, size = sample.timing, sample.data_bytes
    run = Run(subject.key, number, sequence, sample.events, timing, writers, size)
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
    results = Results(config, Environment(config.server if uses_postgres else None))

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
    """
    eventstore: /eventstore/
    pydantic: /pydantic ~pydantic
    sqlalchemy: /sqlalchemy/
    asyncpg: /asyncpg/ ~asyncpg
    asyncio event loop: /asyncio/ selectors.py ~_asyncio ~_contextvars
    socket send/recv: ~socket
    hashing: ~hashlib ~sha256
    json, uuid, datetime, other stdlib: ~_json *file
    bench driver: /bench/
    other builtins: *builtin
    """,
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

REPORT: Final = """\
# Append throughput: eventstore against raw drivers and eventsourcing

Generated by `{{ command }}` (bench/append.py); the figures below are measured, none are edited.

{{ machine }}
## Method

- {{ c.runs }} interleaved rounds: each round runs every (subject, writer count) pair once, in a fixed order that starts one pair later each round; the tables give the median over rounds.
- Every measurement gets a fresh database: PostgreSQL `CREATE DATABASE bench_<random>`, migrated with `store.migrate()`, dropped `WITH (FORCE)` afterwards (the eventsourcing peer gets its own fresh database with its own tables); SQLite a new file in a temporary directory, WAL mode, migrated the same way.
{% if c.history %}
- History: before the warm-up, each PostgreSQL log (`execution_events`, `raw_events`, eventsourcing's `stored_events`) gets {{ c.history|num }} events of history in 4-event streams, bulk-inserted by one SQL statement, and the database is `ANALYZE`d, so that the measurement times a log in service rather than the first seconds of a brand-new one{{ ". The `*_empty_log` subjects skip this: they append to an empty, never analyzed log, as in a plain fresh database." if empty_log else "." }} SQLite logs start empty.
{% else %}
- History: none; every log starts empty and never analyzed.
{% endif %}
- Workload: W concurrent writers (W = {{ c.writers|join(", ") }}); each writer drives its own streams one after another, 4 events per stream, one event per append, one transaction per append, `expected_version` = the previous version. Payloads are ~300-byte JSON objects generated up front from a fixed seed (encoding and hashing them is measured work). {% if c.events_per_writer %}{{ c.events_per_writer }} events per writer.{% else %}{{ c.events }} events per PostgreSQL measurement and {{ c.sqlite_events }} per SQLite measurement, split evenly among the writers.{% endif %}

- Lifecycle: per execution `create` (inputs), `start`, `progress` (detail, usage metrics), `complete` (result, usage metrics) = 4 events; each writer has its own message, all share one graph (created untimed). `ExecutionStarted` carries only a worker id, so the mean payload is smaller.
- Raw asyncpg: `asyncpg.create_pool(max_size=W, reset=keep_session)` (as the store's pool: no reset query on release, which would be a second round trip per event), one `INSERT ... RETURNING position` per event (autocommit: its own transaction) into `raw_events`, a table in the same database with the columns, unique keys, `xid8` default and `(transaction_id, position)` index of `execution_events`; the hash is sha256(previous hash || payload) chained by the client. The store: `EventStore.open(url, settings=StoreSettings(pool_size=W))`.
- eventsourcing: `PostgresDatastore(pool_size=W)` + `PostgresApplicationRecorder.insert_events([StoredEvent])`, one event per call from W threads (`ThreadPoolExecutor(W)`); each call is a transaction that takes the library's EXCLUSIVE table lock and NOTIFYs, as designed.
- Raw aiosqlite: one connection per writer, an asyncio lock queues the writers (as the store does), `BEGIN IMMEDIATE; INSERT; COMMIT` per event, default `synchronous` (FULL).
- Before the rounds, an untimed warm-up round of every pair at a tenth of the size; before every timed section, an untimed warm-up of one stream per writer on the same pool.
- events/s = events of the timed section / its wall time. Client CPU = `time.process_time()` of this process (all its threads; SQLite runs inside it). Server CPU = the CPU time (`/proc/<pid>/stat`) of the PostgreSQL processes serving the benchmark: the backends of the measurement's own `bench_*` database and the server's shared processes (WAL writer, checkpointer ...). Other programs = the machine's busy time (`/proc/stat`) minus both, in cores: the kernel's interrupt work and whatever else ran. The machine is shared: a measurement during which other programs kept more than {{ c.max_other_cores }} cores busy counts as disturbed and is run again (up to {{ c.retries }} times, after waiting for a quiet machine); disturbed attempts are listed at the end, not used.
- Stored payload size: PostgreSQL `octet_length(data::text)` (jsonb's text form adds a space after `:` and `,`) or `octet_length(state)` (eventsourcing); SQLite `length(data)`.

{{ summary }}
{% if guard %}
## The append guard's cost

The same subject with less of the log's append guard (migrations 0006, 0008) in its fresh database, measured in the same rounds: `*_unguarded` has none (PostgreSQL's trigger disabled, SQLite's guard triggers dropped), `*_without_lifecycle_check` all but the lifecycle check (PostgreSQL's guard function returns before that section, SQLite's lifecycle trigger dropped). A ratio is fully guarded over less guarded events/s: 1 means the part left out costs nothing.

| subject | with less guard | writers | guarded events/s (median) | with less guard events/s (median) | ratio of medians | per-round ratios | median per-round ratio | guarded CPU µs/event (client + server) | with less guard | difference |
|---|---|---|---|---|---|---|---|---|---|---|
{% for s, w, on, off, rounds in guard %}
| `{{ s.guard_of }}` | `{{ s.key }}` | {{ w }} | {{ R.median(s.guard_of, writers=w)|n }} | {{ R.median(s.key, writers=w)|n }} | {{ R.ratio(s.guard_of, s.key, writers=w)|n(3) }}x | {{ rounds|ratios(3) }} | {{ (median(rounds)|n(3) + "x") if rounds else "n/a" }} | {{ on|n }} | {{ off|n }} | {{ "%+.0f"|format(on - off) }} |
{% endfor %}

{% endif %}
{% if failures %}
## Failures

{% for failure in failures %}
- {{ failure }}
{% endfor %}

{% endif %}
## Where the time goes

{% if cpu_split %}
CPU per event on PostgreSQL (medians over rounds): the client process against the server processes serving the benchmark. Client and server share {{ nproc }} cores, so {{ nproc|num }} s of CPU per second is the most there is; the last column is the throughput that budget would allow if nothing else ran and nothing waited.

| subject | writers | client µs/event | server µs/event | together | median events/s | {{ nproc }} cores / together |
|---|---|---|---|---|---|---|
{% for s, w, client, server in cpu_split %}
| `{{ s.key }}` | {{ w }} | {{ client|n }} | {{ server|n }} | {{ (client + server)|n }} | {{ R.median(s.key, writers=w)|n }} | {{ (nproc * 1e6 / (client + server) if client + server else None)|n }} |
{% endfor %}

{% endif %}
{% if not profile %}
Not profiled in this run (`--no-profile`).
{% else %}
{% set raw, store = profile %}
cProfile of one extra, untimed-for-the-table run of `raw_asyncpg` and then `store_append` at {{ profile_writers }} writers ({{ store.events }} events each), in this process, profiler on for the timed section only. Own time (not callees') per event, grouped by where it was spent; cProfile's clock is the wall clock, so the event loop's wait in epoll shows as idle. The profiler inflates Python code more than C code: read the split, not the absolute numbers.

Under the profiler: raw asyncpg {{ (raw.events / raw.seconds)|num }} events/s, store.append {{ (store.events / store.seconds)|num }} events/s.

| where (own time) | raw asyncpg µs/event | store.append µs/event | difference |
|---|---|---|---|
{% for c in categories if raw.us(c) >= 0.05 or store.us(c) >= 0.05 %}
| {{ c }} | {{ "%.1f"|format(raw.us(c)) }} | {{ "%.1f"|format(store.us(c)) }} | {{ "%+.1f"|format(store.us(c) - raw.us(c)) }} |
{% endfor %}
| **client busy (all but idle)** | **{{ "%.1f"|format(raw.busy_us) }}** | **{{ "%.1f"|format(store.busy_us) }}** | **{{ "%+.1f"|format(store.busy_us - raw.busy_us) }}** |

{% set ours, driver = store.us_of(OURS), store.us_of(DRIVER) %}
In `store.append`, eventstore's own code plus pydantic and SQLAlchemy take {{ "%.1f"|format(ours) }} µs/event ({{ "{:.0%}".format(ours / store.busy_us) }} of the busy client time); asyncpg, the event loop and socket calls {{ "%.1f"|format(driver) }} µs/event ({{ "{:.0%}".format(driver / store.busy_us) }}), against {{ "%.1f"|format(raw.us_of(DRIVER)) }} µs/event in raw asyncpg. Idle (waiting for the server): raw {{ "%.1f"|format(raw.us(IDLE)) }}, store.append {{ "%.1f"|format(store.us(IDLE)) }} µs/event.

Top functions of `store.append` by cumulative time (the event loop's own frames left out; µs per event, {{ store.events }} events; a coroutine counts one call per resumption, so an append that awaits twice shows 3 calls):

{{ functions(store, store.top) }}

eventstore's and pydantic's functions of `store.append` by own time (µs per event; builtins they call are not included here):

{{ functions(store, store.own_top, by_own=True) }}

Top functions of raw asyncpg, for comparison:

{{ functions(raw, raw.top[:8]) }}

{% endif %}
{{ notes }}
## Per-run figures

{% macro per_run(runs) %}
| round | order | subject | writers | events | wall s | events/s | client CPU µs/event | server CPU µs/event | other programs, cores | attempt |
|---|---|---|---|---|---|---|---|---|---|---|
{% for r in runs|sort(attribute="round,sequence,attempt") %}
| {{ r.round }} | {{ r.sequence }} | `{{ r.subject }}` | {{ r.writers }} | {{ r.count }} | {{ "%.3f"|format(r.seconds) }} | {{ r.rate|num }} | {{ "%.0f"|format(r.client_us) }} | {{ "%.0f"|format(r.server_us) if "sqlite" not in r.subject else "-" }} | {{ r.timing.other_cores|n(2) }} | {{ r.attempt }}{{ " (disturbed)" if r.disturbed }} |
{% endfor %}
{% endmacro %}
{{ per_run(R) }}
{% if disturbed %}

Disturbed attempts, run again and left out of the medians:

{{ per_run(disturbed) }}
{% endif %}
"""
SUMMARY: Final = """\
{% for backend, name, baseline in (("postgresql", "PostgreSQL", "raw asyncpg"), ("sqlite", "SQLite", "raw aiosqlite")) %}
## Results: {{ name }} (ratios against {{ baseline }})

| subject | writers | median events/s | ratio of medians | per-round ratios | client CPU µs/event (median) | server CPU µs/event (median) | stored payload B (mean) | events/s per round |
|---|---|---|---|---|---|---|---|---|
{% for s, w, runs in pairs if s.backend == backend %}
| `{{ s.key }}` | {{ w }} | {{ R.median(s.key, writers=w)|n }} | {{ (R.ratio(s.key, s.baseline, writers=w)|n(2) + "x") if s.baseline else "1 (baseline)" }} | {{ R.per_round(s.key, s.baseline, writers=w)|ratios or "-" }} | {{ R.median(s.key, "client_us", w)|n }} | {{ R.median(s.key, "server_us", w)|n if backend == "postgresql" else "-" }} | {{ mean(runs|map(attribute="data_bytes"))|n }} | {{ runs|map(attribute="rate")|map("num")|join(", ") }} |
{% endfor %}

{% endfor %}
## Targets

{% for key in targets %}
{% set ratio = R.ratio(key, BY_KEY[key].baseline, writers=top) %}
- `{{ key }}` at {{ top }} writers: {{ ratio|n(2) }}x `{{ BY_KEY[key].baseline }}` (target >= {{ TARGETS[key] }}x): **{{ "n/a" if ratio is none else "met" if ratio >= TARGETS[key] else "NOT met" }}**
{% else %}
- none measured
{% endfor %}
"""
OURS: Final = ("eventstore", "pydantic", "sqlalchemy")
DRIVER: Final = ("asyncpg", "asyncio event loop", "socket send/recv")


def _pairs(results: Results) -> list[tuple[Subject, int, list[Run]]]:
    """(subject, writers, its runs) of every pair that finished, in table order."""
    config = results.config
    found = (
        (BY_KEY[k], w, results.runs.of(k, w))
        for w in config.writers
        for k in config.subjects
    )
    return [p for p in found if p[2]]


def summary(results: Results) -> str:
    """The results and targets sections (also shown in the terminal)."""
    targets = [key for key in results.config.subjects if key in TARGETS]
    return harness.report(
        SUMMARY,
        R=results.runs,
        pairs=_pairs(results),
        mean=statistics.mean,
        top=max(results.config.writers),
        targets=targets,
        BY_KEY=BY_KEY,
        TARGETS=TARGETS,
    )


def render(results: Results, command: str, path: Path | None) -> str:
    """RESULTS.md (the notes block of the file at `path` kept)."""
    runs, pairs = results.runs, _pairs(results)
    guard = []
    for s, w, off in pairs:
        if s.guard_of and (on := runs.of(s.guard_of, w)):
            cpu_on, cpu_off = (
                statistics.median(r.client_us + r.server_us for r in x)
                for x in (on, off)
            )
            guard.append(
                (s, w, cpu_on, cpu_off, runs.per_round(s.guard_of, s.key, writers=w))
            )
    return harness.report(
        REPORT,
        c=results.config,
        command=command,
        machine=results.environment.lines(),
        empty_log=any(BY_KEY[key].empty_log for key in results.config.subjects),
        summary=summary(results),
        R=runs,
        guard=guard,
        median=median,
        failures=results.failures,
        nproc=results.environment.nproc,
        cpu_split=[
            (s, w, median(r.client_us for r in x), median(r.server_us for r in x))
            for s, w, x in pairs
            if s.backend == "postgresql"
        ],
        profile=results.profile,
        profile_writers=results.profile_writers,
        categories=RULES.categories,
        OURS=OURS,
        DRIVER=DRIVER,
        IDLE=profiles.IDLE,
        functions=profiles.functions,
        notes=harness.notes(path),
        disturbed=results.disturbed,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.append`` and ``python -m bench``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    config, output = config_from(arguments)
    console = Console()
    results = run(config, console)
    console.print(Markdown(summary(results)))
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
