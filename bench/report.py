"""Medians, ratios and the RESULTS.md text, from the measurements of one run."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bench.plan import BY_KEY
from bench.profiling import CATEGORIES, IDLE

if TYPE_CHECKING:
    from pathlib import Path

    from bench.machine import Environment
    from bench.plan import Config, Subject
    from bench.profiling import SubjectProfile
    from bench.timing import Measurement

NOTES_BEGIN: Final = "<!-- notes: kept when the file is regenerated -->"
NOTES_END: Final = "<!-- /notes -->"
_NOTES = re.compile(
    re.escape(NOTES_BEGIN) + r"\n(.*?)" + re.escape(NOTES_END), re.DOTALL
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A measurement that raised instead of finishing."""

    subject: str
    writers: int
    round: int
    error: str


@dataclass(slots=True)
class Results:
    """Everything one run produced."""

    config: Config
    environment: Environment
    measurements: list[Measurement] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    disturbed: list[Measurement] = field(default_factory=list)
    profile: tuple[SubjectProfile, SubjectProfile] | None = None
    profile_writers: int = 0

    def runs(self, subject: str, writers: int) -> list[Measurement]:
        """The measurements of one pair, in round order."""
        return sorted(
            (
                m
                for m in self.measurements
                if m.subject == subject and m.writers == writers
            ),
            key=lambda m: m.round,
        )

    def median(self, subject: str, writers: int) -> float | None:
        """Median events/s of one pair; None if it never finished."""
        runs = self.runs(subject, writers)
        return statistics.median(m.events_per_second for m in runs) if runs else None

    def ratio(self, subject: Subject, writers: int) -> float | None:
        """Median events/s over its baseline's median at the same writer count."""
        if subject.baseline is None:
            return None
        mine, theirs = (
            self.median(subject.key, writers),
            self.median(subject.baseline, writers),
        )
        return mine / theirs if mine is not None and theirs else None

    def round_ratios(self, subject: Subject, writers: int) -> list[float]:
        """Per round: events/s over the baseline's events/s of the same round."""
        if subject.baseline is None:
            return []
        return self.paired_ratios(subject.key, subject.baseline, writers)

    def paired_ratios(self, mine: str, theirs: str, writers: int) -> list[float]:
        """Per round: `mine`'s events/s over `theirs`' events/s of the same round."""
        by_round = {m.round: m.events_per_second for m in self.runs(theirs, writers)}
        return [
            m.events_per_second / by_round[m.round]
            for m in self.runs(mine, writers)
            if m.round in by_round
        ]


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _median_other(runs: list[Measurement]) -> float | None:
    others = [m.other_cores for m in runs if m.other_cores is not None]
    return statistics.median(others) if others else None


def _summary_rows(results: Results, backend: str) -> list[list[str]]:
    rows: list[list[str]] = []
    for writers in results.config.writers:
        for key in results.config.subjects:
            subject = BY_KEY[key]
            runs = results.runs(key, writers)
            if subject.backend != backend or not runs:
                continue
            ratio = results.ratio(subject, writers)
            rows.append(
                [
                    f"`{key}`",
                    str(writers),
                    _num(results.median(key, writers)),
                    "1 (baseline)"
                    if subject.baseline is None
                    else f"{_num(ratio, 2)}x",
                    ", ".join(
                        f"{r:.2f}" for r in results.round_ratios(subject, writers)
                    )
                    or "-",
                    _num(statistics.median(m.cpu_us_per_event for m in runs)),
                    _num(statistics.median(m.server_us_per_event for m in runs))
                    if backend == "postgresql"
                    else "-",
                    _num(statistics.mean(m.data_bytes for m in runs)),
                    ", ".join(f"{m.events_per_second:,.0f}" for m in runs),
                ]
            )
    return rows


_SUMMARY_HEADERS: Final = [
    "subject",
    "writers",
    "median events/s",
    "ratio of medians",
    "per-round ratios",
    "client CPU µs/event (median)",
    "server CPU µs/event (median)",
    "stored payload B (mean)",
    "events/s per round",
]


def _targets(results: Results) -> list[str]:
    writers = max(results.config.writers)
    lines: list[str] = []
    for key in results.config.subjects:
        subject = BY_KEY[key]
        if subject.target is None:
            continue
        ratio = results.ratio(subject, writers)
        verdict = (
            "n/a"
            if ratio is None
            else ("met" if ratio >= subject.target else "NOT met")
        )
        lines.append(
            f"- `{key}` at {writers} writers: {_num(ratio, 2)}x `{subject.baseline}` "
            f"(target >= {subject.target}x): **{verdict}**"
        )
    return lines


def _guard_rows(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    for writers in results.config.writers:
        for key in results.config.subjects:
            guarded = BY_KEY[key].guard_of
            if guarded is None:
                continue
            on, off = results.runs(guarded, writers), results.runs(key, writers)
            if not on or not off:
                continue
            per_round = results.paired_ratios(guarded, key, writers)
            cpu_on, cpu_off = (
                statistics.median(
                    m.cpu_us_per_event + m.server_us_per_event for m in runs
                )
                for runs in (on, off)
            )
            median_on, median_off = (
                results.median(guarded, writers),
                results.median(key, writers),
            )
            rows.append(
                [
                    f"`{guarded}`",
                    f"`{key}`",
                    str(writers),
                    _num(median_on),
                    _num(median_off),
                    f"{_num(median_on / median_off if median_on and median_off else None, 3)}x",
                    ", ".join(f"{r:.3f}" for r in per_round),
                    _num(statistics.median(per_round), 3) + "x" if per_round else "n/a",
                    _num(cpu_on),
                    _num(cpu_off),
                    f"{cpu_on - cpu_off:+.0f}",
                ]
            )
    return rows


def _guard_section(results: Results) -> list[str]:
    """Each subject against itself with less of the log's append guard, round by round."""
    rows = _guard_rows(results)
    if not rows:
        return []
    headers = [
        "subject",
        "with less guard",
        "writers",
        "guarded events/s (median)",
        "with less guard events/s (median)",
        "ratio of medians",
        "per-round ratios",
        "median per-round ratio",
        "guarded CPU µs/event (client + server)",
        "with less guard",
        "difference",
    ]
    return [
        "## The append guard's cost",
        "",
        "The same subject with less of the log's append guard (migrations 0006, 0008) "
        "in its fresh database, measured in the same rounds: `*_unguarded` has none "
        "(PostgreSQL's trigger disabled, SQLite's guard triggers dropped), "
        "`*_without_lifecycle_check` all but the lifecycle check (PostgreSQL's guard "
        "function returns before that section, SQLite's lifecycle trigger dropped). "
        "A ratio is fully guarded over less guarded events/s: 1 means the part left "
        "out costs nothing.",
        "",
        *_table(headers, rows),
        "",
    ]


def _per_run(measurements: list[Measurement]) -> list[str]:
    rows = [
        [
            str(m.round),
            str(m.sequence),
            f"`{m.subject}`",
            str(m.writers),
            str(m.events),
            f"{m.seconds:.3f}",
            f"{m.events_per_second:,.0f}",
            f"{m.cpu_us_per_event:.0f}",
            f"{m.server_us_per_event:.0f}"
            if BY_KEY[m.subject].backend == "postgresql"
            else "-",
            _num(m.other_cores, 2),
            f"{m.attempt}" + (" (disturbed)" if m.disturbed else ""),
        ]
        for m in sorted(measurements, key=lambda m: (m.round, m.sequence, m.attempt))
    ]
    headers = [
        "round",
        "order",
        "subject",
        "writers",
        "events",
        "wall s",
        "events/s",
        "client CPU µs/event",
        "server CPU µs/event",
        "other programs, cores",
        "attempt",
    ]
    return _table(headers, rows)


def _cpu_split(results: Results) -> list[str]:
    rows: list[list[str]] = []
    nproc = results.environment.nproc
    for writers in results.config.writers:
        for key in results.config.subjects:
            runs = results.runs(key, writers)
            if BY_KEY[key].backend != "postgresql" or not runs:
                continue
            client = statistics.median(m.cpu_us_per_event for m in runs)
            server = statistics.median(m.server_us_per_event for m in runs)
            rows.append(
                [
                    f"`{key}`",
                    str(writers),
                    _num(client),
                    _num(server),
                    _num(client + server),
                    _num(results.median(key, writers)),
                    _num(nproc * 1e6 / (client + server) if client + server else None),
                ]
            )
    if not rows:
        return []
    headers = [
        "subject",
        "writers",
        "client µs/event",
        "server µs/event",
        "together",
        "median events/s",
        f"{nproc} cores / together",
    ]
    return [
        "CPU per event on PostgreSQL (medians over rounds): the client process against "
        "the server processes serving the benchmark. Client and server share "
        f"{nproc} cores, so {nproc:,} s of CPU per second is the most there is; the "
        "last column is the throughput that budget would allow if nothing else ran "
        "and nothing waited.",
        "",
        *_table(headers, rows),
        "",
    ]


def _profile_section(results: Results, notes: str) -> list[str]:
    lines = ["## Where the time goes", "", *_cpu_split(results)]
    if results.profile is None:
        return [*lines, "Not profiled in this run (`--no-profile`).", ""]
    raw, store = results.profile
    lines += [
        f"cProfile of one extra, untimed-for-the-table run of `raw_asyncpg` and then "
        f"`store_append` at {results.profile_writers} writers ({store.events} events each), "
        "in this process, profiler on for the timed section only. Own time (not callees') "
        "per event, grouped by where it was spent; cProfile's clock is the wall clock, so "
        "the event loop's wait in epoll shows as idle. The profiler inflates Python code "
        "more than C code: read the split, not the absolute numbers.",
        "",
        f"Under the profiler: raw asyncpg {raw.events / raw.seconds:,.0f} events/s, "
        f"store.append {store.events / store.seconds:,.0f} events/s.",
        "",
    ]
    rows = [
        [
            category,
            f"{raw.per_event_us(category):.1f}",
            f"{store.per_event_us(category):.1f}",
            f"{store.per_event_us(category) - raw.per_event_us(category):+.1f}",
        ]
        for category in CATEGORIES
        if raw.per_event_us(category) >= 0.05 or store.per_event_us(category) >= 0.05
    ]
    rows.append(
        [
            "**client busy (all but idle)**",
            f"**{raw.busy_us:.1f}**",
            f"**{store.busy_us:.1f}**",
            f"**{store.busy_us - raw.busy_us:+.1f}**",
        ]
    )
    lines += _table(
        [
            "where (own time)",
            "raw asyncpg µs/event",
            "store.append µs/event",
            "difference",
        ],
        rows,
    )
    ours = sum(store.per_event_us(c) for c in ("eventstore", "pydantic", "sqlalchemy"))
    driver = sum(
        store.per_event_us(c)
        for c in ("asyncpg", "asyncio event loop", "socket send/recv")
    )
    lines += [
        "",
        f"In `store.append`, eventstore's own code plus pydantic and SQLAlchemy take "
        f"{ours:.1f} µs/event ({ours / store.busy_us:.0%} of the busy client time); asyncpg, "
        f"the event loop and socket calls {driver:.1f} µs/event ({driver / store.busy_us:.0%}), "
        f"against {sum(raw.per_event_us(c) for c in ('asyncpg', 'asyncio event loop', 'socket send/recv')):.1f} "
        f"µs/event in raw asyncpg. Idle (waiting for the server): raw {raw.per_event_us(IDLE):.1f}, "
        f"store.append {store.per_event_us(IDLE):.1f} µs/event.",
        "",
        f"Top functions of `store.append` by cumulative time (the event loop's own frames left out; "
        f"µs per event, {store.events} events; a coroutine counts one call per resumption, so an "
        "append that awaits twice shows 3 calls):",
        "",
    ]
    lines += _table(
        ["function", "calls/event", "cumulative µs/event", "own µs/event"],
        [
            [
                f"`{row.name}`",
                f"{row.calls / store.events:.2f}",
                f"{row.cumulative_seconds / store.events * 1e6:.1f}",
                f"{row.own_seconds / store.events * 1e6:.1f}",
            ]
            for row in store.top
        ],
    )
    lines += [
        "",
        "eventstore's and pydantic's functions of `store.append` by own time (µs per event; "
        "builtins they call are not included here):",
        "",
    ]
    lines += _table(
        ["function", "calls/event", "own µs/event", "cumulative µs/event"],
        [
            [
                f"`{row.name}`",
                f"{row.calls / store.events:.2f}",
                f"{row.own_seconds / store.events * 1e6:.1f}",
                f"{row.cumulative_seconds / store.events * 1e6:.1f}",
            ]
            for row in store.own_top
        ],
    )
    lines += ["", "Top functions of raw asyncpg, for comparison:", ""]
    lines += _table(
        ["function", "calls/event", "cumulative µs/event", "own µs/event"],
        [
            [
                f"`{row.name}`",
                f"{row.calls / raw.events:.2f}",
                f"{row.cumulative_seconds / raw.events * 1e6:.1f}",
                f"{row.own_seconds / raw.events * 1e6:.1f}",
            ]
            for row in raw.top[:8]
        ],
    )
    lines += ["", NOTES_BEGIN, notes.strip("\n"), NOTES_END, ""]
    return lines


def existing_notes(path: Path) -> str:
    """The hand-written notes block of an earlier RESULTS.md, kept on regeneration."""
    try:
        match = _NOTES.search(path.read_text(encoding="utf-8"))
    except OSError:
        return ""
    return match.group(1) if match else ""


def render(results: Results, *, command: str, notes: str = "") -> str:
    """RESULTS.md."""
    env, config = results.environment, results.config
    finished = (
        env.finished_at.isoformat(timespec="seconds")
        if env.finished_at
        else "unfinished"
    )
    lines = [
        "# Append throughput: eventstore against raw drivers and eventsourcing",
        "",
        f"Generated by `{command}` (bench/append.py); the figures below are measured, none are edited.",
        "",
        "## Machine",
        "",
        f"- Date: {env.started_at.isoformat(timespec='seconds')} to {finished} (UTC)",
        f"- nproc: {env.nproc} ({env.cpu}), memory {env.memory}; client and server share these cores",
        f"- PostgreSQL: {env.postgres} (local, TCP 127.0.0.1); "
        + ", ".join(f"{k}={v}" for k, v in env.postgres_settings.items()),
        f"- SQLite: {env.sqlite}; Python {env.python}; {env.system}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in env.packages.items()),
        f"- eventstore commit: {env.commit}",
        f"- Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in env.load_before)}, "
        f"after: {'/'.join(f'{x:.2f}' for x in env.load_after)}",
        "",
        "## Method",
        "",
        f"- {config.runs} interleaved rounds: each round runs every (subject, writer count) pair once, "
        "in a fixed order that starts one pair later each round; the tables give the median over rounds.",
        "- Every measurement gets a fresh database: PostgreSQL `CREATE DATABASE bench_<random>`, migrated "
        "with `store.migrate()`, dropped `WITH (FORCE)` afterwards (the eventsourcing peer gets its own "
        "fresh database with its own tables); SQLite a new file in a temporary directory, WAL mode, "
        "migrated the same way.",
        (
            f"- History: before the warm-up, each PostgreSQL log (`execution_events`, `raw_events`, "
            f"eventsourcing's `stored_events`) gets {config.history:,} events of history in 4-event streams, "
            "bulk-inserted by one SQL statement, and the database is `ANALYZE`d, so that the measurement "
            "times a log in service rather than the first seconds of a brand-new one"
            + (
                ". The `*_empty_log` subjects skip this: they append to an empty, never analyzed "
                "log, as in a plain fresh database."
                if any(BY_KEY[key].empty_log for key in config.subjects)
                else "."
            )
            + " SQLite logs start empty."
            if config.history
            else "- History: none; every log starts empty and never analyzed."
        ),
        f"- Workload: W concurrent writers (W = {', '.join(map(str, config.writers))}); each writer drives its own "
        "streams one after another, 4 events per stream, one event per append, one transaction per "
        "append, `expected_version` = the previous version. Payloads are ~300-byte JSON objects "
        "generated up front from a fixed seed (encoding and hashing them is measured work). "
        + (
            f"{config.events_per_writer} events per writer."
            if config.events_per_writer
            else f"{config.events} events per PostgreSQL measurement and {config.sqlite_events} per SQLite "
            "measurement, split evenly among the writers."
        ),
        "- Lifecycle: per execution `create` (inputs), `start`, `progress` (detail, usage metrics), "
        "`complete` (result, usage metrics) = 4 events; each writer has its own message, all share one "
        "graph (created untimed). `ExecutionStarted` carries only a worker id, so the mean payload is smaller.",
        "- Raw asyncpg: `asyncpg.create_pool(max_size=W)`, one `INSERT ... RETURNING position` per event "
        "(autocommit: its own transaction) into `raw_events`, a table in the same database with the "
        "columns, unique keys, `xid8` default and `(transaction_id, position)` index of `execution_events`; "
        "the hash is sha256(previous hash || payload) chained by the client. The store: "
        "`EventStore.open(url, settings=StoreSettings(pool_size=W))`.",
        "- eventsourcing: `PostgresDatastore(pool_size=W)` + `PostgresApplicationRecorder.insert_events([StoredEvent])`, "
        "one event per call from W threads (`ThreadPoolExecutor(W)`); each call is a transaction that "
        "takes the library's EXCLUSIVE table lock and NOTIFYs, as designed.",
        "- Raw aiosqlite: one connection per writer, an asyncio lock queues the writers (as the store "
        "does), `BEGIN IMMEDIATE; INSERT; COMMIT` per event, default `synchronous` (FULL).",
        "- Before the rounds, an untimed warm-up round of every pair at a tenth of the size; before every "
        "timed section, an untimed warm-up of one stream per writer on the same pool.",
        "- events/s = events of the timed section / its wall time. Client CPU = `time.process_time()` of "
        "this process (all its threads; SQLite runs inside it). Server CPU = the CPU time "
        "(`/proc/<pid>/stat`) of the PostgreSQL processes serving the benchmark: the backends of the "
        "measurement's own `bench_*` database and the server's shared processes (WAL writer, checkpointer ...). Other "
        "programs = the machine's busy time (`/proc/stat`) minus both, in cores: the kernel's interrupt "
        "work and whatever else ran. The machine is shared: a measurement during which other programs "
        f"kept more than {config.max_other_cores} cores busy counts as disturbed and is run again (up to "
        f"{config.retries} times, after waiting for a quiet machine); disturbed attempts are listed "
        "at the end, not used.",
        "- Stored payload size: PostgreSQL `octet_length(data::text)` (jsonb's text form adds a space "
        "after `:` and `,`) or `octet_length(state)` (eventsourcing); SQLite `length(data)`.",
        "",
        "## Results: PostgreSQL (ratios against raw asyncpg)",
        "",
        *_table(_SUMMARY_HEADERS, _summary_rows(results, "postgresql")),
        "",
        "## Results: SQLite (ratios against raw aiosqlite)",
        "",
        *_table(_SUMMARY_HEADERS, _summary_rows(results, "sqlite")),
        "",
        "## Targets",
        "",
        *(_targets(results) or ["- none measured"]),
        "",
        *_guard_section(results),
    ]
    if results.failures:
        lines += ["## Failures", ""]
        lines += [
            f"- round {f.round}, `{f.subject}` at {f.writers} writers: {f.error}"
            for f in results.failures
        ]
        lines.append("")
    lines += _profile_section(results, notes)
    lines += ["## Per-run figures", "", *_per_run(results.measurements), ""]
    if results.disturbed:
        lines += [
            "Disturbed attempts, run again and left out of the medians:",
            "",
            *_per_run(results.disturbed),
            "",
        ]
    return "\n".join(lines)
