"""Projection throughput: `eventstore project --until-caught-up` against a raw asyncpg fold.

One fresh database per run holds a log of N executions x 4 events (written
once, untimed, by bench/projection_log.py). Each round then projects that
log from scratch three ways, one after another on the same database:

- ``raw_fold``: the hand-written asyncpg fold of bench/projection_baseline.py;
- ``cli``: ``eventstore project --until-caught-up --url URL`` as a subprocess,
  timed from spawn to exit (interpreter start-up included);
- ``in_process``: ``Projector(store).run_until_caught_up()`` on an open store.

.venv/bin/python -m bench.projection            # the full run; writes bench/PROJECTION_RESULTS.md
.venv/bin/python -m bench.projection --quick    # a smoke run (seconds); writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import hashlib
import os
import pstats
import random
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import asyncpg
from rich.console import Console

from bench import cpu, machine, projection_baseline, projection_log
from bench.databases import DEFAULT_ADMIN_DSN, Server, drop_database
from bench.projection_report import (
    BASELINE,
    DATABASE_PREFIX,
    IDLE,
    OTHER_BENCHMARK,
    PROFILE_CATEGORIES,
    PROFILE_TOP,
    SERVER_SAMPLE_SECONDS,
    SUBJECTS,
    Check,
    Profile,
    Results,
    Run,
    Settings,
    Startup,
    existing_notes,
    render,
    summary_table,
)
from eventstore import EventStore
from eventstore.settings import StoreSettings
from projections.projector import Projector
from projections.queries import ExecutionsView

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence


RESULTS_PATH: Final = Path(__file__).parent / "PROJECTION_RESULTS.md"
OTHER_BENCHMARK_SLEEP: Final = 20.0
_PROJECTED: Final = re.compile(r"projected ([\d,]+) events")
SCAN_EVERY: Final = 5
_TICK: Final = os.sysconf("SC_CLK_TCK")


REPOSITORY: Final = Path(__file__).parent.parent
CODE_DIRECTORIES: Final = ("eventstore", "projections", "migrations")


class CodeChangedError(RuntimeError):
    """The store's code changed during the run: the CLI would run other code."""


def code_fingerprint() -> str:
    """sha256 over the Python files the subjects run (the CLI loads them afresh)."""
    digest = hashlib.sha256()
    for directory in CODE_DIRECTORIES:
        for path in sorted((REPOSITORY / directory).rglob("*.py")):
            digest.update(str(path.relative_to(REPOSITORY)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_same_code(fingerprint: str) -> None:
    """Stop the run if eventstore/, projections/ or migrations/ changed since it began.

    Raises:
        CodeChangedError: they changed.
    """
    if code_fingerprint() != fingerprint:
        raise CodeChangedError(
            "eventstore/, projections/ or migrations/ changed during the run: the "
            "CLI subprocess would run other code than the in-process projector "
            "(and perhaps expect another schema); run the benchmark again"
        )


QUICK: Final = Settings(
    server=Server(), executions=500, writers=8, rounds=1, sample=50, startup_runs=1
)


# --- waiting for a quiet machine ------------------------------------------------


def other_benchmark_running() -> bool:
    """Whether `pgrep -f bench.append` finds a process (the append benchmark)."""
    found = subprocess.run(  # noqa: S603 - a constant command
        ["pgrep", "-f", OTHER_BENCHMARK],  # noqa: S607 - pgrep from PATH
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


async def wait_for_other_benchmarks(console: Console) -> None:
    """Sleep until no append benchmark runs (the two would share the 2 cores)."""
    announced = False
    while other_benchmark_running():
        if not announced:
            console.print(
                f"[yellow]{OTHER_BENCHMARK} is running; waiting for it to end[/]"
            )
            announced = True
        await asyncio.sleep(OTHER_BENCHMARK_SLEEP)


# --- the database ---------------------------------------------------------------


async def create_database(server: Server) -> str:
    """CREATE DATABASE bench_proj_<random>; returns its name."""
    name = f"{DATABASE_PREFIX}{secrets.token_hex(6)}"
    connection = await asyncpg.connect(server.admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def execute(dsn: str, *statements: str) -> None:
    """Run statements on a fresh connection, each in its own transaction."""
    connection = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def reset_projection(dsn: str) -> None:
    """Empty `executions` and delete its checkpoint: the next run starts from scratch."""
    await execute(
        dsn,
        "TRUNCATE executions",
        "DELETE FROM projection_checkpoints WHERE name = 'executions'",
    )


async def settle(dsn: str) -> None:
    """CHECKPOINT, so the previous run's dirty pages are not written during the next."""
    await execute(dsn, "CHECKPOINT")


# --- the three subjects ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Timed:
    events: int
    seconds: float
    client_cpu: float
    server_cpu: float
    machine_cpu: float | None


async def _timed_in_process(work: Callable[[], Awaitable[int]]) -> _Timed:
    before = cpu.snapshot()
    wall, process = time.perf_counter(), time.process_time()
    events = await work()
    seconds, client = time.perf_counter() - wall, time.process_time() - process
    machine_cpu, server_cpu = cpu.used(before, cpu.snapshot())
    return _Timed(events, seconds, client, server_cpu, machine_cpu)


async def measure_raw_fold(dsn: str, batch_size: int) -> _Timed:
    """The baseline, on a connection opened before the clock starts."""
    await projection_baseline.reset(dsn)
    await settle(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        return await _timed_in_process(
            lambda: projection_baseline.fold_on(connection, batch_size=batch_size)
        )
    finally:
        await connection.close()


async def measure_in_process(dsn: str, batch_size: int) -> _Timed:
    """The projector on a store opened before the clock starts."""
    await reset_projection(dsn)
    await settle(dsn)
    async with EventStore.open(dsn) as store:
        projector = Projector(store, batch_size=batch_size)
        return await _timed_in_process(projector.run_until_caught_up)


def cli_command(*arguments: str) -> list[str]:
    """The `eventstore` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("eventstore")
    if script.exists():
        return [str(script), *arguments]
    return [sys.executable, "-m", "eventstore.cli", *arguments]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _spawn(command: Sequence[str]) -> tuple[float, float, str]:
    """Run a command to its end: wall seconds, its CPU seconds, its stdout."""
    children = _children_cpu()
    wall = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    stdout, stderr = await process.communicate()
    seconds = time.perf_counter() - wall
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}: "
            f"{stderr.decode(errors='replace').strip()}"
        )
    return seconds, _children_cpu() - children, stdout.decode(errors="replace")


def _process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of one process, None once it is gone."""
    try:
        stat = (cpu.PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _sample_server(seen: dict[int, float]) -> None:
    """Keep the latest CPU seconds of every server process: new ones are looked
    for every SCAN_EVERY samples (a scan of /proc costs ~2 ms), the known ones
    read every sample."""
    samples = 0
    while True:
        await asyncio.sleep(SERVER_SAMPLE_SECONDS)
        samples += 1
        if samples % SCAN_EVERY == 1:
            seen.update(cpu.server_processes())
            continue
        for pid in list(seen):
            used = _process_cpu(pid)
            if used is not None:
                seen[pid] = used


async def measure_cli(dsn: str, batch_size: int) -> _Timed:
    """`eventstore project --until-caught-up`, spawn to exit."""
    await reset_projection(dsn)
    await settle(dsn)
    command = cli_command(
        "project", "--until-caught-up", "--url", dsn, "--batch-size", str(batch_size)
    )
    before = cpu.snapshot()
    # The CLI's backends exit with it, taking their CPU counters along: sample
    # them while it runs (what a backend uses in its last interval is lost).
    seen: dict[int, float] = dict(before.server)
    sampler = asyncio.create_task(_sample_server(seen))
    try:
        seconds, client, stdout = await _spawn(command)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    after = cpu.snapshot()
    seen.update(after.server)
    machine_cpu, server_cpu = cpu.used(
        before, cpu.Snapshot(machine=after.machine, server=seen)
    )
    match = _PROJECTED.search(stdout)
    if match is None:
        raise RuntimeError(f"unexpected output of the CLI: {stdout!r}")
    events = int(match.group(1).replace(",", ""))
    return _Timed(events, seconds, client, server_cpu, machine_cpu)


MEASURES: Final = {
    "raw_fold": measure_raw_fold,
    "cli": measure_cli,
    "in_process": measure_in_process,
}


# --- checks ---------------------------------------------------------------------


async def _projected_state(dsn: str, subject: str) -> tuple[int, int, int]:
    """(rows, checkpoint position, last position of the log) after a subject's run."""
    table, checkpoint = (
        ("raw_executions", "raw_checkpoints")
        if subject == BASELINE
        else ("executions", "projection_checkpoints")
    )
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetchval(f"SELECT count(*) FROM {table}")
        position = await connection.fetchval(f"SELECT max(position) FROM {checkpoint}")
        last = await connection.fetchval("SELECT max(position) FROM execution_events")
    finally:
        await connection.close()
    return int(rows), int(position or 0), int(last or 0)


async def check_run(dsn: str, run: Run, *, executions: int, events: int) -> str | None:
    """Whether a timed run folded everything: None, or what is wrong."""
    rows, position, last = await _projected_state(dsn, run.subject)
    problems = []
    if run.events != events:
        problems.append(f"reported {run.events} events, the log has {events}")
    if rows != executions:
        problems.append(f"{rows} rows, expected {executions}")
    if position != last:
        problems.append(f"checkpoint at {position}, the log ends at {last}")
    if not problems:
        return None
    return f"{run.subject} round {run.round}: " + "; ".join(problems)


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


async def check_correctness(dsn: str, *, sample: int, seed: int) -> Check:
    """After a raw fold and a projector run: compare the tables and a sample of rows."""
    connection = await asyncpg.connect(dsn)
    try:
        raw_rows = int(await connection.fetchval("SELECT count(*) FROM raw_executions"))
        projector_rows = int(
            await connection.fetchval("SELECT count(*) FROM executions")
        )
        differences = int(await connection.fetchval(DIFFERENCES_SQL))
        json_nulls = {
            name: int(
                await connection.fetchval(
                    f"SELECT count(*) FROM executions WHERE {name} = 'null'::jsonb"
                )
            )
            for name in ("inputs", "result", "error")
        }
        ids = [row["id"] for row in await connection.fetch("SELECT id FROM executions")]
    finally:
        await connection.close()
    chosen = random.Random(seed).sample(sorted(ids), min(sample, len(ids)))
    mismatches: list[str] = []
    async with EventStore.open(dsn, settings=StoreSettings(pool_size=2)) as store:
        view = ExecutionsView(store)
        for execution_id in chosen:
            projected = await view.get(execution_id)
            folded = await store.executions.get(execution_id)
            if projected != folded:
                mismatches.append(str(execution_id))
    return Check(
        sample=len(chosen),
        sample_mismatches=mismatches,
        raw_rows=raw_rows,
        projector_rows=projector_rows,
        raw_vs_projector_differences=differences,
        json_null_columns={k: v for k, v in json_nulls.items() if v},
    )


# --- start-up cost and profile --------------------------------------------------


async def measure_startup(dsn: str, runs: int) -> Startup:
    """Interpreter start-up, `eventstore --help`, and a no-op catch-up, medians."""

    async def median(command: Sequence[str]) -> float:
        return statistics.median([(await _spawn(command))[0] for _ in range(runs)])

    return Startup(
        runs=runs,
        python_pass=await median([sys.executable, "-c", "pass"]),
        help=await median(cli_command("--help")),
        caught_up=await median(
            cli_command("project", "--until-caught-up", "--url", dsn)
        ),
    )


def _category(filename: str, function: str) -> str:
    if filename == "~":
        if "epoll" in function or "select" in function:
            return IDLE
        for needle, category in (
            ("asyncpg", "asyncpg"),
            ("pydantic", "pydantic"),
            ("_asyncio", "asyncio event loop"),
            ("_contextvars", "asyncio event loop"),
            ("_json", "json (stdlib)"),
        ):
            if needle in function:
                return category
        return "other (stdlib, builtins)"
    for needle, category in (
        ("/projections/", PROFILE_CATEGORIES[0]),
        ("/eventstore/", PROFILE_CATEGORIES[1]),
        ("/pydantic", "pydantic"),
        ("/sqlalchemy/", "sqlalchemy"),
        ("/asyncpg/", "asyncpg"),
        ("/json/", "json (stdlib)"),
        ("/asyncio/", "asyncio event loop"),
        ("selectors.py", "asyncio event loop"),
        ("/bench/projection_baseline.py", "raw fold (bench/projection_baseline.py)"),
        ("/bench/", "bench driver"),
    ):
        if needle in filename:
            return category
    return "other (stdlib, builtins)"


def _short(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    for marker in ("/site-packages/", "/work/main/"):
        if marker in filename:
            return f"{filename.split(marker, 1)[1]}:{line}({function})"
    if "/lib/python3." in filename:
        return f"stdlib/{filename.split('/lib/python3.', 1)[1].split('/', 1)[1]}:{line}({function})"
    return f"{filename}:{line}({function})"


_DRIVER_FRAMES: Final = ("/asyncio/", "/bench/", "_contextvars.Context", "selectors")


def summarize(subject: str, profiler: cProfile.Profile, timed: _Timed) -> Profile:
    """Own time per category (a builtin's goes to its caller) and the top functions."""
    table: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    categories = dict.fromkeys(PROFILE_CATEGORIES, 0.0)
    for (filename, _, function), (_, _, own, _, callers) in table.items():
        category = _category(filename, function)
        if category != "other (stdlib, builtins)" or filename != "~" or not callers:
            categories[category] += own
            continue
        for (caller_file, _, caller_function), edge in callers.items():
            caller = _category(caller_file, caller_function)
            categories["other (stdlib, builtins)" if caller == IDLE else caller] += (
                edge[2]
            )
    rows = [
        (
            (filename, function),
            (_short(filename, line, function), calls, own, cumulative),
        )
        for (filename, line, function), (_, calls, own, cumulative, _) in table.items()
    ]
    top = [
        row
        for (filename, function), row in rows
        if not any(frame in filename or frame in function for frame in _DRIVER_FRAMES)
    ]
    top.sort(key=lambda row: row[3], reverse=True)
    top_own = sorted((row for _, row in rows), key=lambda row: row[2], reverse=True)
    return Profile(
        subject=subject,
        events=timed.events,
        seconds=timed.seconds,
        categories=categories,
        top=top[:PROFILE_TOP],
        top_own=top_own[:PROFILE_TOP],
    )


def _profiled(
    profiler: cProfile.Profile, work: Callable[[], Awaitable[int]]
) -> Callable[[], Awaitable[int]]:
    async def profiled() -> int:
        profiler.enable()
        try:
            return await work()
        finally:
            profiler.disable()

    return profiled


async def profile_subjects(dsn: str, batch_size: int) -> list[Profile]:
    """cProfile the in-process projector, then the raw fold, each from scratch."""
    in_process = cProfile.Profile()
    await reset_projection(dsn)
    await settle(dsn)
    async with EventStore.open(dsn) as store:
        projector = Projector(store, batch_size=batch_size)
        timed = await _timed_in_process(
            _profiled(in_process, projector.run_until_caught_up)
        )
    profiles = [summarize("in_process", in_process, timed)]
    raw = cProfile.Profile()
    await projection_baseline.reset(dsn)
    await settle(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        timed = await _timed_in_process(
            _profiled(
                raw,
                functools.partial(
                    projection_baseline.fold_on, connection, batch_size=batch_size
                ),
            )
        )
    finally:
        await connection.close()
    profiles.append(summarize("raw_fold", raw, timed))
    return profiles


# --- the run --------------------------------------------------------------------


def _order(round_number: int) -> list[str]:
    """The subjects of a round: the fixed order, starting one later each round."""
    shift = (round_number - 1) % len(SUBJECTS)
    return list(SUBJECTS[shift:] + SUBJECTS[:shift])


async def _measure(
    settings: Settings,
    dsn: str,
    subject: str,
    round_number: int,
    sequence: int,
    console: Console,
    fingerprint: str,
) -> Run:
    attempt = 0
    while True:
        attempt += 1
        await wait_for_other_benchmarks(console)
        ensure_same_code(fingerprint)
        timed = await MEASURES[subject](dsn, settings.batch_size)
        ensure_same_code(fingerprint)
        run = Run(
            subject=subject,
            round=round_number,
            sequence=sequence,
            events=timed.events,
            seconds=timed.seconds,
            client_cpu=timed.client_cpu,
            server_cpu=timed.server_cpu,
            machine_cpu=timed.machine_cpu,
            attempt=attempt,
        )
        other = run.other_cores
        disturbed = other_benchmark_running() or (
            other is not None and other > settings.max_other_cores
        )
        if not disturbed:
            return run
        if attempt > settings.retries:
            return replace(run, disturbed=True)
        await asyncio.to_thread(
            cpu.wait_until_quiet, limit=settings.max_other_cores, max_wait=60.0
        )


def _line(run: Run) -> str:
    other = run.other_cores
    return (
        f"round {run.round} {run.subject:<10} {run.events:>8,} events "
        f"{run.seconds:7.2f} s {run.events_per_second:>9,.0f} ev/s "
        f"client {run.client_cpu:6.2f} s server {run.server_cpu:6.2f} s "
        f"other {other if other is not None else float('nan'):.2f} cores"
        + (f" (attempt {run.attempt})" if run.attempt > 1 else "")
        + (" DISTURBED" if run.disturbed else "")
    )


async def run(
    settings: Settings, results: Results, console: Console, fingerprint: str
) -> None:
    """Create the database, generate the log, measure, check, profile, drop.

    Raises:
        CodeChangedError: the store's code changed during the run.
    """
    server = settings.server
    await wait_for_other_benchmarks(console)
    name = await create_database(server)
    dsn = server.dsn(name)
    console.print(f"database {name}")
    try:
        shape = projection_log.LogShape(
            executions=settings.executions,
            writers=settings.writers,
            in_flight=settings.in_flight,
        )
        console.print(
            f"generating the log: {shape.executions:,} executions x 4 events "
            f"from {shape.writers} writers (untimed)"
        )
        async with EventStore.open(
            dsn, settings=StoreSettings(pool_size=settings.writers)
        ) as store:
            await store.migrate()
            seconds = await projection_log.generate(store, shape)
        await projection_baseline.setup(dsn)
        await execute(dsn, "VACUUM ANALYZE", "CHECKPOINT")
        results.log = await projection_log.describe(
            dsn, seconds=seconds, batch_size=settings.batch_size
        )
        console.print(
            f"log: {results.log.events:,} events in {seconds:.1f} s; "
            f"{results.log.spanning_streams:,} streams span batches"
        )

        # Untimed: warms the caches, then checks both sides' results.
        console.print("warm-up and correctness check (untimed)")
        await wait_for_other_benchmarks(console)
        await measure_raw_fold(dsn, settings.batch_size)
        await measure_in_process(dsn, settings.batch_size)
        results.check = await check_correctness(dsn, sample=settings.sample, seed=1)
        console.print(results.check)

        failures: list[str] = []
        for round_number in range(1, settings.rounds + 1):
            for sequence, subject in enumerate(_order(round_number), 1):
                try:
                    measured = await _measure(
                        settings,
                        dsn,
                        subject,
                        round_number,
                        sequence,
                        console,
                        fingerprint,
                    )
                except CodeChangedError:
                    raise
                except Exception as exc:
                    failure = f"{subject} round {round_number}: {exc}"
                    results.failures.append(failure)
                    console.print(f"[red]{failure}[/]")
                    continue
                results.runs.append(measured)
                console.print(_line(measured))
                problem = await check_run(
                    dsn,
                    measured,
                    executions=results.log.executions,
                    events=results.log.events,
                )
                if problem is not None:
                    failures.append(problem)
                    console.print(f"[red]{problem}[/]")
        results.check = replace(results.check, per_run_failures=failures)

        await wait_for_other_benchmarks(console)
        ensure_same_code(fingerprint)
        console.print("start-up cost of the CLI")
        results.startup = await measure_startup(dsn, settings.startup_runs)
        if settings.profile:
            console.print("cProfile of the in-process projector and the raw fold")
            await wait_for_other_benchmarks(console)
            results.profiles = await profile_subjects(dsn, settings.batch_size)
        ensure_same_code(fingerprint)
    finally:
        await drop_database(server, name)


# --- command line ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.projection",
        description="Projecting a log from scratch: `eventstore project "
        "--until-caught-up` (subprocess) and the in-process projector against a raw "
        "asyncpg fold, interleaved rounds, medians to bench/PROJECTION_RESULTS.md.",
    )
    parser.add_argument(
        "--executions",
        type=int,
        default=None,
        help="executions in the log, 4 events each (default 50000; --quick: 500)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds (default 5)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="events per batch (default 1000)"
    )
    parser.add_argument(
        "--writers",
        type=int,
        default=None,
        help="coroutines writing the log (default 32; --quick: 8)",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=None,
        help="executions each writer keeps in flight (default 8)",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG_DSN", DEFAULT_ADMIN_DSN),
        help="PostgreSQL DSN of a database to CREATE DATABASE from ($BENCH_PG_DSN)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the report (default bench/PROJECTION_RESULTS.md; "
        "--quick: nowhere)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile section"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 500 executions, 1 round; writes nothing unless --output",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the command line (--quick changes the defaults only)."""
    base = (
        replace(QUICK, server=Server(args.dsn))
        if args.quick
        else Settings(server=Server(args.dsn))
    )
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("executions", args.executions),
            ("rounds", args.rounds),
            ("batch_size", args.batch_size),
            ("writers", args.writers),
            ("in_flight", args.in_flight),
        )
        if value is not None
    }
    if args.no_profile:
        changes["profile"] = False
    return replace(base, **changes)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    args = parse_args(argv)
    settings = settings_from(args)
    console = Console(stderr=True)
    while other_benchmark_running():
        console.print(f"[yellow]{OTHER_BENCHMARK} is running; waiting[/]")
        time.sleep(OTHER_BENCHMARK_SLEEP)
    command = "python -m bench.projection" + (
        " " + " ".join(sys.argv[1:] if argv is None else argv)
        if (sys.argv[1:] if argv is None else argv)
        else ""
    )
    fingerprint = code_fingerprint()
    results = Results(
        settings=settings,
        environment=machine.collect(settings.server),
        command=command,
    )
    try:
        asyncio.run(run(settings, results, console, fingerprint))
    except CodeChangedError as exc:
        console.print(f"[red]{exc}; nothing written[/]")
        raise SystemExit(2) from exc
    results.environment.finish()
    Console().print(summary_table(results))
    output = (
        args.output
        if args.output is not None
        else (None if args.quick else RESULTS_PATH)
    )
    if output is None:
        return
    if not results.runs:
        console.print("[red]no measurement finished; nothing written[/]")
        return
    output.write_text(render(results, notes=existing_notes(output)), encoding="utf-8")
    console.print(f"wrote {output}")


if __name__ == "__main__":
    main()
