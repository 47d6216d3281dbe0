"""Projection throughput on a COPY-loaded log: rebuild and catch-up against a plain asyncpg fold.

A fresh database gets bench/audit_log.py's log (in a child process) and the
threads, messages and graphs it references. Sections (--sections):
``throughput``, interleaved rounds of the baseline (bench/projection_baseline.py),
`eventstore rebuild`, `eventstore project --until-caught-up` from zero and
`run_rebuild` in process; ``partitions`` and ``lag`` (bench/projection_live.py).

.venv/bin/python -m bench.projection            # 1,000,000 events; writes bench/PROJECTION_RESULTS.md
.venv/bin/python -m bench.projection --quick    # a smoke run; writes nothing
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console

from bench import audit_log, harness, projection_baseline, projection_live
from bench.harness import Environment, Rounds, Run, Server, connected, timed
from bench.projection_live import projected, reset_projection
from eventstore import EventStore
from projections.executions import ExecutionsProjection
from projections.rebuild import run_rebuild

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.harness import Timing

RESULTS_PATH: Final = Path(__file__).parent / "PROJECTION_RESULTS.md"
SECTIONS: Final = ("throughput", "partitions", "lag")
SUBJECTS: Final = ("baseline", "rebuild", "project", "project_batches", "library")
BASELINE: Final = "baseline"
LABELS: Final = {
    "baseline": "plain asyncpg fold (baseline)",
    "rebuild": "`eventstore rebuild` (child process)",
    "project": "`eventstore project --until-caught-up` from zero (child process)",
    "project_batches": "the same, `--rebuild-at-start 0`: in batches (child process)",
    "library": "`run_rebuild(store, ExecutionsProjection(...))` (in process)",
    **projection_live.LABELS,
}
RSS_SAMPLE_SECONDS: Final = 0.02
TARGETS: Final = {"rebuild": 150_000, "project": 80_000}  # events/s
# The rows the COPY-loaded log references (audit_log generates the events only).
REFERENCES_SQL: Final = (
    "INSERT INTO threads (id, title) SELECT DISTINCT (data->>'thread_id')::uuid, "
    "'bench' FROM execution_events WHERE type = 'ExecutionCreated'",
    "INSERT INTO graphs (id, name, version, definition) SELECT g, g::text, '1', "
    "'{}'::jsonb FROM (SELECT DISTINCT (data->>'graph_id')::uuid AS g "
    "FROM execution_events WHERE type = 'ExecutionCreated') AS distinct_graphs",
    "INSERT INTO messages (id, thread_id, role, content) SELECT DISTINCT "
    "(data->>'message_id')::uuid, (data->>'thread_id')::uuid, 'user', 'q' "
    "FROM execution_events WHERE type = 'ExecutionCreated'",
)
CHECK_SQL: Final = """
SELECT (SELECT count(*) FROM {table}), (SELECT max(position) FROM {checkpoint}),
       (SELECT max(position) FROM execution_events)
"""


@dataclass(frozen=True, slots=True)
class Settings:
    """What one run does (see --help)."""

    events: int = 1_000_000
    rounds: int = 3
    batch_size: int = 5_000
    sections: tuple[str, ...] = SECTIONS
    lag_rate: float = 1_000.0
    lag_writers: int = 16
    lag_seconds: float = 40.0
    max_other_cores: float = 0.5
    retries: int = 2
    seed: int = 7


QUICK: Final = Settings(3_000, 1, lag_rate=200.0, lag_writers=4, lag_seconds=3.0)


@dataclass(slots=True)
class Results:
    """Everything the report shows."""

    settings: Settings
    environment: Environment
    command: str
    log: audit_log.LogFacts | None = None
    rounds: Rounds = field(default_factory=Rounds)
    baseline_check: str = "not run"
    # `eventstore rebuild`'s own report, per timed run: events/s, swap ms
    rebuild_reports: list[tuple[float, float]] = field(default_factory=list)
    lag: dict[str, float] = field(default_factory=dict)


def wait_measured(command: Sequence[str]) -> tuple[str, int]:
    """Run a child to its end: its stdout and its own peak RSS in bytes.

    The peak is the child's VmHWM, sampled until it exits: `ru_maxrss` of a
    child (wait4, RUSAGE_CHILDREN) starts from this process's RSS at the
    fork, so after an in-process subject it reported that subject's peak.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)  # noqa: S603
        peak = 0
        while process.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak = max(peak, int(status.split("VmHWM:", 1)[1].split()[0]) * 1024)
            time.sleep(RSS_SAMPLE_SECONDS)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            error = err.read().decode(errors="replace").strip()
            raise RuntimeError(
                f"{command[1]} exited with {process.returncode}: {error}"
            )
        return out.read().decode(), peak


async def run_cli(*arguments: str) -> tuple[str, Timing]:
    """`eventstore ...` to its exit: stdout and the Timing with the child's peak RSS;
    the server sampled while it runs (its backends exit with it)."""
    command = harness.eventstore_cli(*arguments)
    (stdout, rss), timing = await timed(
        lambda: asyncio.to_thread(wait_measured, command),
        harness.CURRENT_DATABASE.get(),
        sample_server=True,
    )
    return stdout, dataclasses.replace(timing, peak_rss=rss)


@dataclass(slots=True)
class Bench:
    """The subjects, measured on one database that holds the log."""

    dsn: str
    settings: Settings
    results: Results
    log: audit_log.LogFacts

    async def baseline(self) -> tuple[int, Timing]:
        await harness.execute(self.dsn, *projection_baseline.RESET_SQL)
        async with connected(self.dsn) as reader, connected(self.dsn) as writer:
            upsert = await projection_baseline.upsert_sql(writer)
            return await timed(
                lambda: projection_baseline.fold(
                    reader, writer, upsert, self.settings.batch_size
                ),
                harness.CURRENT_DATABASE.get(),
                rss=True,
            )

    async def rebuild(self) -> tuple[int, Timing]:
        stdout, timing = await run_cli("rebuild", "--url", self.dsn, "--json")
        report = json.loads(stdout)
        rate = report["events"] / report["seconds"]
        self.results.rebuild_reports.append((rate, report["swap_seconds"] * 1000))
        return int(report["events"]), timing

    async def project(self, *options: str) -> tuple[int, Timing]:
        await reset_projection(self.dsn)
        args = ("project", "--until-caught-up", "--url", self.dsn, *options)
        stdout, timing = await run_cli(*args)
        return projected(stdout), timing

    async def project_batches(self) -> tuple[int, Timing]:
        return await self.project("--rebuild-at-start", "0")

    async def library(self) -> tuple[int, Timing]:
        async with EventStore.open(self.dsn) as store:
            projection = ExecutionsProjection(store.backend)
            report, timing = await timed(
                lambda: run_rebuild(store, projection),
                harness.CURRENT_DATABASE.get(),
                rss=True,
            )
        return report.events, timing

    async def check(self, subject: str, count: int) -> str | None:
        """What is wrong after a run: events, rows or checkpoint; None if nothing."""
        table, checkpoint = "executions", "projection_checkpoints"
        if subject == BASELINE:
            table, checkpoint = projection_baseline.TABLE, "baseline_checkpoint"
        sql = CHECK_SQL.format(table=table, checkpoint=checkpoint)
        async with connected(self.dsn) as connection:
            rows, at, end = await connection.fetchrow(sql) or (0, None, None)
        wrong = {
            f"{count:,} events folded of {self.log.events:,}": count != self.log.events,
            f"{rows:,} rows for {self.log.executions:,} executions": rows
            != self.log.executions,
            f"checkpoint at {at}, the log ends at {end}": at != end,
        }
        if subject in ("rebuild", "project", "project_batches", "library"):
            # Its table against the plain fold's (the rebuild folds in the database).
            equal = await self.compare()
            wrong[f"against the baseline's table: {equal}"] = not equal.startswith(
                "equal"
            )
        return "; ".join(problem for problem, found in wrong.items() if found) or None

    async def measure(self, subject: str, number: int, sequence: int) -> Run:
        """One run from an empty table (a rebuild replaces the full one)."""
        await harness.execute(self.dsn, "CHECKPOINT")  # the last run's dirty pages
        if subject in projection_live.LABELS:
            count, timing = await projection_live.partitions(self.dsn, subject)
        else:
            count, timing = await getattr(self, subject)()
        problem = await self.check(subject, count)
        return Run(subject, number, sequence, count, timing, problem=problem)

    async def compare(self) -> str:
        """The baseline's table against `executions`, every column."""
        async with connected(self.dsn) as connection:
            differing = [
                r["id"]
                for r in await connection.fetch(projection_baseline.DIFFERENCES_SQL)
            ]
        if not differing:
            return "equal, every column of every row"
        ids = ", ".join(str(i) for i in dict.fromkeys(differing[:6]))
        return f"{len(differing):,} rows of either table have no equal in the other (ids {ids})"


async def load_log(dsn: str, settings: Settings) -> audit_log.LogFacts:
    """The log, COPY-loaded in a child process (its memory stays there), and
    the rows it references; the baseline's tables; then VACUUM ANALYZE."""
    await harness.migrate(dsn)
    with ProcessPoolExecutor(max_workers=1) as executor:
        facts = await asyncio.get_running_loop().run_in_executor(
            executor, audit_log.load_log, dsn, settings.events, settings.seed
        )
    setup = projection_baseline.SETUP_SQL
    await harness.execute(dsn, *REFERENCES_SQL, *setup, "VACUUM ANALYZE", "CHECKPOINT")
    return facts


async def run(results: Results, server: Server, console: Console) -> None:
    """Create the database, load the log, measure the sections, drop it."""
    settings = results.settings
    rounds = functools.partial(
        harness.interleaved,
        rounds=settings.rounds,
        max_other_cores=settings.max_other_cores,
        console=console,
        retries=settings.retries,
        into=results.rounds,
    )
    async with harness.throwaway_database(server, "bench_proj_") as dsn:
        console.print(f"loading {settings.events:,} events (untimed)")
        log = results.log = await load_log(dsn, settings)
        console.print(f"{log.events:,} events, {log.executions:,} executions")
        bench = Bench(dsn, settings, results, log)
        if "throughput" in settings.sections:
            console.rule("warm-up and the baseline's check (untimed)")
            for subject in (BASELINE, "rebuild"):
                console.print((await bench.measure(subject, 0, 0)).line())
            results.rebuild_reports.clear()
            results.baseline_check = await bench.compare()
            console.print(f"baseline against executions: {results.baseline_check}")
            if not results.baseline_check.startswith("equal"):
                results.rounds.failures.append(f"baseline: {results.baseline_check}")
            await rounds(SUBJECTS, bench.measure)
        if "partitions" in settings.sections:
            await rounds(tuple(projection_live.LABELS), bench.measure)
        if "lag" in settings.sections:
            console.rule("live lag")
            await harness.until_quiet(settings.max_other_cores)
            results.lag = await projection_live.lag(
                dsn, settings.lag_rate, settings.lag_writers, settings.lag_seconds
            )
            console.print(results.lag)


REPORT: Final = """\
# Projection: rebuild and catch-up against a plain asyncpg fold

Generated by `{{ command }}` (bench/projection.py); the figures below are measured, none are edited.

{{ machine }}
## Targets

{% for subject, target in targets.items() %}
- {{ labels[subject] }}: median {{ R.median(subject)|n }} events/s, target >= {{ target|num }}: **{{ "met" if (R.median(subject) or 0) >= target else "NOT met" }}**
{% endfor %}

## Method

- A fresh database (`CREATE DATABASE bench_proj_<random>`, migrated, dropped at the end). The log: bench/audit_log.py's generator in a child process, COPY-loaded: {{ log.events|num }} events, {{ log.executions|num }} executions of ~10 lifecycle events (created, started, 4-10 progressed with usage metrics; completed, failed or cancelled, some left pending or running; retries), a window of 64 executions interleaved in the log. The threads, messages and graphs they reference are inserted by SQL; then `VACUUM ANALYZE`.
- Subjects, each folding the whole log into a table of the `executions` columns:
  - `baseline` (bench/projection_baseline.py): asyncpg only, two connections opened before the clock starts. It reads the log in position order, {{ s.batch_size|num }} events a batch, the next batch fetched on the second connection while the last is folded and written; folds in memory to one row per stream (the rules of eventstore/fold.py, JSON by orjson); writes each batch's changed rows with one `INSERT ... SELECT FROM unnest(...) ON CONFLICT (id) DO UPDATE` and its checkpoint in one transaction, into `baseline_executions` (`LIKE executions INCLUDING ALL` and the same foreign keys). It starts from an empty table.
  - `rebuild`: `eventstore rebuild --url URL --json` (shadow table, swap, retired table dropped) in a child process, spawn to exit; peak RSS is the child's own. From the start it has PostgreSQL group the log by stream and folds only what that leaves (docs/ARCHITECTURE.md §5).
  - `project`: `eventstore project --until-caught-up --url URL` in a child process, spawn to exit, after `TRUNCATE executions` and deleting the checkpoints. At the start of a log this long it catches up by a rebuild (`projections/start_by_rebuild.py`).
  - `project_batches`: the same with `--rebuild-at-start 0`: batch after batch from the start, as a projector behind does.
  - `library`: `run_rebuild(store, ExecutionsProjection(store.backend))` on a store opened before the clock starts (CPython's default garbage collector; the CLI tunes it).
  - Peak RSS: of the child process (its `VmHWM`, sampled every 20 ms until it exits); for `baseline` and `library`, of this process during the run (its high-water mark reset first).
- {{ s.rounds }} interleaved round{{ "s" if s.rounds != 1 }}, the order starting one later each round; `CHECKPOINT` before every run. An untimed warm-up runs the baseline and `eventstore rebuild` first, then the baseline's table is compared with `executions` (`EXCEPT ALL` both ways over every column): **{{ baseline_check }}**.
- After every run: the events it reports equal the log's, its table has one row per execution, its checkpoint is at the log's last position; and the table of `rebuild`, `project`, `project_batches` and `library` equals the baseline's, every column of every row (as above).
- events/s = events / wall time (for the child processes including interpreter start-up). Client CPU: this process and its waited-for children. Server CPU: the PostgreSQL processes of this database and the shared ones, from /proc (sampled every 50 ms while a child runs). A run during which other programs kept more than {{ s.max_other_cores }} cores busy is run again (at most {{ s.retries }} times) after waiting for a quiet machine.

## Results

| subject | median s | median events/s | ratio to the baseline | per-round ratios | client CPU µs/event | server CPU µs/event | median peak RSS |
|---|---|---|---|---|---|---|---|
{% for s in subjects if R.of(s) %}
| {{ labels[s] }} | {{ R.median(s, "seconds")|num(2) }} | {{ R.median(s)|num }} | {{ "1 (baseline)" if s == "baseline" else R.ratio(s, "baseline")|n(2) }} | {{ "-" if s == "baseline" else R.per_round(s, "baseline")|ratios }} | {{ R.median(s, "client_us")|num(1) }} | {{ R.median(s, "server_us")|num(1) }} | {{ R.median(s, "timing.peak_rss")|mib if R.median(s, "timing.peak_rss") else "-" }} |
{% endfor %}

{% if rebuild_reports %}
`eventstore rebuild` by its own clock (the `seconds` of its report: without interpreter start-up, opening the store and counting the log), every timed run (disturbed ones too): median **{{ rebuild_rate|num }} events/s** (runs: {{ rebuild_reports|map(attribute=0)|map("num")|join(", ") }}); its swap held the live table {{ rebuild_reports|map(attribute=1)|ratios(0) }} ms.

{% endif %}
{% if R.of("partitions_1") %}
## Partitions

`eventstore project --until-caught-up --rebuild-at-start 0` from zero, in batches: one process, against 4 processes `--partitions 4` started together (spawn of the first to exit of the last). Speed-up of the medians: **{{ R.ratio("partitions_4", "partitions_1")|n(2) }}x** (per round {{ R.per_round("partitions_4", "partitions_1")|ratios }}).

{% endif %}
{% if lag %}
## Live lag

One projector daemon (`eventstore project --poll-interval 0.5`, caught up first) behind {{ s.lag_writers }} writer coroutines in this process cycling `executions.create/start/progress/complete`, paced to {{ s.lag_rate|num }} events/s in all for {{ s.lag_seconds|num }} s; a watcher polls the checkpoint every 2 ms. An event's lag: the first sample whose checkpoint passed it, minus the return of its call.

| achieved events/s | events | p50 ms | p95 ms | p99 ms | max ms | never passed |
|---|---|---|---|---|---|---|
| {{ lag.rate|num }} | {{ lag.events|num }} | {{ lag.p50|num(1) }} | {{ lag.p95|num(1) }} | {{ lag.p99|num(1) }} | {{ lag.max|num(1) }} | {{ lag.missed|num }} |

{% endif %}
## Every run

{{ per_run(R|selectattr("subject", "in", subjects)) }}
{% if R.of("partitions_1") %}
Partitions:

{{ per_run(R|rejectattr("subject", "in", subjects)) }}
{% endif %}
{% if rounds.disturbed %}
{{ rounds.disturbed|length }} disturbed attempt(s) were run again and left out.

{% endif %}
{% if rounds.failures %}
Problems and failures:

{% for failure in rounds.failures %}
- {{ failure }}
{% endfor %}
{% else %}
Every check passed.
{% endif %}

{{ notes }}
"""


def render(results: Results, path: Path | None) -> str:
    """PROJECTION_RESULTS.md (the notes block of the file at `path` kept)."""
    return harness.report(
        REPORT,
        command=results.command,
        machine=results.environment.lines(
            shares="the client, the CLI's child processes and the server share these cores"
        ),
        targets=TARGETS,
        labels=LABELS,
        log=results.log,
        s=results.settings,
        subjects=SUBJECTS,
        R=results.rounds.runs,
        rounds=results.rounds,
        baseline_check=results.baseline_check,
        rebuild_reports=results.rebuild_reports,
        rebuild_rate=harness.median(r[0] for r in results.rebuild_reports),
        lag=results.lag,
        per_run=harness.per_run_table,
        notes=harness.notes(path),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = harness.options(
        "python -m bench.projection",
        "Folding a COPY-loaded log: `eventstore rebuild`, `eventstore project` and "
        "`run_rebuild` against a plain asyncpg fold; partitions; live lag.",
        Settings(),
        "where to write the report (default bench/PROJECTION_RESULTS.md; --quick: nowhere)",
        "a smoke run: 3,000 events, 1 round, 3 s of lag; writes nothing unless --output",
        events="events in the log (default 1000000; --quick: 3000)",
        rounds="interleaved rounds (default 3)",
        batch_size="the baseline's events per batch (default 5000)",
        sections=f"what to measure (default: {' '.join(SECTIONS)})",
        lag_rate="events/s the lag section's writers append in all (default 1000)",
        lag_writers="the lag section's writer coroutines (default 16)",
        lag_seconds="how long the lag section writes (default 40)",
        max_other_cores="a run during which other programs kept more than this many "
        "cores busy is run again (default 0.5)",
        retries="how often at most (default 2)",
        seed="the log generator's seed (default 7)",
    )
    args = parser.parse_args(arguments)
    settings: Settings = harness.configured(QUICK if args.quick else Settings(), args)
    if unknown := set(settings.sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    output = args.output or (None if args.quick else RESULTS_PATH)
    console = Console(stderr=True)
    server = Server(args.dsn)
    command = " ".join(["python -m bench.projection", *arguments])
    results = Results(settings, Environment(server), command)
    asyncio.run(run(results, server, console))
    results.environment.finish()
    if output is not None and not results.rounds.runs and not results.lag:
        console.print("[red]no measurement finished; nothing written[/]")
    elif output is not None:
        output.write_text(render(results, output), encoding="utf-8")
        console.print(f"wrote {output}")


if __name__ == "__main__":
    main()
