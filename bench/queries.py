"""Run queries and statistics at a million runs (README: "Reading the projection", `eventstore stats`), on PostgreSQL.

A throwaway database gets a generated log of `--executions` runs (one INSERT ...
SELECT, the append guard off), projected by the store's projector; each query
runs `--samples` times after `--warmup` calls: p50/p95/p99, plans, index
sizes. `--compare-indexes` projects the same log again without revision
0011's indexes, to show what they cost the projector.

.venv/bin/python -m bench.queries                      # 1,000,000 runs
.venv/bin/python -m bench.queries --executions 20000 --samples 5 --output /tmp/q.md
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from bench import harness
from bench.harness import GUARD, Environment, Server, connected
from eventstore import schema
from projections import ExecutionStats, ExecutionsView, Projector
from projections.queries import count_query, page_query

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from eventstore import EventStore

RESULTS: Final = harness.REPOSITORY / "bench" / "QUERIES_RESULTS.md"
TARGETS_MS: Final = {
    "first page (50) newest, no filter": 5,
    "first page, status=failed + one label, last 24 h": 20,
    "page 100 by cursor, status=failed + one label": 20,
    "count_by_status() over everything": 150,
    "count_by_status(labels={customer})": 50,
    "count_by_status(labels={customer}), the median customer": 50,
    "summary(group_by=[graph], since=1 day)": 500,
    "summary(group_by=[day], since=30 days)": 2000,
}
NEW_INDEXES: Final = (
    "ix_executions_labels",
    "ix_executions_status_created_at_id",
    "ix_executions_graph_id_created_at_id",
)

# The runs: status by one draw, graph and customer skewed (a few are busy),
# created over 30 days; events as the lifecycle writes them.
RUNS_SQL: Final = """
CREATE TABLE bench_runs AS
SELECT n, gen_random_uuid() AS id, r,
       $1::timestamptz - random() * interval '30 days' AS created,
       CASE WHEN r < 0.70 THEN 'completed' WHEN r < 0.82 THEN 'failed'
            WHEN r < 0.90 THEN 'cancelled' WHEN r < 0.95 THEN 'running'
            ELSE 'pending' END AS fate,
       (floor(power(random(), 2) * $2))::int AS graph,
       (floor(power(random(), 3) * 1000))::int AS customer,
       CASE WHEN random() < 0.8 THEN 'prod' ELSE 'staging' END AS env,
       (ARRAY['large', 'small', 'small', 'reasoning'])[1 + floor(random() * 4)::int] AS model,
       1 + floor(random() * 4)::int AS steps,
       random() * 5 AS queue_s
FROM (SELECT n, random() AS r FROM generate_series(1, $3::int) AS n) AS drawn
"""
EVENTS_SQL: Final = """
INSERT INTO execution_events (stream_id, version, stream_type, event_id, type,
    schema_version, data, metadata, occurred_at, hash)
SELECT id, row_number() OVER (PARTITION BY id ORDER BY at, kind), 'execution',
       gen_random_uuid(), type, schema_version, data, '{"actor": "bench"}'::jsonb, at,
       sha256(convert_to(id::text || kind, 'UTF8'))
FROM (
    SELECT r.id, 0 AS kind, 'ExecutionCreated' AS type, 1 AS schema_version,
           jsonb_build_object('message_id', m.id, 'thread_id', m.thread_id,
               'graph_id', g.id, 'inputs', jsonb_build_object('n', r.n),
               'labels', jsonb_build_object('customer', 'c' || r.customer,
                   'env', r.env, 'model', r.model)) AS data,
           r.created AS at
    FROM bench_runs r
    JOIN bench_graphs g ON g.n = r.graph
    JOIN bench_messages m ON m.n = r.n % 1000
    UNION ALL
    SELECT id, 1, 'ExecutionStarted', 1, jsonb_build_object('worker_id', 'w-' || n % 64),
           created + queue_s * interval '1 second'
    FROM bench_runs WHERE fate IN ('completed', 'failed', 'running')
    UNION ALL
    SELECT id, 1 + s, 'ExecutionProgressed', 2,
           jsonb_build_object('step', s, 'metrics', jsonb_build_object(
               'prompt_tokens', 200 + n % 800, 'completion_tokens', 50 + n % 300,
               'cost_usd', round(((n % 97) / 1000.0)::numeric, 4))),
           created + (queue_s + s * 3) * interval '1 second'
    FROM bench_runs, generate_series(1, steps) AS s
    WHERE fate IN ('completed', 'failed', 'running')
    UNION ALL
    SELECT id, 9, CASE fate WHEN 'completed' THEN 'ExecutionCompleted'
                            WHEN 'failed' THEN 'ExecutionFailed'
                            ELSE 'ExecutionCancelled' END, 1,
           CASE fate WHEN 'completed' THEN jsonb_build_object('result', n)
                     WHEN 'failed' THEN jsonb_build_object('error', jsonb_build_object(
                         'type', 'Timeout', 'message', 'the tool timed out',
                         'traceback', NULL, 'retryable', false))
                     ELSE jsonb_build_object('reason', 'user') END,
           created + (queue_s + steps * 3 + 1) * interval '1 second'
    FROM bench_runs WHERE fate IN ('completed', 'failed', 'cancelled')
) AS events
ORDER BY at
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """The settings of one run (see --help)."""

    server: Server
    executions: int = 1_000_000
    graphs: int = 300
    samples: int = 50
    warmup: int = 5
    seed: float = 0.42
    compare_indexes: bool = False
    sqlite: bool = True
    sqlite_samples: int = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Measured:
    name: str
    milliseconds: list[float]
    plan: str
    rows: int

    def percentile(self, fraction: float) -> float:
        return harness.percentile(self.milliseconds, fraction)


async def load_log(store: EventStore, dsn: str, config: Config) -> int:
    """The log, written behind the guard; how many events it holds."""
    threads = [await store.threads.create(title=f"t{n}") for n in range(100)]
    async with connected(dsn) as connection:
        await connection.execute("SELECT setseed($1)", config.seed)
        await connection.execute(
            "CREATE TABLE bench_graphs AS SELECT n, gen_random_uuid() AS id "
            "FROM generate_series(0, $1::int - 1) AS n",
            config.graphs,
        )
        await connection.execute(
            "INSERT INTO graphs (id, name, version, definition) "
            "SELECT id, 'crew-' || (n % 100), (n / 100 + 1)::text, '{}' FROM bench_graphs"
        )
        await connection.execute(
            "CREATE TABLE bench_messages AS SELECT n, gen_random_uuid() AS id, "
            "($1::uuid[])[1 + n % 100] AS thread_id FROM generate_series(0, 999) AS n",
            [t.id for t in threads],
        )
        await connection.execute(
            "INSERT INTO messages (id, thread_id, role, content) "
            "SELECT id, thread_id, 'user', 'q' FROM bench_messages"
        )
        await connection.execute("SELECT setseed($1)", config.seed)
        await connection.execute(
            RUNS_SQL, datetime.now(UTC), config.graphs, config.executions
        )
        await connection.execute(f"ALTER TABLE execution_events DISABLE {GUARD}")
        await connection.execute(EVENTS_SQL)
        await connection.execute(f"ALTER TABLE execution_events ENABLE {GUARD}")
        await connection.execute("VACUUM ANALYZE execution_events")
        count: int = await connection.fetchval("SELECT count(*) FROM execution_events")
    return count


async def _project(store: EventStore, events: int) -> float:
    """Project the whole log; events per second."""
    started = time.perf_counter()
    await Projector(store).run_until_caught_up()
    return events / (time.perf_counter() - started)


async def _timed(
    query: Callable[[], Awaitable[Any]], *, warmup: int, samples: int
) -> tuple[list[float], Any]:
    """Milliseconds of each sample after the warm-up, and the last result."""
    for _ in range(warmup):
        await query()
    times, result = [], None
    for _ in range(samples):
        started = time.perf_counter()
        result = await query()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


async def _plan(dsn: str, store: EventStore, query: sa.Select[Any]) -> str:
    sql = query.compile(
        dialect=store.backend.engine.dialect, compile_kwargs={"literal_binds": True}
    )
    async with connected(dsn) as connection:
        lines = [row[0] for row in await connection.fetch(f"EXPLAIN {sql}")]
    nodes = [re.sub(r"\s+\(cost=.*", "", line).strip(" ->") for line in lines]
    details = ("Filter", "Index Cond", "Recheck", "Sort Key", "Group Key", "Hash Cond")
    return "; ".join(node for node in nodes if node and not node.startswith(details))


def _size(result: Any) -> int:
    """How many runs a page holds, a count covers, or rows a summary has."""
    if isinstance(result, dict):
        return sum(result.values())
    return len(result.items) if hasattr(result, "items") else len(result)


async def busiest_customers(dsn: str) -> tuple[str, str]:
    """The busiest customer, and the median one, by runs."""
    async with connected(dsn) as connection:
        by_runs = await connection.fetch(
            "SELECT labels->>'customer' FROM executions GROUP BY 1 ORDER BY count(*) DESC"
        )
    return by_runs[0][0], by_runs[len(by_runs) // 2][0]


async def _measure(
    store: EventStore,
    customers: tuple[str, str],
    *,
    warmup: int,
    samples: int,
    plans: str | None,
) -> list[Measured]:
    """Each query of TARGETS_MS through the API; with `plans` (a DSN), its plan too."""
    view, stats, context = (
        ExecutionsView(store),
        ExecutionStats(store),
        store.projection_context,
    )
    labels, typical = {"customer": customers[0]}, {"customer": customers[1]}
    failed_today: dict[str, Any] = {
        "status": "failed",
        "labels": labels,
        "since": timedelta(days=1),
    }
    failed: dict[str, Any] = {"status": "failed", "labels": labels}
    cursor = None
    for _ in range(99):  # the cursor of page 100, read once
        cursor = (await view.list(limit=50, cursor=cursor, **failed)).next_cursor
    page = functools.partial(page_query, context, order="newest", limit=50)
    summary = stats.summary
    # Per query of TARGETS_MS, in its order: the call, and the SELECT it sends
    # (for its plan; the summaries send two statements).
    calls: list[tuple[Callable[[], Awaitable[Any]], sa.Select[Any] | None]] = [
        (lambda: view.list(limit=50), page({}, cursor=None)),
        (lambda: view.list(limit=50, **failed_today), page(failed_today, cursor=None)),
        (
            lambda: view.list(limit=50, cursor=cursor, **failed),
            page(failed, cursor=cursor),
        ),
        (view.count_by_status, count_query(context, {})),
        (
            lambda: view.count_by_status(labels=labels),
            count_query(context, {"labels": labels}),
        ),
        (
            lambda: view.count_by_status(labels=typical),
            count_query(context, {"labels": typical}),
        ),
        (lambda: summary(group_by=["graph"], since=timedelta(days=1)), None),
        (lambda: summary(group_by=["day"], since=timedelta(days=30)), None),
    ]
    measured = []
    for name, (query, select) in zip(TARGETS_MS, calls, strict=True):
        times, result = await _timed(query, warmup=warmup, samples=samples)
        plan = "two statements: counts and sums, then percentile_cont"
        if plans is None:
            plan = ""
        elif select is not None:
            plan = await _plan(plans, store, select)
        measured.append(Measured(name, times, plan, _size(result)))
        print(
            f"{store.backend.name} {name}: p50 {statistics.median(times):.1f} ms",
            flush=True,
        )
    return measured


async def _copy_to_sqlite(dsn: str, store: EventStore, path: Path) -> tuple[int, float]:
    """The projected rows (and what they reference) copied into a new SQLite store.

    SQLite answers the same queries over the same runs; the copy skips the
    log, which no query reads.
    """
    started = time.perf_counter()
    copied = 0
    async with (
        harness.migrated_store(f"sqlite:///{path}") as lite,
        store.backend.engine.connect() as source,
    ):
        for table in (
            schema.threads,
            schema.messages,
            schema.graphs,
            schema.executions,
        ):
            rows = await source.stream(
                sa.select(table).execution_options(yield_per=5000)
            )
            async for chunk in rows.mappings().partitions():
                async with lite.backend.begin_write() as target:
                    await target.execute(sa.insert(table), [dict(row) for row in chunk])
                copied += len(chunk) if table is schema.executions else 0
        async with lite.backend.begin_write() as target:
            await target.execute(sa.text("ANALYZE"))
    return copied, time.perf_counter() - started


async def _index_sizes(dsn: str) -> list[tuple[str, int]]:
    async with connected(dsn) as connection:
        rows = await connection.fetch(
            "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
            "WHERE relname = 'executions' ORDER BY 2 DESC"
        )
        table = await connection.fetchval("SELECT pg_relation_size('executions')")
    return [("executions (table)", table), *((row[0], row[1]) for row in rows)]


# Revision 0010's one-column graph index (its status one is back since 0012).
OLD_INDEXES: Final = ("CREATE INDEX ix_executions_graph_id ON executions (graph_id)",)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    events: int
    projected_per_second: float
    measured: list[Measured]
    sizes: list[tuple[str, int]]
    sqlite: list[Measured] = dataclasses.field(default_factory=list)
    sqlite_copy: tuple[int, float] = (0, 0.0)


async def _database(config: Config, *, old_indexes: bool) -> Outcome:
    """Load, project (timed) and, with the new indexes, measure the queries."""
    async with (
        harness.throwaway_database(config.server, "bench_queries_") as dsn,
        harness.migrated_store(dsn, pool_size=4) as store,
    ):
        events = await load_log(store, dsn, config)
        if old_indexes:  # the projection as revision 0010 left it
            await harness.execute(
                dsn, *(f"DROP INDEX {name}" for name in NEW_INDEXES), *OLD_INDEXES
            )
        rate = await _project(store, events)
        await harness.execute(dsn, "VACUUM ANALYZE executions")
        if old_indexes:
            return Outcome(events, rate, [], [])
        customers = await busiest_customers(dsn)
        measured = await _measure(
            store,
            customers,
            warmup=config.warmup,
            samples=config.samples,
            plans=dsn,
        )
        outcome = Outcome(events, rate, measured, await _index_sizes(dsn))
        if not config.sqlite:
            return outcome
        with harness.sqlite_file() as path:
            copy = await _copy_to_sqlite(dsn, store, path)
            async with harness.migrated_store(f"sqlite:///{path}") as lite:
                lite_measured = await _measure(
                    lite, customers, warmup=1, samples=config.sqlite_samples, plans=None
                )
        return dataclasses.replace(outcome, sqlite=lite_measured, sqlite_copy=copy)


TEMPLATE: Final = """\
# Run queries and statistics at {{ "{:,}".format(config.executions) }} runs

Generated by `{{ command }}` (bench/queries.py); the figures below are measured, none are edited.

{{ machine }}
## Method

- One throwaway PostgreSQL database; a log of {{ config.executions | num }} runs
  ({{ outcome.events | num }} events) generated by one INSERT ... SELECT (bench/queries.py:
  70 % completed, 12 % failed, 8 % cancelled, 5 % running, 5 % pending; {{ config.graphs }}
  graphs, skewed; labels customer (1,000 values, skewed), env, model; 30 days of
  creation times), projected by `Projector(store).run_until_caught_up()`, then
  `VACUUM ANALYZE executions`.
- Each query through the public API ({{ config.warmup }} warm-up calls, then
  {{ config.samples }} timed calls, one after another, on this machine's 2 cores with
  the client in the same process): `ExecutionsView.list/count_by_status`,
  `ExecutionStats.summary`. "One label" is the busiest customer; the median
  customer (by runs) is measured too, beside the issue's table. Page 100 is read
  with the cursor of page 99, over all time (failed runs of one customer in the last
  24 h fill fewer than 100 pages).
- Plans: `EXPLAIN` of the SQL the API sends (the nodes, without conditions).

## Queries

| query | target p95 | p50 ms | p95 ms | p99 ms | met | rows | plan |
|---|---|---|---|---|---|---|---|
{% for m in outcome.measured %}
| {{ m.name }} | {{ targets[m.name] }} ms | {{ m.percentile(0.5) | num(1) }} | {{ m.percentile(0.95) | num(1) }} | {{ m.percentile(0.99) | num(1) }} | {{ "yes" if m.percentile(0.95) <= targets[m.name] else "**no**" }} | {{ m.rows | num }} | {{ m.plan }} |
{% endfor %}

## Sizes

| relation | size |
|---|---|
{% for name, size in outcome.sizes %}
| {{ name }} | {{ size | mib }} |
{% endfor %}

## SQLite (reported, not targeted)

{% if outcome.sqlite %}
The same {{ outcome.sqlite_copy[0] | num }} projected runs (and the threads,
messages and graphs they name) copied into a new SQLite file in
{{ outcome.sqlite_copy[1] | num(0) }} s, `ANALYZE`d, then the same calls through the
same API: 1 warm-up call, then {{ config.sqlite_samples }} timed calls each.
Percentiles are computed in Python there (SQLite has no `percentile_cont`).

| query | p50 ms | p95 ms | rows |
|---|---|---|---|
{% for m in outcome.sqlite %}
| {{ m.name }} | {{ m.percentile(0.5) | num(1) }} | {{ m.percentile(0.95) | num(1) }} | {{ m.rows | num }} |
{% endfor %}
{% else %}
Not measured in this run (`--no-sqlite`).
{% endif %}

## The projector with and without the new indexes

{% if old %}
| indexes | events/s |
|---|---|
| revisions 0011-0012 (GIN labels, (status, created_at, id), (graph_id, created_at, id), (status)) | {{ outcome.projected_per_second | num }} |
| revision 0010 (one-column status and graph_id) | {{ old.projected_per_second | num }} |

Ratio: {{ (outcome.projected_per_second / old.projected_per_second) | num(2) }} (one run each, same log).
{% else %}
With the new indexes: {{ outcome.projected_per_second | num }} events/s (run with
`--compare-indexes` to project the same log without them too).
{% endif %}

{{ notes }}"""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write its report."""
    defaults = Config(Server())
    parser = harness.options(
        "python -m bench.queries",
        __doc__ or "",
        defaults,
        f"report file (default {RESULTS.relative_to(harness.REPOSITORY)})",
        executions="runs to generate (default 1,000,000)",
        graphs="graphs they run (default 300)",
        samples="timed calls per query (default 50)",
        warmup="untimed calls first (default 5)",
        sqlite="skip the same queries on an SQLite copy of the runs",
        sqlite_samples="timed calls per query on SQLite (default 5)",
    )
    parser.add_argument(
        "--compare-indexes",
        action="store_true",
        help="also project the same log without revision 0011's indexes",
    )
    args = parser.parse_args(argv)
    config = harness.configured(
        dataclasses.replace(defaults, server=Server(args.dsn)), args
    )
    environment = Environment(config.server)
    outcome = asyncio.run(_database(config, old_indexes=False))
    old = (
        asyncio.run(_database(config, old_indexes=True))
        if config.compare_indexes
        else None
    )
    environment.finish()
    output = args.output or RESULTS
    text = harness.report(
        TEMPLATE,
        config=config,
        command="python -m bench.queries " + " ".join(argv or sys.argv[1:]),
        machine=environment.lines(),
        outcome=outcome,
        old=old,
        targets=TARGETS_MS,
        notes=harness.notes(output),
    )
    Path(output).write_text(text, encoding="utf-8")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
