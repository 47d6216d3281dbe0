"""Audit on a large log: `verify_log` and the store-wide as-of against plain reads.

Interleaved rounds on bench/audit_log.py's log time `verify_log` (what
`eventstore verify --log-only` runs) against raw asyncpg reading every row in
global order, and `statuses_as_of` at the middle and end of the log against
raw asyncpg reading the rows a replay up to that moment needs (bench/README.md).
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console

from bench import harness, queries
from bench.audit_log import LogFacts, load_log, middle
from bench.harness import Run, Server, connected
from eventstore import EventStore
from eventstore.audit.integrity import BATCH
from eventstore.audit.replay import AsOf
from eventstore.audit.verify_processes import PARALLEL_FROM
from eventstore.backends.postgres_audit import STATUS_EVENTS_SQL
from eventstore.backends.postgres_log import READ_ALL_SQL
from eventstore.backends.postgres_order import MAX_POSITION
from eventstore.settings import StoreSettings

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    import asyncpg

RESULTS_PATH: Final = Path(__file__).parent / "AUDIT_RESULTS.md"
# each subject, and the plain read it is compared with
COMPARED_WITH: Final = {
    "sequential_read": None,  # the baseline
    "verify_log": "sequential_read",
    "as_of_mid": "replay_read_mid",
    "replay_read_mid": "sequential_read",
    "as_of_end": "replay_read_end",
    "replay_read_end": "sequential_read",
}
REPORTED: Final = {"compared": COMPARED_WITH, "parallel_from": PARALLEL_FROM}


@dataclass(frozen=True, slots=True)
class Settings:
    events: int = 1_000_000
    rounds: int = 3
    max_other_cores: float = 0.3
    seed: int = 11


@dataclass(slots=True)
class Results:
    """What the report shows, filled as the run goes (a failure keeps the rest)."""

    log: LogFacts | None = None
    moments: dict[str, datetime] = field(default_factory=dict)
    rows_until: dict[str, int] = field(default_factory=dict)
    rounds: harness.Rounds = field(default_factory=harness.Rounds)
    plans: dict[str, str] = field(default_factory=dict)


async def read_rows(connection: asyncpg.Connection, until: datetime | None) -> int:
    """Every row (all columns) in global order, BATCH at a time, dropped; with
    `until`, stop at the first batch past it and count the rows up to it."""
    after, rows = (0, 0, 0), 0
    while batch := await connection.fetch(READ_ALL_SQL, *after, BATCH):
        last = batch[-1]
        if until is not None and last["recorded_at"] > until:
            return rows + sum(1 for row in batch if row["recorded_at"] <= until)
        rows += len(batch)
        after = (last["epoch"], last["transaction_id"], last["position"])
    return rows


async def measure(dsn: str, found: Results, subject: str, number: int, seq: int) -> Run:
    """One subject, checked, on a connection or store opened before the clock."""
    assert found.log is not None  # noqa: S101 - loaded before any measurement
    log, database = found.log, harness.CURRENT_DATABASE.get()
    moment, detail = subject.rsplit("_", 1)[-1], ""  # mid, end, or neither
    if "read" in subject:
        async with connected(dsn) as connection:
            read = functools.partial(read_rows, connection, found.moments.get(moment))
            count, timing = await harness.timed(read, database, rss=True)
        got = {"rows": count}
        expected = {"rows": found.rows_until.get(moment, log.events)}
    else:
        async with EventStore.open(dsn, settings=StoreSettings(pool_size=2)) as store:
            # the schema check, once per process as in the CLI: not timed
            await store.backend.ensure_schema()
            if subject == "verify_log":
                verify = store.audit.verify_log
                report, timing = await harness.timed(
                    verify, database, rss=True, sample_server=True
                )
                count = report.events
                got = {"ok": report.ok, "events": count, "streams": report.streams}
                expected = {"ok": True, "events": log.events, "streams": log.executions}
                detail = f"; {report.problems[0]}" if report.problems else ""
            else:
                at = AsOf(time=found.moments[moment])
                as_of = functools.partial(store.audit.statuses_as_of, at)
                statuses, timing = await harness.timed(as_of, database, rss=True)
                count = len(statuses)
                got = dict(sorted(Counter(s.status.value for s in statuses).items()))
                expected = log.statuses_mid if moment == "mid" else log.statuses_end
    problem = f"found {got}, expected {expected}{detail}" if got != expected else None
    return Run(subject, number, seq, count, timing, problem=problem)


async def explain(dsn: str, moments: dict[str, datetime]) -> dict[str, str]:
    """The scan nodes and time of the as-of statement's plans: custom, as a fresh
    store runs it, and the generic one a prepared statement may switch to."""
    plans = {}
    async with connected(dsn) as connection:
        await connection.execute(
            f"PREPARE as_of(bigint, timestamptz) AS {STATUS_EVENTS_SQL}"
        )
        for name, mode in (("mid", "custom"), ("end", "custom"), ("mid", "generic")):
            await connection.execute(f"SET plan_cache_mode = force_{mode}_plan")
            # EXECUTE takes no parameters: literals
            moment = f"{MAX_POSITION}, '{moments[name].isoformat()}'"
            explained = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE as_of({moment})"
            lines = [row[0].strip(" ->") for row in await connection.fetch(explained)]
            kept = (
                line for line in lines if "Scan" in line or "Execution Time" in line
            )
            plans[f"{name}: {mode} plan"] = "; ".join(kept)
    return plans


async def run(settings: Settings, server: Server, found: Results) -> None:
    """Load the log, warm up, measure the rounds, explain, drop."""
    async with harness.throwaway_database(server) as dsn:
        # the log, generated in a child process: its memory stays there
        await harness.migrate(dsn)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as executor:
            loading = executor.submit(load_log, dsn, settings.events, settings.seed)
            log = found.log = await asyncio.wrap_future(loading)
        await harness.execute(dsn, "VACUUM (ANALYZE) execution_events", "CHECKPOINT")
        first, last = log.first_recorded_at, log.last_recorded_at
        found.moments = {"mid": middle(first, last), "end": last}
        # The replay reads' expected rows: should recorded_at not grow with the
        # global order, they would stop early, and each run's check would say so.
        until = "SELECT count(*) FROM execution_events WHERE recorded_at <= $1"
        mid = await harness.fetchval(dsn, until, found.moments["mid"])
        found.rows_until = {"mid": mid, "end": log.events}
        measured = functools.partial(measure, dsn, found)
        for subject in COMPARED_WITH:  # an untimed warm-up
            if subject != "verify_log":
                await measured(subject, 0, 0)
        await harness.until_quiet(settings.max_other_cores)
        await harness.interleaved(
            list(COMPARED_WITH),
            measured,
            rounds=settings.rounds,
            max_other_cores=settings.max_other_cores,
            console=Console(stderr=True),
            into=found.rounds,
        )
        found.plans = await explain(dsn, found.moments)


REPORT: Final = """\
# Audit on a {{ s.events|num }}-event log: `verify_log` and the store-wide as-of
{% set R, log, target = r.rounds.runs, r.log, 0.5 %}
{% if log %}

## The log

- {{ log.events|num }} events of {{ log.executions|num }} executions (bench/audit_log.py), generated with `eventstore.hashing`'s canonical form and hash chains ({{ log.sampled|num }} rows checked against `NewEvent`) and COPY-loaded in position order by a child process in {{ log.seconds|num }} s, then `VACUUM (ANALYZE)` and `CHECKPOINT`.
- Event types: {% for name, count in log.types.items() %}{{ name }} {{ count|num }}{{ ", " if not loop.last }}{% endfor %}.
- recorded_at from {{ log.first_recorded_at.isoformat() }} to {{ log.last_recorded_at.isoformat() }}, growing with the global order. As-of moments: the middle, {{ r.moments.mid.isoformat() }} ({{ r.rows_until.mid|num }} events recorded by then), and the end.
- Statuses at the middle {{ log.statuses_mid }}, at the end {{ log.statuses_end }}: from the generator. Every as-of run is checked against them, every verify run against the event and stream counts, every read against the row counts.
{% endif %}

## Method

- {{ s.rounds }} interleaved round{{ "s" if s.rounds > 1 }} of six subjects (the order shifts by one each round) after an untimed warm-up of all but `verify_log`; a run during which other programs kept more than {{ s.max_other_cores }} cores busy was run again, up to twice.
- `sequential_read`, `replay_read_mid`, `replay_read_end`: raw asyncpg on a connection opened before the clock, the store's `read_all` statement (keyset on the global order, in batches), rows dropped; a replay read stops at the first batch past its moment.
- `verify_log`: `store.audit.verify_log()`, as `eventstore verify --log-only` runs it, with a process per core from {{ parallel_from|num }} events on. `as_of_mid`, `as_of_end`: `store.audit.statuses_as_of(AsOf(time=...))`. Each on a fresh store, opened and schema-checked before the clock, as the CLI does.
- CPU: client = this process and its children (verify's), server = the database's PostgreSQL processes (sampled every 50 ms during verify), other = the rest of the machine. Peak RSS: this process's high-water mark, reset before each run (verify's other processes not included).

## Medians

| subject | rows | median s | median rows/s | compared with | time ratio | per-round time ratios | CPU ratio (client+server) | max peak RSS |
|---|---:|---:|---:|---|---:|---|---:|---:|
{% for name, other in compared.items() %}
{% set mine = R.of(name) %}
| `{{ name }}` | {{ mine[0].count|num if mine else "failed" }} | {{ R.median(name, "seconds")|num(2) }} | {{ R.median(name)|num }} | {{ other or "-" }} | {{ R.ratio(name, other, "seconds")|num(2) }} | {{ R.per_round(name, other, "seconds")|ratios if other else "-" }} | {{ R.ratio(name, other, "cpu")|num(2) }} | {{ mine|map(attribute="timing.peak_rss")|max|mib if mine else "-" }} |
{% endfor %}

{% set ratio = R.ratio("verify_log", "sequential_read") %}
Target, `verify_log` at {{ target }}x the plain read's events/s or more: **{{ "met" if ratio and ratio >= target else "not met" }}** ({{ R.median("verify_log")|num }} events/s against {{ R.median("sequential_read")|num }}: {{ ratio|num(2) }}x).

## Runs

{{ per_run }}
## Plans of the as-of statement

`EXPLAIN (ANALYZE, BUFFERS)` of `STATUS_EVENTS_SQL` after the rounds, at the moments above, with no position bound:

{% for label, plan in r.plans.items() %}
{% set index = "ix_execution_events_status_history" %}
- **{{ label }}**: `{{ index }}` {{ "used" if index in plan else "**not used**" }}: {{ plan }}
{% endfor %}
{% for failure in r.rounds.failures %}

**Failed**: {{ failure }}
{% endfor %}"""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    parser = harness.options(
        "python -m bench.audit",
        "verify_log and the store-wide as-of on a large generated log, against plain asyncpg reads.",
        Settings(),
        "where to write the report (bench/AUDIT_RESULTS.md)",
        events="events in the log (1000000)",
        rounds="rounds (3)",
        max_other_cores="run again a run during which other programs kept more cores busy (0.3)",
    )
    args = parser.parse_args(argv)
    settings: Settings = harness.configured(Settings(), args)
    server, found = Server(args.dsn), Results()
    environment = harness.Environment(server)
    try:
        asyncio.run(run(settings, server, found))
    except Exception as exc:  # recorded in the report
        found.rounds.failures.append(f"{type(exc).__name__}: {exc}")
    per_run = harness.per_run_table([*found.rounds.runs, *found.rounds.disturbed])
    text = harness.report(REPORT, s=settings, r=found, per_run=per_run, **REPORTED)
    command = " ".join([parser.prog, *(sys.argv[1:] if argv is None else argv)])
    queries.write_report(args.output or RESULTS_PATH, environment, text, command)
    if found.rounds.failures:
        raise SystemExit("failed: " + "; ".join(found.rounds.failures))


if __name__ == "__main__":
    main()
