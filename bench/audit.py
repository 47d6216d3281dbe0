"""Audit on a large log: `verify_log` and the store-wide as-of against plain reads.

One throwaway database holds bench/audit_log.py's log; each round runs, in an
order shifting by one per round: ``sequential_read`` (raw asyncpg, every row in
global order with the store's `read_all` statement: the baseline),
``verify_log`` (what `eventstore verify --log-only` runs), ``as_of_mid`` /
``as_of_end`` (`statuses_as_of` at the middle and end of the recorded_at range)
and ``replay_read_mid`` / ``replay_read_end`` (raw asyncpg reading the rows a
replay up to that moment needs).

.venv/bin/python -m bench.audit --events 1000000 --rounds 3   # writes bench/AUDIT_RESULTS.md
.venv/bin/python -m bench.audit --events 20000 --rounds 1     # a quick check of the data
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console

from bench import harness
from bench.audit_log import (
    COPY_CHUNK,
    OUTCOMES,
    START,
    WINDOW,
    LogFacts,
    load_log,
    middle,
)
from bench.harness import Environment, Run, Runs, Server, connected, mib, num
from eventstore import EventStore
from eventstore.audit.integrity import BATCH
from eventstore.audit.replay import AsOf, statuses_as_of
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
SUBJECTS: Final = (
    "sequential_read",
    "verify_log",
    "as_of_mid",
    "replay_read_mid",
    "as_of_end",
    "replay_read_end",
)
BASELINE: Final = "sequential_read"
LABELS: Final = {
    "sequential_read": "raw asyncpg, every row in global order (baseline)",
    "verify_log": "`store.audit.verify_log()` (`verify --log-only`)",
    "as_of_mid": "`statuses_as_of(AsOf(time=middle))`",
    "replay_read_mid": "raw asyncpg, rows recorded <= middle",
    "as_of_end": "`statuses_as_of(AsOf(time=end))`",
    "replay_read_end": "raw asyncpg, rows recorded <= end",
}
# subject -> the plain read it is compared with
COMPARED_WITH: Final = {
    "verify_log": "sequential_read",
    "as_of_mid": "replay_read_mid",
    "as_of_end": "replay_read_end",
    "replay_read_mid": "sequential_read",
    "replay_read_end": "sequential_read",
}
INDEX_NAME: Final = "ix_execution_events_status_history"
REPEATED_CALLS: Final = 8
MAX_LOAD: Final = 0.3  # cores kept busy by other work, before a round
LOAD_WAIT_MAX: Final = 900.0


@dataclass(frozen=True, slots=True)
class Expected:
    """What each subject must find, known before the rounds: per moment ("mid",
    "end") its time, the rows recorded by then and the executions per status."""

    events: int
    executions: int
    moments: dict[str, datetime]
    rows_until: dict[str, int]
    statuses: dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Plan:
    """EXPLAIN (ANALYZE, BUFFERS) of the as-of statement."""

    label: str
    lines: list[str]

    @property
    def uses_index(self) -> bool:
        return any(INDEX_NAME in line for line in self.lines)

    @property
    def summary(self) -> str:
        """The scan nodes, and the execution time."""
        scans = [
            line.strip().removeprefix("->").strip()
            for line in self.lines
            if "Scan" in line
        ]
        total = next(
            (line.strip() for line in self.lines if line.startswith("Execution Time")),
            "",
        )
        return "; ".join([*scans, total])


@dataclass(frozen=True, slots=True)
class Settings:
    """What one run does (see --help)."""

    events: int = 1_000_000
    rounds: int = 3
    max_load: float = MAX_LOAD
    seed: int = 11


@dataclass(slots=True)
class Results:
    """Everything the report shows; `round_loads`: (round, 1-min load at its
    start, seconds waited for it)."""

    settings: Settings
    command: str
    environment: Environment
    startup_peak_rss: int
    log: LogFacts | None = None
    expected: Expected | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    vacuum_seconds: float = 0.0
    round_loads: list[tuple[int, float, float]] = field(default_factory=list)
    runs: Runs = field(default_factory=Runs)
    plans: list[Plan] = field(default_factory=list)
    repeated: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --- the subjects -----------------------------------------------------------------


async def read_rows(connection: asyncpg.Connection, until: datetime | None) -> int:
    """Every row (all columns) in global order, BATCH at a time, dropped; with
    `until`, stop at the first batch whose last row was recorded after it and
    count the rows recorded at or before it (recorded_at grows with the global
    order in this log)."""
    after, rows = (0, 0, 0), 0
    while batch := await connection.fetch(READ_ALL_SQL, *after, BATCH):
        last = batch[-1]
        if until is not None and last["recorded_at"] > until:
            return rows + sum(1 for row in batch if row["recorded_at"] <= until)
        rows += len(batch)
        after = (last["epoch"], last["transaction_id"], last["position"])
    return rows


async def measure(
    subject: str, dsn: str, expected: Expected, number: int, sequence: int
) -> Run:
    """Run one subject on a connection or store opened before the clock starts."""
    database, moment = harness.CURRENT_DATABASE.get(), subject.rsplit("_", 1)[-1]
    problem: str | None = None
    if subject in ("sequential_read", "replay_read_mid", "replay_read_end"):
        until = expected.moments.get(moment) if subject != BASELINE else None
        async with connected(dsn) as connection:
            read = functools.partial(read_rows, connection, until)
            rows, timing = await harness.timed(read, database, rss=True)
        want = expected.events if until is None else expected.rows_until[moment]
        if rows != want:
            problem = f"read {rows} rows, expected {want}"
    else:
        async with EventStore.open(dsn, settings=StoreSettings(pool_size=2)) as store:
            await store.backend.ensure_schema()  # once per process: not timed
            if subject == "verify_log":
                report, timing = await harness.timed(
                    store.audit.verify_log, database, rss=True, sample_server=True
                )
                rows = report.events
                if not report.ok:
                    problem = f"verify_log found {len(report.problems)} broken streams: {report.problems[0]}"
                elif (report.events, report.streams) != (
                    expected.events,
                    expected.executions,
                ):
                    problem = (
                        f"verify_log read {report.events} events in {report.streams} streams, "
                        f"expected {expected.events} in {expected.executions}"
                    )
            else:
                as_of = AsOf(time=expected.moments[moment])
                as_of_ = functools.partial(statuses_as_of, store.backend, as_of)
                statuses, timing = await harness.timed(as_of_, database, rss=True)
                rows = len(statuses)
                counts = dict(sorted(Counter(s.status.value for s in statuses).items()))
                if counts != expected.statuses[moment]:
                    problem = f"statuses {counts}, expected {expected.statuses[moment]}"
    return Run(subject, number, sequence, rows, timing, problem=problem)


async def wait_for_low_load(console: Console, limit: float) -> tuple[float, float]:
    """Wait (15 min at most) until other work keeps under `limit` cores busy for 2 s
    (the load average would still count our own last subject); returns the
    1-minute load average then, and the seconds waited."""
    waited = await asyncio.to_thread(
        harness.wait_until_quiet, limit=limit, max_wait=LOAD_WAIT_MAX
    )
    if waited >= LOAD_WAIT_MAX:
        console.print(
            f"[yellow]still busier than {limit} cores after {waited:.0f} s[/]"
        )
    return os.getloadavg()[0], waited


# --- the database -----------------------------------------------------------------


async def _fetch_expected(dsn: str, log: LogFacts) -> Expected:
    async with connected(dsn) as connection:
        bounds = await connection.fetchrow(
            "SELECT min(recorded_at), max(recorded_at), count(*) FROM execution_events"
        )
        first, last, events = bounds if bounds else (START, START, 0)
        if (first, last, events) != (
            log.first_recorded_at,
            log.last_recorded_at,
            log.events,
        ):
            raise RuntimeError(
                f"the table holds {events} events recorded {first} .. {last}; the generator wrote "
                f"{log.events}, {log.first_recorded_at} .. {log.last_recorded_at}"
            )
        moments = {"mid": middle(first, last), "end": last}
        rows_until = {
            name: int(
                await connection.fetchval(
                    "SELECT count(*) FROM execution_events WHERE recorded_at <= $1",
                    moment,
                )
            )
            for name, moment in moments.items()
        }
        ordered = await connection.fetchval(
            "SELECT bool_and(ordered) FROM (SELECT recorded_at >= lag(recorded_at) "
            "OVER (ORDER BY transaction_id, position) AS ordered FROM execution_events) AS pairs"
        )
    if not ordered:
        raise RuntimeError("recorded_at does not grow with the global order")
    statuses = {"mid": log.statuses_mid, "end": log.statuses_end}
    return Expected(log.events, log.executions, moments, rows_until, statuses)


async def _sizes(dsn: str) -> dict[str, int]:
    async with connected(dsn) as connection:
        rows = await connection.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "WHERE c.oid = 'execution_events'::regclass OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = 'execution_events'::regclass) "
            "ORDER BY c.relkind DESC, c.relname"
        )
        toast = await connection.fetchval(
            "SELECT coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class "
            "WHERE oid = 'execution_events'::regclass"
        )
    return {str(name): int(size) for name, size in rows} | {"(toast)": int(toast)}


async def explain(dsn: str, moments: dict[str, datetime]) -> list[Plan]:
    """The as-of statement's plans: as the store runs it (a custom plan for its
    parameters), the generic plan a prepared statement may switch to, and,
    for comparison, the plan with sequential scans disabled."""
    plans = []
    explained = "EXPLAIN (ANALYZE, BUFFERS) " + STATUS_EVENTS_SQL
    async with connected(dsn) as connection:

        async def plan(label: str, *query: Any) -> None:
            plans.append(
                Plan(label, [row[0] for row in await connection.fetch(*query)])
            )

        for name, moment in moments.items():
            await plan(f"{name}: as the store runs it", explained, MAX_POSITION, moment)
        await connection.execute(
            f"PREPARE as_of(bigint, timestamptz) AS {STATUS_EVENTS_SQL}"
        )
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        # EXECUTE takes no parameters: literals
        generic = f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE as_of({MAX_POSITION}, '{moments['mid'].isoformat()}')"
        await plan("mid: generic plan", generic)
        await connection.execute("RESET plan_cache_mode")
        await connection.execute("SET enable_seqscan = off")
        for name, moment in moments.items():
            await plan(
                f"{name}: diagnostic, enable_seqscan = off",
                explained,
                MAX_POSITION,
                moment,
            )
    return plans


async def repeated_as_of(dsn: str, moment: datetime) -> list[float]:
    """Seconds of each of REPEATED_CALLS as-of calls on one store with one
    connection: asyncpg keeps the prepared statement, and after five custom
    plans PostgreSQL may settle on a generic plan (as a long-lived process would)."""
    found = []
    async with EventStore.open(dsn, settings=StoreSettings(pool_size=1)) as store:
        await store.backend.ensure_schema()
        for _ in range(REPEATED_CALLS):
            started = time.perf_counter()
            await statuses_as_of(store.backend, AsOf(time=moment))
            found.append(time.perf_counter() - started)
    return found


# --- the run ----------------------------------------------------------------------


def _row(m: Run) -> str:
    t = m.timing
    return (
        f"{m.round} | {m.sequence} | {m.subject} | {m.count:,} | {m.seconds:.2f} | {m.rate:,.0f} | "
        f"{t.client:.2f} | {t.server:.2f} | {num(t.other_cores, 2)} | {mib(t.rss_before)} | "
        f"{mib(t.peak_rss)} | {m.problem or 'ok'}"
    )


async def run(results: Results, server: Server, console: Console) -> None:
    """Create, load and check the log, measure the rounds, explain, drop."""
    async with harness.throwaway_database(server) as dsn:
        console.print(f"database {harness.CURRENT_DATABASE.get()}; migrating")
        await harness.migrate(dsn)
        console.print(
            f"generating and loading {results.settings.events:,} events (child process)"
        )
        started = time.perf_counter()
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as executor:
            loading = executor.submit(
                load_log, dsn, results.settings.events, results.settings.seed
            )
            log = results.log = await asyncio.wrap_future(loading)
        results.load_seconds = time.perf_counter() - started
        console.print(
            f"loaded {log.events:,} events of {log.executions:,} executions in "
            f"{results.load_seconds:.1f} s ({log.sampled:,} checked against NewEvent)"
        )
        started = time.perf_counter()
        await harness.execute(dsn, "VACUUM (ANALYZE) execution_events", "CHECKPOINT")
        results.vacuum_seconds = time.perf_counter() - started
        expected = results.expected = await _fetch_expected(dsn, log)
        results.sizes = await _sizes(dsn)

        console.print("warm-up (untimed): every subject but verify_log once")
        for subject in SUBJECTS:
            if subject != "verify_log":
                warm = await measure(subject, dsn, expected, 0, 0)
                console.print(f"[dim]{_row(warm)}[/]")
                if warm.problem:
                    results.failures.append(f"warm-up {subject}: {warm.problem}")

        for number in range(1, results.settings.rounds + 1):
            load, waited = await wait_for_low_load(console, results.settings.max_load)
            results.round_loads.append((number, load, waited))
            console.rule(
                f"round {number}/{results.settings.rounds} (1-min load {load:.2f}, waited {waited:.0f} s)"
            )
            for sequence, subject in enumerate(harness.rotated(SUBJECTS, number), 1):
                measured = await measure(subject, dsn, expected, number, sequence)
                results.runs.append(measured)
                console.print(_row(measured))
                if measured.problem:
                    results.failures.append(
                        f"round {number} {subject}: {measured.problem}"
                    )
        console.print(
            f"diagnostic: {REPEATED_CALLS} as-of calls (middle) on one store connection"
        )
        await wait_for_low_load(console, results.settings.max_load)
        results.repeated = await repeated_as_of(dsn, expected.moments["mid"])
        console.print(", ".join(f"{s:.2f} s" for s in results.repeated))
        console.print("EXPLAIN (ANALYZE, BUFFERS) of the as-of statement")
        results.plans = await explain(dsn, expected.moments)
        for plan in results.plans:
            console.print(
                f"{plan.label}: index {'used' if plan.uses_index else 'NOT used'}: {plan.summary}"
            )


# --- the report -------------------------------------------------------------------

REPORT: Final = """\
# Audit on a {{ events|num }}-event log: `verify_log` and the store-wide as-of

Generated by `{{ command }}` (bench/audit.py); the figures are measured, none are edited.

{{ machine }}
{% if log and e %}
## The log

- {{ log.events|num }} events of {{ log.executions|num }} executions, written by a child process in {{ load_seconds|num }} s (rows built with `eventstore.hashing.canonical_json` / `canonical_event` / `chain_hash`, {{ log.sampled|num }} of them checked against `NewEvent`; COPY in chunks of {{ chunk|num }}, one transaction each, in position order), then `VACUUM (ANALYZE) execution_events` + `CHECKPOINT` ({{ vacuum_seconds|num }} s).
- {{ window }} executions in flight at a time, interleaved: a random one of them writes the next event. Outcomes: {% for name, share in outcomes %}{{ name }} {{ "{:.0%}".format(share) }}{{ ", " if not loop.last }}{% endfor %} (pending/running ones, and the executions still in flight at the end, stay unfinished); 4-10 progress events with usage metrics per finished run; failed retryable runs are retried (`attempt`, `retry_of`).
- Event types: {% for name, count in log.types.items() %}{{ name }} {{ count|num }}{{ ", " if not loop.last }}{% endfor %}

- recorded_at from {{ log.first_recorded_at.isoformat() }} to {{ log.last_recorded_at.isoformat() }}, growing with the position (checked); occurred_at 0.2-50 ms before it.
- As-of moments: middle {{ e.moments.mid.isoformat() }} ({{ e.rows_until.mid|num }} events recorded by then), end {{ e.moments.end.isoformat() }} ({{ e.rows_until.end|num }}).
- Statuses at the middle: {{ e.statuses.mid }}; at the end: {{ e.statuses.end }} (from the generator; every as-of run is checked against them, every verify run against the event and stream counts).
- Sizes: {% for name, size in sizes.items() %}{{ name }} {{ size|mib }}{{ ", " if not loop.last }}{% endfor %}


{% endif %}
## Method

- {{ rounds }} rounds; each runs all six subjects, in an order that shifts by one every round. Before a round, the machine must have been quiet for 2 s in a row (under {{ max_load }} cores busy, from /proc/stat; waited for 15 min at most); the 1-minute load average then and the wait are recorded below. An untimed warm-up ran every subject but `verify_log` once.
- Plain reads: raw asyncpg on a connection opened before the clock, the store's own `read_all` statement (every column, `ORDER BY epoch, transaction_id, position LIMIT {{ batch }}`, keyset on the triple), rows dropped. The replay reads stop at the first batch whose last row is past the moment (recorded_at grows with the global order here) and count the rows at or before it.
- Store subjects: `EventStore.open(url)` and the store's one-time schema check (`backend.ensure_schema()`) before the clock, a fresh store each time (as the CLI does), so the statements are planned for their parameters.
- `verify_log` splits the streams over one process per core ({{ cores }} here) once the log holds {{ parallel_from|num }} events: this process verifies one partition, the others start, verify theirs and exit within the timed section.
- Peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` after the subject, the high-water mark reset to the current RSS just before it (`echo 5 > /proc/self/clear_refs`): this process only, not verify's other processes; the log was generated in a child process, so its memory is not in these figures. Process peak before any measurement (imports, store): {{ startup_rss|mib }}.
- CPU: client = this process and its child processes (verify's), server = the PostgreSQL processes of the database (sampled every 50 ms while verify runs, since its other processes' backends exit with them), other = the rest of the machine's busy time (cores).

## Medians of {{ rounds }} rounds

| subject | rows | median s | median rows/s | compared with | time ratio (medians) | per-round time ratios | median client CPU s | median server CPU s | CPU ratio (client+server, medians) | max peak RSS |
|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|
{% for s in subjects %}
{% set mine, other = R.of(s), compared.get(s) %}
{% if mine %}
| {{ labels[s] }} | {{ mine[0].count|num }} | {{ R.median(s, "seconds")|num(2) }} | {{ R.median(s)|num }} | {{ other or "-" }} | {{ R.ratio(s, other, "seconds")|num(2) }} | {{ R.per_round(s, other, "seconds")|ratios if other else "-" }} | {{ R.median(s, "timing.client")|num(2) }} | {{ R.median(s, "timing.server")|num(2) }} | {{ R.ratio(s, other, "cpu")|num(2) }} | {{ mine|map(attribute="timing.peak_rss")|max|mib }} |
{% else %}
| {{ labels[s] }} | failed | | | | | | | | | |
{% endif %}
{% endfor %}

In short:

{% set ratio, verify = R.ratio("verify_log", "sequential_read"), R.of("verify_log") %}
- `verify_log`: {{ R.median("verify_log")|num }} events/s, {{ ratio|num(3) }} of the plain sequential read's {{ R.median("sequential_read")|num }} events/s{{ " (%.1fx slower)"|format(1 / ratio) if ratio }}; in CPU (client + server) it costs {{ R.ratio("verify_log", "sequential_read", "cpu")|num(1) }}x the read; peak RSS during verify {{ verify|map(attribute="timing.peak_rss")|map("mib")|join(", ") }} (RSS when it started: {{ verify|map(attribute="timing.rss_before")|map("mib")|join(", ") }}).
{% for moment, name in (("mid", "middle"), ("end", "end")) %}
{% set ratio = R.ratio("as_of_" + moment, "replay_read_" + moment, "seconds") %}
- as-of at the {{ name }}: {{ R.median("as_of_" + moment, "seconds")|num(2) }} s against {{ R.median("replay_read_" + moment, "seconds")|num(2) }} s for reading the {{ (e.rows_until[moment] if e else 0)|num }} rows a replay needs: ratio {{ ratio|num(2) }}{{ " (%.1fx faster)"|format(1 / ratio) if ratio and ratio < 1 }}{{ " (%.1fx slower)"|format(ratio) if ratio and ratio >= 1 }}; CPU ratio {{ R.ratio("as_of_" + moment, "replay_read_" + moment, "cpu")|num(2) }}.
{% endfor %}

## Rounds

| round | 1-min load when quiet | waited s |
|---:|---:|---:|
{% for r, load, waited in round_loads %}
| {{ r }} | {{ "%.2f"|format(load) }} | {{ waited|num }}{{ " (gave up: never quiet)" if waited >= wait_max }} |
{% endfor %}

| round | # | subject | rows | s | rows/s | client CPU s | server CPU s | other cores | RSS before | peak RSS | check |
|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
{% for m in R|sort(attribute="round,sequence") %}
| {{ row(m) }} |
{% endfor %}

## Repeated as-of calls on one connection (diagnostic)

After the rounds, one store with `pool_size=1` ran `statuses_as_of` at the middle {{ calls }} times in a row (asyncpg keeps the prepared statement; from the sixth execution on PostgreSQL may use a generic plan, see the plans below): {% for seconds in repeated %}{{ "%.2f"|format(seconds) }} s{{ ", " if not loop.last }}{% endfor %}.

## Plans of the as-of statement

`EXPLAIN (ANALYZE, BUFFERS)` of `STATUS_EVENTS_SQL` (eventstore/backends/postgres.py) after the rounds, on a fresh connection, with the moments above and position <= {{ max_position }} (no position bound):

{% for plan in plans %}
- **{{ plan.label }}**: `{{ index }}` {{ "used" if plan.uses_index else "**not used**" }}: {{ plan.summary }}
{% endfor %}
{% for plan in plans %}

{{ plan.label }}:

```
{{ plan.lines|join("\n") }}
```
{% endfor %}
{% if failures %}

## Failures

{% for failure in failures %}
- {{ failure }}
{% endfor %}
{% endif %}
"""


def render(results: Results) -> str:
    """bench/AUDIT_RESULTS.md."""
    shares = (
        "the client and PostgreSQL share these cores, and the machine is shared with other work (test runs): "
        "see the load averages and the `other cores` column"
    )
    return harness.report(
        REPORT,
        machine=results.environment.lines("Machine and code", shares),
        e=results.expected,
        R=results.runs,
        row=_row,
        subjects=SUBJECTS,
        labels=LABELS,
        compared=COMPARED_WITH,
        chunk=COPY_CHUNK,
        window=WINDOW,
        outcomes=OUTCOMES,
        batch=BATCH,
        cores=os.cpu_count(),
        parallel_from=PARALLEL_FROM,
        startup_rss=results.startup_peak_rss,
        wait_max=LOAD_WAIT_MAX,
        calls=REPEATED_CALLS,
        max_position=MAX_POSITION,
        index=INDEX_NAME,
        **{f.name: getattr(results, f.name) for f in dataclasses.fields(results)},
        **dataclasses.asdict(results.settings),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = harness.options(
        "python -m bench.audit",
        "verify_log and the store-wide as-of on a large generated log, against plain asyncpg reads of the same "
        "rows; medians to bench/AUDIT_RESULTS.md.",
        Settings(),
        "where to write the report (bench/AUDIT_RESULTS.md)",
        events="events in the log (1000000)",
        rounds="rounds (3)",
        max_load="wait before a round until other work keeps fewer cores busy (0.3)",
        seed="of the generator (11)",
    )
    args = parser.parse_args(arguments)
    settings: Settings = harness.configured(Settings(), args)
    if settings.events < 1 or settings.rounds < 1:
        parser.error("--events and --rounds must be positive")
    output, server, console = (
        args.output or RESULTS_PATH,
        Server(args.dsn),
        Console(stderr=True),
    )
    command = " ".join(["python -m bench.audit", *arguments])
    results = Results(settings, command, Environment(server), harness.peak_rss())
    try:
        asyncio.run(run(results, server, console))
    except Exception as exc:
        results.failures.append(f"{type(exc).__name__}: {exc}")
        console.print(f"[red]{type(exc).__name__}: {exc}[/]")
    results.environment.finish()
    output.write_text(render(results), encoding="utf-8")
    console.print(f"wrote {output}")
    for failure in results.failures:
        console.print(f"[red]{failure}[/]")
    if results.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
