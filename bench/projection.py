"""Projection throughput: `eventstore project --until-caught-up` against a raw asyncpg fold.

A fresh database holds bench/projection_log.py's log; each round projects it
from scratch three ways: ``raw_fold`` (bench/projection_baseline.py), ``cli``
(the command as a subprocess, spawn to exit) and ``in_process``
(`Projector(store).run_until_caught_up()`).

.venv/bin/python -m bench.projection            # the full run; writes bench/PROJECTION_RESULTS.md
.venv/bin/python -m bench.projection --quick    # a smoke run; writes nothing
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import hashlib
import itertools
import random
import re
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.markdown import Markdown

from bench import harness, profiles, projection_baseline, projection_log
from bench.harness import (
    Clock,
    Environment,
    Run,
    Runs,
    Server,
    Snapshot,
    connected,
    num,
    timed,
)
from eventstore import EventStore
from eventstore.settings import StoreSettings
from projections.projector import Projector
from projections.queries import ExecutionsView

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from bench.harness import Timing

    Timed = Callable[[Callable[[], Awaitable[int]]], Awaitable[tuple[int, Timing]]]

RESULTS_PATH: Final = Path(__file__).parent / "PROJECTION_RESULTS.md"
SUBJECTS: Final = ("raw_fold", "cli", "in_process")
BASELINE: Final = "raw_fold"
LABELS: Final = {
    "raw_fold": "raw asyncpg fold (baseline)",
    "cli": "`eventstore project --until-caught-up` (subprocess)",
    "in_process": "`Projector(store).run_until_caught_up()` (in process)",
}
TARGET_RATIO: Final = 0.5
OTHER_BENCHMARK: Final = "bench.append"  # the two would share the 2 cores


@dataclass(frozen=True, slots=True)
class Settings:
    """What one run does (see --help); `sample`: executions compared with
    `store.executions.get`; `startup_runs`: runs per start-up median; a
    measurement during which other programs kept more than `max_other_cores`
    busy is run again, at most `retries` times."""

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


QUICK: Final = Settings(Server(), 500, writers=8, rounds=1, sample=50, startup_runs=1)


@dataclass(slots=True)
class Results:
    """Everything the report shows; `check` and `startup` are its sections."""

    settings: Settings
    environment: Environment
    command: str
    log: projection_log.LogFacts | None = None
    runs: Runs = field(default_factory=Runs)
    check: list[str] = field(default_factory=list)
    run_problems: list[str] = field(default_factory=list)
    startup: dict[str, float] = field(default_factory=dict)
    profiles: list[profiles.Profile] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class CodeChangedError(RuntimeError):
    """The store's code changed during the run: the CLI would run other code."""


def code_fingerprint() -> str:
    """sha256 over the Python files the subjects run (the CLI loads them afresh)."""
    digest = hashlib.sha256()
    for directory in harness.CODE:
        for path in sorted((harness.REPOSITORY / directory).rglob("*.py")):
            digest.update(str(path.relative_to(harness.REPOSITORY)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_same_code(fingerprint: str) -> None:
    """Stop the run if eventstore/, projections/ or migrations/ changed since it began."""
    if code_fingerprint() != fingerprint:
        raise CodeChangedError(
            "eventstore/, projections/ or migrations/ changed during the run: the CLI subprocess "
            "would run other code than the in-process projector (and perhaps expect another "
            "schema); run the benchmark again"
        )


async def wait_for_other_benchmarks(console: Console) -> None:
    """Sleep until no append benchmark runs."""
    for waited in itertools.count():
        if not harness.running(OTHER_BENCHMARK):
            return
        if not waited:
            console.print(
                f"[yellow]{OTHER_BENCHMARK} is running; waiting for it to end[/]"
            )
        await asyncio.sleep(20.0)


# --- the three subjects ----------------------------------------------------------


async def reset_projection(dsn: str) -> None:
    """Empty `executions` and delete its checkpoint, then CHECKPOINT (so that the
    previous run's dirty pages are not written during the next)."""
    await harness.execute(
        dsn,
        "TRUNCATE executions",
        "DELETE FROM projection_checkpoints WHERE name = 'executions'",
    )
    await harness.execute(dsn, "CHECKPOINT")


async def measure_raw_fold(
    dsn: str, batch_size: int, timed: Timed = timed
) -> tuple[int, Timing]:
    """The baseline, on a connection opened before the clock starts."""
    await projection_baseline.reset(dsn)
    await harness.execute(dsn, "CHECKPOINT")
    async with connected(dsn) as connection:
        return await timed(
            functools.partial(
                projection_baseline.fold_on, connection, batch_size=batch_size
            )
        )


async def measure_in_process(
    dsn: str, batch_size: int, timed: Timed = timed
) -> tuple[int, Timing]:
    """The projector on a store opened before the clock starts."""
    await reset_projection(dsn)
    async with EventStore.open(dsn) as store:
        return await timed(Projector(store, batch_size=batch_size).run_until_caught_up)


async def measure_cli(dsn: str, batch_size: int) -> tuple[int, Timing]:
    """`eventstore project --until-caught-up`, spawn to exit."""
    await reset_projection(dsn)
    command = harness.eventstore_cli(
        "project", "--until-caught-up", "--url", dsn, "--batch-size", str(batch_size)
    )
    clock = Clock(None)
    # The CLI's backends exit with it, taking their CPU counters along: sample
    # them while it runs (what a backend uses in its last interval is lost).
    seen = dict(clock.before.server)
    sampler = asyncio.create_task(harness.sample_server_cpu(seen, None))
    try:
        seconds, client, stdout = await harness.spawn(command)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    after = harness.snapshot(None)
    timing = clock.stop(Snapshot(after.machine, {**seen, **after.server}))
    if (projected := re.search(r"projected ([\d,]+) events", stdout)) is None:
        raise RuntimeError(f"unexpected output of the CLI: {stdout!r}")
    return int(projected.group(1).replace(",", "")), replace(
        timing, seconds=seconds, client=client
    )


MEASURES: Final = {
    "raw_fold": measure_raw_fold,
    "cli": measure_cli,
    "in_process": measure_in_process,
}


# --- checks, start-up, profile ---------------------------------------------------


async def check_run(dsn: str, run: Run, *, executions: int, events: int) -> str | None:
    """Whether a timed run folded everything: None, or what is wrong."""
    table_, checkpoint = (
        ("raw_executions", "raw_checkpoints")
        if run.subject == BASELINE
        else ("executions", "projection_checkpoints")
    )
    async with connected(dsn) as connection:
        rows = await connection.fetchval(f"SELECT count(*) FROM {table_}")
        position = (
            await connection.fetchval(f"SELECT max(position) FROM {checkpoint}") or 0
        )
        last = (
            await connection.fetchval("SELECT max(position) FROM execution_events") or 0
        )
    checks = {
        f"reported {run.count} events, the log has {events}": run.count != events,
        f"{rows} rows, expected {executions}": rows != executions,
        f"checkpoint at {position}, the log ends at {last}": position != last,
    }
    problems = [problem for problem, failed in checks.items() if failed]
    where = f"{run.subject} round {run.round}: "
    return where + "; ".join(problems) if problems else None


_COMPARED: Final = ", ".join(
    f"nullif({name}, 'null'::jsonb) AS {name}"
    if name in ("inputs", "result", "error", "metrics")
    else name
    for name in projection_baseline.COLUMNS
)
DIFFERENCES_SQL: Final = f"""
SELECT count(*) FROM (
    (SELECT {_COMPARED} FROM executions EXCEPT SELECT {_COMPARED} FROM raw_executions)
    UNION ALL
    (SELECT {_COMPARED} FROM raw_executions EXCEPT SELECT {_COMPARED} FROM executions)
) AS differences
"""


async def check_correctness(dsn: str, *, sample: int, seed: int) -> list[str]:
    """After a raw fold and a projector run: the tables compared, and a sample of
    rows against `store.executions.get`; the report's bullets."""
    async with connected(dsn) as connection:
        raw_rows = await connection.fetchval("SELECT count(*) FROM raw_executions")
        rows = await connection.fetchval("SELECT count(*) FROM executions")
        differences = await connection.fetchval(DIFFERENCES_SQL)
        json_nulls = {
            name: await connection.fetchval(
                f"SELECT count(*) FROM executions WHERE {name} = 'null'::jsonb"
            )
            for name in ("inputs", "result", "error")
        }
        ids = [row["id"] for row in await connection.fetch("SELECT id FROM executions")]
    chosen = random.Random(seed).sample(sorted(ids), min(sample, len(ids)))
    async with EventStore.open(dsn, settings=StoreSettings(pool_size=2)) as store:
        view = ExecutionsView(store)
        differing = [
            str(i) for i in chosen if await view.get(i) != await store.executions.get(i)
        ]
    lines = [
        f"- After the untimed raw fold and in-process projection: `raw_executions` {raw_rows:,} rows, `executions` "
        f"{rows:,} rows; rows of either table not equal to a row of the other, over every column (JSON `null` and "
        f"SQL NULL counted as equal): **{differences}**.",
        f"- {len(chosen)} random executions: `ExecutionsView(store).get(id)` == `store.executions.get(id)` (folded "
        f"from the stream) for **{len(chosen) - len(differing)} of {len(chosen)}**"
        + (f"; differing: {', '.join(differing[:5])}" if differing else "")
        + ".",
    ]
    if nulls := ", ".join(
        f"`{name}` in {count:,} rows" for name, count in json_nulls.items() if count
    ):
        lines.append(
            f"- `executions` stores JSON `null` (not SQL NULL) for absent values: {nulls} (the raw fold writes SQL "
            "NULL; `WHERE error IS NULL` does not match those rows)."
        )
    return lines


async def measure_startup(dsn: str, runs: int) -> dict[str, float]:
    """Interpreter start-up, `eventstore --help`, and a no-op catch-up: medians, by label."""
    commands = {
        "`python -c pass` (bare interpreter)": [sys.executable, "-c", "pass"],
        "`eventstore --help` (interpreter + CLI imports)": harness.eventstore_cli(
            "--help"
        ),
        "`eventstore project --until-caught-up` with nothing to fold (+ connect, schema check, one empty read)": (
            harness.eventstore_cli("project", "--until-caught-up", "--url", dsn)
        ),
    }
    medians = {}
    for label, command in commands.items():
        medians[label] = statistics.median(
            [(await harness.spawn(command))[0] for _ in range(runs)]
        )
    return medians


RULES: Final = profiles.Rules(
    """
    projections (projector, checkpoints, executions): /projections/
    eventstore (fold, log, backend, JSON): /eventstore/
    pydantic: /pydantic ~pydantic
    sqlalchemy: /sqlalchemy/
    asyncpg: /asyncpg/ ~asyncpg
    json (stdlib): /json/ ~_json
    asyncio event loop: /asyncio/ selectors.py ~_asyncio ~_contextvars
    raw fold (bench/projection_baseline.py): /bench/projection_baseline.py
    bench driver: /bench/
    other (stdlib, builtins): *file *builtin
    """,
    hidden=("/asyncio/", "/bench/", "_contextvars.Context", "selectors"),
)


async def profile_subjects(dsn: str, batch_size: int) -> list[profiles.Profile]:
    """cProfile the in-process projector, then the raw fold, each from scratch."""
    found = []
    for subject, measure in (
        ("in_process", measure_in_process),
        ("raw_fold", measure_raw_fold),
    ):
        profiler = cProfile.Profile()

        async def timed(
            work: Callable[[], Awaitable[int]], on: cProfile.Profile = profiler
        ) -> tuple[int, Timing]:
            return await harness.timed(profiles.profiled(on, work))

        events, timing = await measure(dsn, batch_size, timed)
        found.append(
            profiles.summarize(
                subject, profiler, RULES, events=events, seconds=timing.seconds
            )
        )
    return found


# --- the run ---------------------------------------------------------------------


def _row(r: Run) -> str:
    return (
        f"{r.round} | {r.sequence} | {r.subject} | {r.count:,} | {r.seconds:,.2f} | {r.rate:,.0f} | "
        f"{r.timing.client:,.2f} | {r.timing.server:,.2f} | {num(r.timing.other_cores, 2)} | {r.attempt}"
        + (" (disturbed)" if r.disturbed else "")
    )


async def _measure(
    settings: Settings,
    dsn: str,
    subject: str,
    number: int,
    sequence: int,
    console: Console,
    fingerprint: str,
) -> Run:
    for attempt in range(1, settings.retries + 2):
        await wait_for_other_benchmarks(console)
        ensure_same_code(fingerprint)
        events, timing = await MEASURES[subject](dsn, settings.batch_size)
        ensure_same_code(fingerprint)
        run = Run(subject, number, sequence, events, timing, attempt=attempt)
        run = run.judged(
            settings.max_other_cores, busy=harness.running(OTHER_BENCHMARK)
        )
        if not run.disturbed or attempt > settings.retries:
            break
        await asyncio.to_thread(
            harness.wait_until_quiet, limit=settings.max_other_cores, max_wait=60.0
        )
    return run


async def run(
    settings: Settings, results: Results, console: Console, fingerprint: str
) -> None:
    """Create the database, generate the log, measure, check, profile, drop.

    Raises:
        CodeChangedError: the store's code changed during the run.
    """
    await wait_for_other_benchmarks(console)
    async with harness.throwaway_database(settings.server, "bench_proj_") as dsn:
        shape = projection_log.LogShape(
            settings.executions, settings.writers, settings.in_flight
        )
        console.print(
            f"database {harness.CURRENT_DATABASE.get()}; generating the log: {shape.executions:,} executions "
            f"x 4 events from {shape.writers} writers (untimed)"
        )
        async with harness.migrated_store(dsn, settings.writers) as store:
            seconds = await projection_log.generate(store, shape)
        await projection_baseline.setup(dsn)
        await harness.execute(dsn, "VACUUM ANALYZE", "CHECKPOINT")
        log = results.log = await projection_log.describe(
            dsn, seconds=seconds, batch_size=settings.batch_size
        )
        console.print(
            f"log: {log.events:,} events in {seconds:.1f} s; {log.spanning_streams:,} streams span batches"
        )

        console.print("warm-up and correctness check (untimed)")  # warms the caches
        await wait_for_other_benchmarks(console)
        await measure_raw_fold(dsn, settings.batch_size)
        await measure_in_process(dsn, settings.batch_size)
        results.check = await check_correctness(dsn, sample=settings.sample, seed=1)
        console.print(Markdown("\n".join(results.check)))

        for number in range(1, settings.rounds + 1):
            for sequence, subject in enumerate(harness.rotated(SUBJECTS, number), 1):
                try:
                    measured = await _measure(
                        settings, dsn, subject, number, sequence, console, fingerprint
                    )
                except CodeChangedError:
                    raise
                except Exception as exc:
                    results.failures.append(f"{subject} round {number}: {exc}")
                    console.print(f"[red]{results.failures[-1]}[/]")
                    continue
                results.runs.append(measured)
                console.print(_row(measured))
                if problem := await check_run(
                    dsn, measured, executions=log.executions, events=log.events
                ):
                    results.run_problems.append(problem)
                    console.print(f"[red]{problem}[/]")

        await wait_for_other_benchmarks(console)
        ensure_same_code(fingerprint)
        console.print("start-up cost of the CLI")
        results.startup = await measure_startup(dsn, settings.startup_runs)
        if settings.profile:
            console.print("cProfile of the in-process projector and the raw fold")
            await wait_for_other_benchmarks(console)
            results.profiles = await profile_subjects(dsn, settings.batch_size)
        ensure_same_code(fingerprint)


# --- PROJECTION_RESULTS.md -------------------------------------------------------

RESULTS: Final = """\
## Results

| subject | median s | median events/s | ratio of medians | per-round ratios | client CPU µs/event | server CPU µs/event |
|---|---|---|---|---|---|---|
{% for s in subjects if R.of(s) %}
| {{ labels[s] }} | {{ R.median(s, "seconds")|num(2) }} | {{ R.median(s)|num }} | {{ "1 (baseline)" if s == "raw_fold" else "%.2fx"|format(R.ratio(s, "raw_fold")) if R.median("raw_fold") else "-" }} | {{ "-" if s == "raw_fold" else R.per_round(s, "raw_fold")|ratios }} | {{ R.median(s, "client_us")|num }} | {{ R.median(s, "server_us")|num }} |
{% endfor %}

{% if R.median("raw_fold") %}
{% for s in ("cli", "in_process") if R.of(s) %}
{% set ratio = R.ratio(s, "raw_fold") %}
- `{{ s }}`: {{ "%.2f"|format(ratio) }}x the raw fold (target >= {{ target }}x): **{{ "met" if ratio >= target else "NOT met" }}**
{% endfor %}

{% endif %}
{% if failures %}
Measurements that raised (left out of the medians):

{% for failure in failures %}
- {{ failure }}
{% endfor %}

{% endif %}
"""
REPORT: Final = """\
# Projection throughput: `eventstore project` against a raw asyncpg fold

Generated by `{{ command }}` (bench/projection.py); the figures below are measured, none are edited.

{{ machine }}
## Method

- One fresh database per run (`CREATE DATABASE bench_proj_<random>`, migrated with `store.migrate()`, dropped `WITH (FORCE)` at the end).
- The log (untimed, written once): {{ s.executions|num }} executions x 4 events (`ExecutionCreated` with ~150-byte inputs, `ExecutionStarted`, `ExecutionProgressed` with a ~200-byte detail and usage metrics, `ExecutionCompleted` with a ~215-byte result and usage metrics), built with `NewEvent.of(payload)` and written by `store.append` from {{ s.writers }} concurrent coroutines, one event per append (`expected_version` = the previous version); each coroutine keeps {{ s.in_flight }} executions in flight and moves them forward in turn, so the events of one execution lie far apart in the log. They reference 20 threads, 200 messages and 4 graphs created with `store.threads/messages/graphs.create`. `occurred_at` is the writer's clock at the append. Then `VACUUM ANALYZE` and `CHECKPOINT`.
{% if log %}
- The log as read back: {{ log.events|num }} events, {{ log.executions|num }} executions, `execution_events` {{ (log.table_bytes / 2**20)|num }} MiB with its indexes; mean `octet_length(data::text)`: {% for kind, size in log.bytes_by_type.items() %}{{ kind }} {{ size|num }} B{{ ", " if not loop.last }}{% endfor %}; {{ log.spanning_streams|num }} of {{ log.executions|num }} executions span more than one batch of {{ log.batch_size|num }}. Generating it took {{ log.seconds|num }} s ({{ (log.events / log.seconds)|num }} events/s).
{% endif %}
- Subjects, each projecting the whole log from scratch in batches of {{ s.batch_size|num }}:
  - `raw_fold` (baseline, bench/projection_baseline.py): asyncpg only, one connection opened before the clock starts; per batch ONE transaction that reads the next events after the (transaction_id, position) checkpoint with the predicate and order of the store's `READ_ALL_SQL` (only the columns the fold needs), loads the batch's existing rows with one `SELECT ... WHERE id = ANY($1)`, folds in plain dicts (stdlib `json`), writes every changed row with ONE `INSERT ... SELECT FROM unnest(...) ON CONFLICT (id) DO UPDATE ... WHERE version < excluded.version`, and moves its checkpoint row by compare-and-set. `raw_executions` is `CREATE TABLE ... (LIKE executions INCLUDING ALL)` plus the same three foreign keys: the same indexes and reference checks as `executions`.
  - `cli`: `eventstore project --until-caught-up --url URL --batch-size {{ s.batch_size }}` as a subprocess, timed from spawn to exit: interpreter start-up, imports, connecting, the projection and exit (see Start-up cost). Its client CPU is the child's (`RUSAGE_CHILDREN`).
  - `in_process`: `Projector(store, batch_size=...).run_until_caught_up()` on a store opened (`EventStore.open`) before the clock starts.
- Before every measurement (untimed): the subject's table is emptied (`TRUNCATE executions` and its checkpoint row deleted; `TRUNCATE raw_executions` and its checkpoint set back to 0), then `CHECKPOINT`.
- {{ s.rounds }} interleaved round{{ "s" if s.rounds != 1 }}; each round runs the three subjects once, in the order raw_fold, cli, in_process, starting one later each round. Before the rounds, an untimed raw fold and in-process projection warm the caches and feed the correctness check. The tables give medians over rounds.
- events/s = events of the log / wall time. Client CPU = `time.process_time()` of this process, or the CLI child's CPU. Server CPU = the PostgreSQL processes serving the `bench_*` database and the shared ones (WAL writer, checkpointer), from /proc (for `cli`, whose backend exits with it, sampled every {{ (sample * 1000)|num }} ms while it runs: the backend's last interval is missed). Before every measurement the runner waits until `pgrep -f {{ other }}` finds nothing; a measurement during which other programs kept more than {{ s.max_other_cores }} cores busy is run again (at most {{ s.retries }} times).

{{ results }}
### Per round

| round | # | subject | events | s | events/s | client CPU s | server CPU s | other cores | attempt |
|---|---|---|---|---|---|---|---|---|---|
{% for r in R|sort(attribute="round,sequence") %}
| {{ row(r) }} |
{% endfor %}

{% if startup %}
## Start-up cost of the CLI

Medians of {{ s.startup_runs }} run{{ "s" if s.startup_runs != 1 }}, spawn to exit:

| command | s |
|---|---|
{% for command, seconds in startup.items() %}
| {{ command }} | {{ seconds|num(3) }} |
{% endfor %}

{% set cli, no_op = R.median("cli", "seconds"), (startup.values()|list)[-1] %}
{% if cli %}
- The no-op catch-up is {{ "{:.0%}".format(no_op / cli) }} of the median `cli` time.
{% endif %}

{% endif %}
{% if check %}
## Correctness

{{ check[0] }}
{{ check[1] }}
- After every timed run: the subject reported every event of the log, its table has one row per execution and its checkpoint is at the log's last position: {{ "**failures**: " + problems|join("; ") if problems else "**all passed**." }}
{% for line in check[2:] %}
{{ line }}
{% endfor %}

{% endif %}
{% if profiles %}
## Where the time goes

One projection of the whole log from scratch with cProfile on (in this process; the profiler slows Python code more than C code, so read the split rather than the absolute numbers). Own time per event by category; a builtin's own time counts for the package that called it; idle is the event loop blocked in epoll, i.e. waiting for PostgreSQL.

| category | {{ profiles|map(attribute="subject")|join(" µs/event | ") }} µs/event |
|---|{% for p in profiles %}---|{% endfor %}

{% for category, cells in categories %}
| {{ category }} | {{ cells|join(" | ") }} |
{% endfor %}

Top 15 functions of `in_process` by cumulative time (event loop and bench frames left out):

{{ functions(profiles[0], profiles[0].top, by_own=True, per_event=False) }}

cProfile counts every resumption of a coroutine as a call and adds up its cumulative time per resumption, so the cumulative figures of `async def` frames are approximate. The same profile by own time (the event loop's frames included):

{{ functions(profiles[0], profiles[0].own_top, by_own=True, per_event=False) }}

{% endif %}
{{ notes }}
"""


def _results(results: Results) -> str:
    return harness.report(
        RESULTS,
        R=results.runs,
        subjects=SUBJECTS,
        labels=LABELS,
        target=TARGET_RATIO,
        failures=results.failures,
    )


def render(results: Results, path: Path | None) -> str:
    """PROJECTION_RESULTS.md (the notes block of the file at `path` kept)."""
    found = results.profiles
    return harness.report(
        REPORT,
        command=results.command,
        machine=results.environment.lines(
            shares="the client (and the CLI subprocess) and the server share these cores"
        ),
        s=results.settings,
        log=results.log,
        sample=harness.SERVER_SAMPLE_SECONDS,
        other=OTHER_BENCHMARK,
        results=_results(results),
        R=results.runs,
        row=_row,
        startup=results.startup,
        check=results.check,
        problems=results.run_problems,
        profiles=results.profiles,
        categories=[
            *((c, [num(p.us(c), 1) for p in found]) for c in RULES.categories),
            ("total, idle excluded", [num(p.busy_us, 1) for p in found]),
            ("wall time with the profiler, s", [num(p.seconds, 2) for p in found]),
        ],
        functions=profiles.functions,
        notes=harness.notes(path),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = harness.options(
        "python -m bench.projection",
        "Projecting a log from scratch: `eventstore project --until-caught-up` (subprocess) and the in-process "
        "projector against a raw asyncpg fold, interleaved rounds, medians to bench/PROJECTION_RESULTS.md.",
        QUICK,
        "where to write the report (default bench/PROJECTION_RESULTS.md; --quick: nowhere)",
        "a smoke run: 500 executions, 1 round; writes nothing unless --output",
        executions="executions in the log, 4 events each (default 50000; --quick: 500)",
        rounds="interleaved rounds (default 5)",
        batch_size="events per batch (default 1000)",
        writers="coroutines writing the log (default 32; --quick: 8)",
        in_flight="executions each writer keeps in flight (default 8)",
        max_other_cores="a measurement during which other programs kept more than this "
        "many cores busy is run again (default 0.5)",
        retries="how often at most (default 2)",
        profile="skip the cProfile section",
    )
    args = parser.parse_args(arguments)
    settings: Settings = harness.configured(
        QUICK if args.quick else Settings(Server()), args
    )
    settings = replace(settings, server=Server(args.dsn))
    output = args.output or (None if args.quick else RESULTS_PATH)
    console = Console(stderr=True)
    asyncio.run(wait_for_other_benchmarks(console))
    fingerprint = code_fingerprint()
    command = " ".join(["python -m bench.projection", *arguments])
    results = Results(settings, Environment(settings.server), command)
    try:
        asyncio.run(run(settings, results, console, fingerprint))
    except CodeChangedError as exc:
        console.print(f"[red]{exc}; nothing written[/]")
        raise SystemExit(2) from exc
    results.environment.finish()
    Console().print(Markdown(_results(results)))
    if output is not None and not results.runs:
        console.print("[red]no measurement finished; nothing written[/]")
    elif output is not None:
        output.write_text(render(results, output), encoding="utf-8")
        console.print(f"wrote {output}")


if __name__ == "__main__":
    main()
