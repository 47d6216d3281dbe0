"""The projection benchmark's records and its report, bench/PROJECTION_RESULTS.md."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from rich.table import Table

if TYPE_CHECKING:
    from pathlib import Path

    from bench.databases import Server
    from bench.machine import Environment
    from bench.projection_log import LogFacts

DATABASE_PREFIX: Final = "bench_proj_"
SUBJECTS: Final = ("raw_fold", "cli", "in_process")
BASELINE: Final = "raw_fold"
LABELS: Final = {
    "raw_fold": "raw asyncpg fold (baseline)",
    "cli": "`eventstore project --until-caught-up` (subprocess)",
    "in_process": "`Projector(store).run_until_caught_up()` (in process)",
}
TARGET_RATIO: Final = 0.5
OTHER_BENCHMARK: Final = "bench.append"
SERVER_SAMPLE_SECONDS: Final = 0.05
NOTES_BEGIN: Final = "<!-- notes: kept when the file is regenerated -->"
NOTES_END: Final = "<!-- /notes -->"
_NOTES: Final = re.compile(
    re.escape(NOTES_BEGIN) + r"\n(.*?)" + re.escape(NOTES_END), re.DOTALL
)
PROFILE_TOP: Final = 15
PROFILE_CATEGORIES: Final = (
    "projections (projector, checkpoints, executions)",
    "eventstore (fold, log, backend, JSON)",
    "pydantic",
    "sqlalchemy",
    "asyncpg",
    "json (stdlib)",
    "asyncio event loop",
    "raw fold (bench/projection_baseline.py)",
    "bench driver",
    "other (stdlib, builtins)",
    "idle: event loop waiting in epoll",
)
IDLE: Final = PROFILE_CATEGORIES[-1]


@dataclass(frozen=True, slots=True)
class Settings:
    """What one run does.

    Attributes:
        server: the PostgreSQL server (a DSN we may CREATE DATABASE from).
        executions: executions in the log (4 events each).
        writers: writer coroutines generating the log.
        in_flight: executions each writer keeps open at once.
        batch_size: events per batch, for all three subjects.
        rounds: interleaved rounds.
        sample: executions compared with `store.executions.get` in the check.
        startup_runs: repetitions of each start-up measurement.
        max_other_cores: a measurement during which programs other than the
            client and our PostgreSQL kept more cores busy is run again.
        retries: how often a disturbed measurement is run again.
        profile: whether to run the cProfile section.
    """

    server: Server
    executions: int = 50_000
    writers: int = 32
    in_flight: int = 8
    batch_size: int = 1000
    rounds: int = 5
    sample: int = 200
    startup_runs: int = 5
    max_other_cores: float = 0.5
    retries: int = 2
    profile: bool = True


@dataclass(frozen=True, slots=True)
class Run:
    """One timed projection from scratch.

    Attributes:
        subject: raw_fold, cli or in_process.
        round: 1-based.
        sequence: its place (1-based) in the round.
        events: events folded, as the subject reported them.
        seconds: wall time.
        client_cpu: CPU seconds of the client (this process, or the CLI child).
        server_cpu: CPU seconds of our PostgreSQL processes.
        machine_cpu: busy CPU seconds of the whole machine (None off Linux).
        attempt: 1, or more when earlier attempts were disturbed.
        disturbed: the last attempt was still disturbed.
    """

    subject: str
    round: int
    sequence: int
    events: int
    seconds: float
    client_cpu: float
    server_cpu: float
    machine_cpu: float | None
    attempt: int = 1
    disturbed: bool = False

    @property
    def events_per_second(self) -> float:
        """Events / wall time."""
        return self.events / self.seconds

    @property
    def other_cores(self) -> float | None:
        """Cores kept busy by neither the client nor our server, on average."""
        if self.machine_cpu is None:
            return None
        return max(self.machine_cpu - self.client_cpu - self.server_cpu, 0.0) / (
            self.seconds
        )


@dataclass(frozen=True, slots=True)
class Check:
    """The correctness checks of one run.

    Attributes:
        sample: executions compared.
        sample_mismatches: ids whose `executions` row differs from `store.executions.get`.
        raw_rows: rows in raw_executions after the raw fold.
        projector_rows: rows in executions after the projector.
        raw_vs_projector_differences: rows present in one table but not
            equal in the other (JSON null and SQL NULL counted as equal).
        json_null_columns: column -> rows of `executions` holding JSON
            ``null`` where SQL NULL might be expected.
        per_run_failures: count or checkpoint checks failed after a timed run.
    """

    sample: int
    sample_mismatches: list[str]
    raw_rows: int
    projector_rows: int
    raw_vs_projector_differences: int
    json_null_columns: dict[str, int]
    per_run_failures: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Startup:
    """Fixed costs of the CLI subject, medians of `runs` runs in seconds."""

    runs: int
    python_pass: float
    help: float
    caught_up: float


@dataclass(frozen=True, slots=True)
class Profile:
    """A cProfile of one subject's projection from scratch.

    Attributes:
        subject: in_process or raw_fold.
        events: events folded.
        seconds: wall time with the profiler on.
        categories: own time by category, seconds.
        top: (function, calls, own s, cumulative s), by cumulative time.
        top_own: the same rows, by own time.
    """

    subject: str
    events: int
    seconds: float
    categories: dict[str, float]
    top: list[tuple[str, int, float, float]]
    top_own: list[tuple[str, int, float, float]]


@dataclass(slots=True)
class Results:
    """Everything the report shows."""

    settings: Settings
    environment: Environment
    command: str
    log: LogFacts | None = None
    runs: list[Run] = field(default_factory=list)
    check: Check | None = None
    startup: Startup | None = None
    profiles: list[Profile] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _by_subject(results: Results) -> dict[str, list[Run]]:
    return {s: [r for r in results.runs if r.subject == s] for s in SUBJECTS}


def medians(results: Results) -> dict[str, float]:
    """Median events/s per subject."""
    return {
        subject: statistics.median(r.events_per_second for r in runs)
        for subject, runs in _by_subject(results).items()
        if runs
    }


def _per_round_ratios(results: Results, subject: str) -> list[float]:
    ratios = []
    for run in _by_subject(results)[subject]:
        base = [
            r for r in results.runs if r.subject == BASELINE and r.round == run.round
        ]
        if base:
            ratios.append(run.events_per_second / base[0].events_per_second)
    return ratios


def _environment_lines(results: Results) -> list[str]:
    env = results.environment
    finished = env.finished_at.isoformat(timespec="seconds") if env.finished_at else "-"
    settings = ", ".join(f"{k}={v}" for k, v in env.postgres_settings.items())
    return [
        "## Machine",
        "",
        f"- Date: {env.started_at.isoformat(timespec='seconds')} to {finished} (UTC)",
        f"- nproc: {env.nproc} ({env.cpu}), memory {env.memory}; the client "
        "(and the CLI subprocess) and the server share these cores",
        f"- PostgreSQL: {env.postgres} (local, TCP 127.0.0.1); {settings}",
        f"- Python {env.python}; {env.system}",
        "- Packages: "
        + ", ".join(
            f"{k} {v}" for k, v in env.packages.items() if v != "not installed"
        ),
        f"- eventstore commit: {env.commit}",
        "- Load average (1/5/15 min) before: "
        + "/".join(f"{x:.2f}" for x in env.load_before)
        + ", after: "
        + "/".join(f"{x:.2f}" for x in env.load_after),
    ]


def _method_lines(results: Results) -> list[str]:
    s, log = results.settings, results.log
    lines = [
        "## Method",
        "",
        f"- One fresh database per run (`CREATE DATABASE {DATABASE_PREFIX}<random>`, "
        "migrated with `store.migrate()`, dropped `WITH (FORCE)` at the end).",
        f"- The log (untimed, written once): {s.executions:,} executions x 4 events "
        "(`ExecutionCreated` with ~150-byte inputs, `ExecutionStarted`, "
        "`ExecutionProgressed` with a ~200-byte detail and usage metrics, "
        "`ExecutionCompleted` with a ~215-byte result and usage metrics), built with "
        f"`NewEvent.of(payload)` and written by `store.append` from {s.writers} "
        f"concurrent coroutines, one event per append (`expected_version` = the "
        f"previous version); each coroutine keeps {s.in_flight} executions in flight "
        "and moves them forward in turn, so the events of one execution lie far "
        "apart in the log. They reference 20 threads, 200 messages and 4 graphs "
        "created with `store.threads/messages/graphs.create`. `occurred_at` is the "
        "writer's clock at the append. Then `VACUUM ANALYZE` and `CHECKPOINT`.",
    ]
    if log is not None:
        sizes = ", ".join(
            f"{kind} {size:.0f} B" for kind, size in log.bytes_by_type.items()
        )
        lines.append(
            f"- The log as read back: {log.events:,} events, {log.executions:,} "
            f"executions, `execution_events` {log.table_bytes / 2**20:.0f} MiB with "
            f"its indexes; mean `octet_length(data::text)`: {sizes}; "
            f"{log.spanning_streams:,} of {log.executions:,} executions span more "
            f"than one batch of {log.batch_size:,}. Generating it took "
            f"{log.seconds:.0f} s ({log.events / log.seconds:,.0f} events/s)."
        )
    lines += [
        f"- Subjects, each projecting the whole log from scratch in batches of "
        f"{s.batch_size:,}:",
        "  - `raw_fold` (baseline, bench/projection_baseline.py): asyncpg only, one "
        "connection opened before the clock starts; per batch ONE transaction that "
        "reads the next events after the (transaction_id, position) checkpoint with "
        "the predicate and order of the store's `READ_ALL_SQL` (only the columns "
        "the fold needs), loads the batch's existing rows with one "
        "`SELECT ... WHERE id = ANY($1)`, folds in plain dicts (stdlib `json`), "
        "writes every changed row with ONE `INSERT ... SELECT FROM unnest(...) "
        "ON CONFLICT (id) DO UPDATE ... WHERE version < excluded.version`, and "
        "moves its checkpoint row by compare-and-set. `raw_executions` is "
        "`CREATE TABLE ... (LIKE executions INCLUDING ALL)` plus the same three "
        "foreign keys: the same indexes and reference checks as `executions`.",
        "  - `cli`: `eventstore project --until-caught-up --url URL --batch-size "
        f"{s.batch_size}` as a subprocess, timed from spawn to exit: interpreter "
        "start-up, imports, connecting, the projection and exit (see Start-up "
        "cost). Its client CPU is the child's (`RUSAGE_CHILDREN`).",
        "  - `in_process`: `Projector(store, batch_size=...).run_until_caught_up()` "
        "on a store opened (`EventStore.open`) before the clock starts.",
        "- Before every measurement (untimed): the subject's table is emptied "
        "(`TRUNCATE executions` and its checkpoint row deleted; `TRUNCATE "
        "raw_executions` and its checkpoint set back to 0), then `CHECKPOINT`.",
        f"- {_plural(s.rounds, 'interleaved round')}; each round runs the three subjects once, "
        "in the order raw_fold, cli, in_process, starting one later each round. "
        "Before the rounds, an untimed raw fold and in-process projection warm the "
        "caches and feed the correctness check. The tables give medians over rounds.",
        "- events/s = events of the log / wall time. Client CPU = "
        "`time.process_time()` of this process, or the CLI child's CPU. Server CPU = "
        "the PostgreSQL processes serving the `bench_*` database and the shared "
        "ones (WAL writer, checkpointer), from /proc (for `cli`, whose backend "
        f"exits with it, sampled every {SERVER_SAMPLE_SECONDS * 1000:.0f} ms while "
        "it runs: the backend's last interval is missed). Before every measurement "
        f"the runner waits until `pgrep -f {OTHER_BENCHMARK}` finds nothing; a "
        f"measurement during which other programs kept more than "
        f"{s.max_other_cores} cores busy is run again (at most {s.retries} times).",
    ]
    return lines


def _results_lines(results: Results) -> list[str]:
    by_subject = _by_subject(results)
    med = medians(results)
    base = med.get(BASELINE)
    rows = []
    for subject in SUBJECTS:
        runs = by_subject[subject]
        if not runs:
            continue
        ratios = _per_round_ratios(results, subject)
        rows.append(
            [
                LABELS[subject],
                _num(statistics.median(r.seconds for r in runs), 2),
                _num(med[subject]),
                "1 (baseline)"
                if subject == BASELINE
                else f"{med[subject] / base:.2f}x"
                if base
                else "-",
                "-"
                if subject == BASELINE
                else ", ".join(f"{ratio:.2f}" for ratio in ratios),
                _num(statistics.median(r.client_cpu / r.events * 1e6 for r in runs)),
                _num(statistics.median(r.server_cpu / r.events * 1e6 for r in runs)),
            ]
        )
    lines = [
        "## Results",
        "",
        *_table(
            [
                "subject",
                "median s",
                "median events/s",
                "ratio of medians",
                "per-round ratios",
                "client CPU µs/event",
                "server CPU µs/event",
            ],
            rows,
        ),
        "",
    ]
    if base:
        for subject in ("cli", "in_process"):
            if subject in med:
                ratio = med[subject] / base
                verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
                lines.append(
                    f"- `{subject}`: {ratio:.2f}x the raw fold "
                    f"(target >= {TARGET_RATIO}x): **{verdict}**"
                )
        lines.append("")
    if results.failures:
        lines += [
            "Measurements that raised (left out of the medians):",
            "",
            *(f"- {failure}" for failure in results.failures),
            "",
        ]
    lines += [
        "### Per round",
        "",
        *_table(
            [
                "round",
                "#",
                "subject",
                "events",
                "s",
                "events/s",
                "client CPU s",
                "server CPU s",
                "other cores",
                "attempt",
            ],
            [
                [
                    str(r.round),
                    str(r.sequence),
                    r.subject,
                    _num(r.events),
                    _num(r.seconds, 2),
                    _num(r.events_per_second),
                    _num(r.client_cpu, 2),
                    _num(r.server_cpu, 2),
                    _num(r.other_cores, 2),
                    str(r.attempt) + (" (disturbed)" if r.disturbed else ""),
                ]
                for r in sorted(results.runs, key=lambda r: (r.round, r.sequence))
            ],
        ),
    ]
    return lines


def _startup_lines(results: Results) -> list[str]:
    startup = results.startup
    if startup is None:
        return []
    cli = [r.seconds for r in results.runs if r.subject == "cli"]
    share = (
        f" The no-op catch-up is {startup.caught_up / statistics.median(cli):.0%} of "
        "the median `cli` time."
        if cli
        else ""
    )
    return [
        "## Start-up cost of the CLI",
        "",
        f"Medians of {_plural(startup.runs, 'run')}, spawn to exit:",
        "",
        *_table(
            ["command", "s"],
            [
                ["`python -c pass` (bare interpreter)", _num(startup.python_pass, 3)],
                [
                    "`eventstore --help` (interpreter + CLI imports)",
                    _num(startup.help, 3),
                ],
                [
                    "`eventstore project --until-caught-up` with nothing to fold "
                    "(+ connect, schema check, one empty read)",
                    _num(startup.caught_up, 3),
                ],
            ],
        ),
        "",
        f"-{share}" if share else "",
    ]


def _check_lines(results: Results) -> list[str]:
    check = results.check
    if check is None:
        return []
    lines = [
        "## Correctness",
        "",
        f"- After the untimed raw fold and in-process projection: `raw_executions` "
        f"{check.raw_rows:,} rows, `executions` {check.projector_rows:,} rows; rows "
        f"of either table not equal to a row of the other, over every column "
        f"(JSON `null` and SQL NULL counted as equal): "
        f"**{check.raw_vs_projector_differences}**.",
        f"- {check.sample} random executions: `ExecutionsView(store).get(id)` == "
        f"`store.executions.get(id)` (folded from the stream) for "
        f"**{check.sample - len(check.sample_mismatches)} of {check.sample}**"
        + (
            f"; differing: {', '.join(check.sample_mismatches[:5])}"
            if check.sample_mismatches
            else ""
        )
        + ".",
        "- After every timed run: the subject reported every event of the log, its "
        "table has one row per execution and its checkpoint is at the log's last "
        "position: "
        + (
            "**all passed**."
            if not check.per_run_failures
            else "**failures**: " + "; ".join(check.per_run_failures)
        ),
    ]
    if check.json_null_columns:
        lines.append(
            "- `executions` stores JSON `null` (not SQL NULL) for absent values: "
            + ", ".join(
                f"`{name}` in {count:,} rows"
                for name, count in check.json_null_columns.items()
            )
            + " (the raw fold writes SQL NULL; `WHERE error IS NULL` does not "
            "match those rows)."
        )
    return lines


def _profile_lines(results: Results) -> list[str]:
    if not results.profiles:
        return []
    lines = [
        "## Where the time goes",
        "",
        "One projection of the whole log from scratch with cProfile on (in this "
        "process; the profiler slows Python code more than C code, so read the "
        "split rather than the absolute numbers). Own time per event by category; "
        "a builtin's own time counts for the package that called it; idle is the "
        "event loop blocked in epoll, i.e. waiting for PostgreSQL.",
        "",
        *_table(
            ["category", *(f"{p.subject} µs/event" for p in results.profiles)],
            [
                [
                    category,
                    *(
                        _num(p.categories.get(category, 0.0) / p.events * 1e6, 1)
                        for p in results.profiles
                    ),
                ]
                for category in PROFILE_CATEGORIES
            ]
            + [
                [
                    "total, idle excluded",
                    *(
                        _num(
                            sum(v for k, v in p.categories.items() if k != IDLE)
                            / p.events
                            * 1e6,
                            1,
                        )
                        for p in results.profiles
                    ),
                ],
                [
                    "wall time with the profiler, s",
                    *(_num(p.seconds, 2) for p in results.profiles),
                ],
            ],
        ),
    ]
    projector = next((p for p in results.profiles if p.subject == "in_process"), None)
    if projector is not None:
        lines += [
            "",
            f"Top {PROFILE_TOP} functions of `in_process` by cumulative time "
            "(event loop and bench frames left out):",
            "",
            *_function_table(projector.top),
            "",
            "cProfile counts every resumption of a coroutine as a call and adds "
            "up its cumulative time per resumption, so the cumulative figures of "
            "`async def` frames are approximate. The same profile by own time "
            "(the event loop's frames included):",
            "",
            *_function_table(projector.top_own),
        ]
    return lines


def _function_table(rows: list[tuple[str, int, float, float]]) -> list[str]:
    return _table(
        ["function", "calls", "own s", "cumulative s"],
        [
            [f"`{name}`", _num(calls), _num(own, 2), _num(cumulative, 2)]
            for name, calls, own, cumulative in rows
        ],
    )


def existing_notes(path: Path) -> str:
    """The hand-written notes block of an earlier report, kept on regeneration."""
    try:
        match = _NOTES.search(path.read_text(encoding="utf-8"))
    except OSError:
        return ""
    return match.group(1) if match else ""


def render(results: Results, *, notes: str = "") -> str:
    """PROJECTION_RESULTS.md."""
    lines = [
        "# Projection throughput: `eventstore project` against a raw asyncpg fold",
        "",
        f"Generated by `{results.command}` (bench/projection.py); the figures "
        "below are measured, none are edited.",
        "",
        *_environment_lines(results),
        "",
        *_method_lines(results),
        "",
        *_results_lines(results),
        "",
        *_startup_lines(results),
        "",
        *_check_lines(results),
        "",
        *_profile_lines(results),
        "",
        NOTES_BEGIN,
        notes.strip("\n"),
        NOTES_END,
        "",
    ]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text)


def summary_table(results: Results) -> Table:
    """The medians, for the terminal."""
    table = Table(title="projection of the log from scratch (medians)")
    for column in ("subject", "median s", "events/s", "ratio"):
        table.add_column(column)
    med = medians(results)
    base = med.get(BASELINE)
    for subject in SUBJECTS:
        runs = [r for r in results.runs if r.subject == subject]
        if not runs:
            continue
        table.add_row(
            subject,
            f"{statistics.median(r.seconds for r in runs):.2f}",
            f"{med[subject]:,.0f}",
            f"{med[subject] / base:.2f}x" if base else "-",
        )
    return table
