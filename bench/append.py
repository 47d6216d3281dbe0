"""The runner: interleave the subjects, take medians, write bench/RESULTS.md.

.venv/bin/python -m bench.append --runs 3          # the full run (~6 minutes)
.venv/bin/python -m bench.append --quick           # a smoke run (seconds), writes nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.table import Table

from bench import cpu, machine, profiling
from bench.databases import DEFAULT_ADMIN_DSN, Server
from bench.plan import BY_KEY, DEFAULT_SUBJECTS, Config
from bench.report import Failure, Results, existing_notes, render
from bench.timing import Measurement

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench.plan import Subject

RESULTS_PATH: Final = Path(__file__).parent / "RESULTS.md"
WARMUP_SCALE: Final = 0.1
QUICK_CONFIG: Final = Config(
    server=Server(),
    runs=1,
    writers=(2,),
    events=32,
    sqlite_events=16,
    history=100,
    retries=0,
    quiet_wait=5.0,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.append",
        description="Append throughput: eventstore (store.append, lifecycle) against raw "
        "asyncpg, eventsourcing and raw aiosqlite, interleaved rounds, medians to RESULTS.md.",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="interleaved rounds (default 3; --quick: 1)",
    )
    parser.add_argument(
        "--writers",
        type=int,
        nargs="+",
        default=None,
        help="writer counts (default 8 32)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        help="events per PostgreSQL measurement, all writers (default 12000)",
    )
    parser.add_argument(
        "--sqlite-events",
        type=int,
        default=None,
        help="events per SQLite measurement (default 3000)",
    )
    parser.add_argument(
        "--events-per-writer",
        type=int,
        default=None,
        help="fixed events per writer (overrides --events and --sqlite-events)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=None,
        help="events of history bulk-loaded into each PostgreSQL log before a "
        "measurement, then ANALYZE (default 20000; 0: start empty; --quick: 100)",
    )
    parser.add_argument(
        "--subjects",
        nargs="+",
        choices=list(BY_KEY),
        default=list(DEFAULT_SUBJECTS),
        help="what to measure (default: all but the *_empty_log diagnostics)",
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
        help="where to write the report (default bench/RESULTS.md; --quick: nowhere)",
    )
    parser.add_argument(
        "--max-other-cores",
        type=float,
        default=None,
        help="a measurement during which other programs kept more than this many "
        "cores busy is disturbed and run again (default 0.25)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=None,
        help="how often a disturbed measurement is run again, after waiting for a "
        "quiet machine (default 2)",
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed warm-up round"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile section"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of every subject: 1 round, 2 writers, a few events",
    )
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> Config:
    """Settings from the command line (--quick changes the defaults only)."""
    base = QUICK_CONFIG if args.quick else Config(server=Server(args.dsn))
    runs = args.runs if args.runs is not None else base.runs
    writers = tuple(args.writers) if args.writers else base.writers
    events = args.events if args.events is not None else base.events
    sqlite_events = (
        args.sqlite_events if args.sqlite_events is not None else base.sqlite_events
    )
    history = args.history if args.history is not None else base.history
    if min(runs, *writers, events, sqlite_events, args.events_per_writer or 1) < 1:
        raise SystemExit("--runs, --writers and the event counts must be positive")
    return Config(
        server=Server(args.dsn),
        runs=runs,
        writers=writers,
        events=events,
        sqlite_events=sqlite_events,
        events_per_writer=args.events_per_writer,
        history=max(history, 0),
        max_other_cores=args.max_other_cores
        if args.max_other_cores is not None
        else base.max_other_cores,
        retries=max(args.retries if args.retries is not None else base.retries, 0),
        quiet_wait=base.quiet_wait,
        subjects=tuple(args.subjects),
        warmup=not (args.no_warmup or args.quick),
        profile=not args.no_profile,
    )


def measure(
    config: Config,
    subject: Subject,
    writers: int,
    *,
    round_: int,
    sequence: int,
    scale: float = 1.0,
    attempt: int = 1,
) -> Measurement:
    """Run one measurement; it is disturbed if others used too much CPU meanwhile."""
    workload = config.workload(subject, writers, scale=scale)
    sample = subject.run(config.server, workload)
    measured = Measurement(
        subject=subject.key,
        writers=writers,
        round=round_,
        sequence=sequence,
        events=sample.events,
        seconds=sample.timing.seconds,
        cpu_seconds=sample.timing.cpu_seconds,
        machine_cpu_seconds=sample.timing.machine_cpu_seconds,
        server_cpu_seconds=sample.timing.server_cpu_seconds,
        data_bytes=sample.data_bytes,
        attempt=attempt,
    )
    other = measured.other_cores
    if other is not None and other > config.max_other_cores:
        return dataclasses.replace(measured, disturbed=True)
    return measured


def _line(measurement: Measurement) -> str:
    other = measurement.other_cores
    return (
        f"{measurement.subject:<23} W={measurement.writers:<2} "
        f"{measurement.seconds:5.2f} s {measurement.events_per_second:6,.0f} ev/s "
        f"µs/ev client {measurement.cpu_us_per_event:4.0f} "
        f"server {measurement.server_us_per_event:4.0f} "
        f"other {'-' if other is None else f'{other:.2f}'} cores"
        + (" [DISTURBED]" if measurement.disturbed else "")
    )


def _measure_until_undisturbed(
    config: Config,
    console: Console,
    results: Results,
    planned: tuple[int, int, Subject, int],
    label: str,
) -> None:
    number, sequence, subject, writers = planned
    for attempt in range(1, config.retries + 2):
        try:
            measured = measure(
                config,
                subject,
                writers,
                round_=number,
                sequence=sequence,
                attempt=attempt,
            )
        except Exception as exc:  # recorded in the report
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            results.failures.append(Failure(subject.key, writers, number, error))
            console.print(
                f"[red]{label} {subject.key} W={writers} failed: {error}[/red]"
            )
            return
        console.print(f"{label} {_line(measured)}")
        if not measured.disturbed or attempt > config.retries:
            results.measurements.append(measured)
            return
        results.disturbed.append(measured)
        waited = cpu.wait_until_quiet(
            limit=config.max_other_cores, max_wait=config.quiet_wait
        )
        console.print(
            f"[yellow]{label} disturbed: waited {waited:.0f} s, again[/yellow]"
        )


def run(config: Config, console: Console) -> Results:
    """Warm up, run the interleaved rounds, profile; failures are recorded, not raised."""
    uses_postgres = any(BY_KEY[key].backend == "postgresql" for key in config.subjects)
    results = Results(
        config=config,
        environment=machine.collect(config.server, with_postgres=uses_postgres),
    )
    waited = cpu.wait_until_quiet(
        limit=config.max_other_cores, max_wait=config.quiet_wait
    )
    console.print(f"waited {waited:.0f} s for a quiet machine")
    if config.warmup:
        console.rule("warm-up (untimed)")
        for number, sequence, subject, writers in config.schedule(rounds=1):
            try:
                warm = measure(
                    config,
                    subject,
                    writers,
                    round_=number,
                    sequence=sequence,
                    scale=WARMUP_SCALE,
                )
                console.print(f"[dim]warm-up {_line(warm)}[/dim]")
            except Exception as exc:  # reported, the run goes on
                console.print(
                    f"[red]warm-up {subject.key} W={writers} failed: {exc!r}[/red]"
                )
    planned = config.schedule()
    for index, pair in enumerate(planned, 1):
        if pair[1] == 1:
            console.rule(f"round {pair[0]}/{config.runs}")
        _measure_until_undisturbed(
            config, console, results, pair, f"[{index:>2}/{len(planned)}]"
        )
    if config.profile and "store_append" in config.subjects:
        writers = max(config.writers)
        console.rule(f"profile: raw asyncpg and store.append at {writers} writers")
        cpu.wait_until_quiet(limit=config.max_other_cores, max_wait=config.quiet_wait)
        try:
            results.profile = profiling.profile_append(
                config.server, config.workload(BY_KEY["store_append"], writers)
            )
            results.profile_writers = writers
        except Exception as exc:  # recorded in the report
            results.failures.append(
                Failure(
                    "profile",
                    writers,
                    0,
                    f"{type(exc).__name__}: {exc}".splitlines()[0],
                )
            )
    results.environment.finish()
    return results


def summary_table(results: Results) -> Table:
    """The medians, for the terminal."""
    table = Table(title="median events/s")
    for header in ("subject", "writers", "median events/s", "vs baseline", "rounds"):
        table.add_column(header, justify="left" if header == "subject" else "right")
    for writers in results.config.writers:
        for key in results.config.subjects:
            median = results.median(key, writers)
            ratio = results.ratio(BY_KEY[key], writers)
            table.add_row(
                key,
                str(writers),
                "failed" if median is None else f"{median:,.0f}",
                "-" if ratio is None else f"{ratio:.2f}x {BY_KEY[key].baseline}",
                str(len(results.runs(key, writers))),
            )
    return table


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.append`` and ``python -m bench``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    config = config_from(args)
    console = Console()
    results = run(config, console)
    console.print(summary_table(results))
    output: Path | None = (
        args.output
        if args.output is not None
        else (None if args.quick else RESULTS_PATH)
    )
    if output is not None:
        command = " ".join(["python -m bench.append", *arguments])
        output.write_text(
            render(results, command=command, notes=existing_notes(output)),
            encoding="utf-8",
        )
        console.print(f"wrote {output}")
    for failure in results.failures:
        console.print(
            f"[red]failed: round {failure.round} {failure.subject} W={failure.writers}: {failure.error}[/red]"
        )
    if results.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
