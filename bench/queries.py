"""Run queries and statistics at a million runs (README: "Reading the projection", `eventstore stats`), on PostgreSQL.

A generated log of `--executions` runs, projected; each query through the API
`--samples` times: p50/p95/p99, plans, index sizes, and the same queries on an
SQLite copy. `--compare-indexes` projects the log again without revision
0011's indexes, to show what they cost the projector (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from bench import harness
from bench.harness import Environment, Server
from eventstore import schema
from projections import ExecutionStats, ExecutionsView, Projector
from projections.queries import count_query, page_query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from pathlib import Path

    from eventstore import EventStore

    # a query's call through the API, and the SELECT it sends (for its plan)
    Call = tuple[Callable[[], Awaitable[Any]], sa.Select[Any] | None]

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
TEMPLATE_NAMES: Final = {"targets": TARGETS_MS, "p": harness.percentile, "zip": zip}
# The projection's indexes as revision 0010 left them: without 0011's, with
# its one-column graph index (its status one is back since 0012).
REVISION_0010_INDEXES: Final = (
    "DROP INDEX ix_executions_labels, ix_executions_status_created_at_id, "
    "ix_executions_graph_id_created_at_id",
    "CREATE INDEX ix_executions_graph_id ON executions (graph_id)",
)

# One transaction: what the runs reference (ids derived from numbers); the runs
# (status by one draw, graph and customer skewed, created over 30 days); their
# events as the lifecycle writes them, the append guard off.
LOG_SQL: Final = """
INSERT INTO threads (id, title)
SELECT md5('thread' || n)::uuid, 't' || n FROM generate_series(0, 99) AS n;
INSERT INTO graphs (id, name, version, definition) SELECT md5('graph' || n)::uuid,
    'crew-' || (n % 100), (n / 100 + 1)::text, '{{}}' FROM generate_series(0, 299) AS n;
INSERT INTO messages (id, thread_id, role, content) SELECT md5('message' || n)::uuid,
    md5('thread' || n % 100)::uuid, 'user', 'q' FROM generate_series(0, 999) AS n;
SELECT setseed(0.42);
CREATE TABLE bench_runs AS
SELECT n, gen_random_uuid() AS id, r,
       now() - random() * interval '30 days' AS created,
       CASE WHEN r < 0.70 THEN 'completed' WHEN r < 0.82 THEN 'failed'
            WHEN r < 0.90 THEN 'cancelled' WHEN r < 0.95 THEN 'running'
            ELSE 'pending' END AS fate,
       (floor(power(random(), 2) * 300))::int AS graph,
       (floor(power(random(), 3) * 1000))::int AS customer,
       CASE WHEN random() < 0.8 THEN 'prod' ELSE 'staging' END AS env,
       (ARRAY['large', 'small', 'small', 'reasoning'])[1 + floor(random() * 4)::int] AS model,
       1 + floor(random() * 4)::int AS steps, random() * 5 AS queue_s
FROM (SELECT n, random() AS r FROM generate_series(1, {executions}) AS n) AS drawn;
ALTER TABLE execution_events DISABLE {guard};
INSERT INTO execution_events (stream_id, version, stream_type, event_id, type,
    schema_version, data, metadata, occurred_at, hash)
SELECT id, row_number() OVER (PARTITION BY id ORDER BY at, kind), 'execution',
       gen_random_uuid(), type, schema_version, data, '{{"actor": "bench"}}'::jsonb, at,
       sha256(convert_to(id::text || kind, 'UTF8'))
FROM (
    SELECT id, 0 AS kind, 'ExecutionCreated' AS type, 1 AS schema_version,
           jsonb_build_object('message_id', md5('message' || n % 1000)::uuid,
               'thread_id', md5('thread' || n % 1000 % 100)::uuid,
               'graph_id', md5('graph' || graph)::uuid, 'inputs', jsonb_build_object('n', n),
               'labels', jsonb_build_object('customer', 'c' || customer,
                   'env', env, 'model', model)) AS data,
           created AS at
    FROM bench_runs
    UNION ALL
    SELECT id, 1 + s, CASE s WHEN 0 THEN 'ExecutionStarted' ELSE 'ExecutionProgressed' END,
           CASE s WHEN 0 THEN 1 ELSE 2 END,
           CASE s WHEN 0 THEN jsonb_build_object('worker_id', 'w-' || n % 64)
           ELSE jsonb_build_object('step', s, 'metrics', jsonb_build_object(
               'prompt_tokens', 200 + n % 800, 'completion_tokens', 50 + n % 300,
               'cost_usd', round(((n % 97) / 1000.0)::numeric, 4))) END,
           created + (queue_s + s * 3) * interval '1 second'
    FROM bench_runs, generate_series(0, steps) AS s  -- 0: started
    WHERE fate IN ('completed', 'failed', 'running')
    UNION ALL
    SELECT id, 9, 'Execution' || initcap(fate), 1,
           CASE fate WHEN 'completed' THEN jsonb_build_object('result', n)
                     WHEN 'failed' THEN jsonb_build_object('error', jsonb_build_object(
                         'type', 'Timeout', 'message', 'the tool timed out',
                         'traceback', NULL, 'retryable', false))
                     ELSE jsonb_build_object('reason', 'user') END,
           created + (queue_s + steps * 3 + 1) * interval '1 second'
    FROM bench_runs WHERE fate IN ('completed', 'failed', 'cancelled')
) AS events
ORDER BY at;
ALTER TABLE execution_events ENABLE {guard};
"""
# The busiest customer, and the median one, by runs.
CUSTOMERS_SQL: Final = """
SELECT ARRAY[by_runs[1], by_runs[cardinality(by_runs) / 2 + 1]] FROM
(SELECT array_agg(customer ORDER BY runs DESC) AS by_runs FROM (SELECT labels->>'customer'
 AS customer, count(*) AS runs FROM executions GROUP BY 1) AS customers) AS ordered
"""
SIZES_SQL: Final = """
SELECT string_agg(format('%s %s MiB', name, round(size / 2 ^ 20)), ', ' ORDER BY size DESC)
FROM (SELECT 'executions (table)' AS name, pg_relation_size('executions') AS size
      UNION ALL SELECT indexrelname, pg_relation_size(indexrelid)
      FROM pg_stat_user_indexes WHERE relname = 'executions') AS relations
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    server: Server
    executions: int = 1_000_000
    samples: int = 50
    warmup: int = 5
    compare_indexes: bool = False
    sqlite: bool = True
    sqlite_samples: int = 5


@contextlib.asynccontextmanager
async def projected_log(
    server: Server, executions: int, prefix: str, *, old_indexes: bool = False
) -> AsyncIterator[tuple[str, EventStore, int, float]]:
    """A throwaway database with the log of `executions` runs, projected (and
    vacuumed): its DSN, a store on it, its events, and the projector's events/s."""
    async with (
        harness.throwaway_database(server, prefix) as dsn,
        harness.migrated_store(dsn, pool_size=4) as store,
    ):
        script = LOG_SQL.format(executions=executions, guard=harness.GUARD)
        await harness.execute(dsn, script, "VACUUM ANALYZE execution_events")
        events = await harness.fetchval(dsn, "SELECT count(*) FROM execution_events")
        if old_indexes:
            await harness.execute(dsn, *REVISION_0010_INDEXES)
        started = time.perf_counter()
        await Projector(store).run_until_caught_up()
        rate = events / (time.perf_counter() - started)
        await harness.execute(dsn, "VACUUM ANALYZE executions")
        yield dsn, store, events, rate


async def latencies(
    call: Callable[[], Awaitable[Any]], calls: int, clients: int = 1
) -> tuple[list[float], list[Any]]:
    """Milliseconds of each of `calls` calls, `clients` at a time, and their results."""
    times, left, results = [], iter(range(calls)), []

    async def client() -> None:
        for _ in left:
            started = time.perf_counter()
            results.append(await call())
            times.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)))
    return times, results


async def _plan(store: EventStore, query: sa.Select[Any] | None) -> str:
    """The nodes of a query's plan on PostgreSQL, without their conditions."""
    if store.backend.name != "postgresql":
        return ""
    if query is None:
        return "two statements: counts and sums, then percentile_cont"
    dialect, literal = store.backend.engine.dialect, {"literal_binds": True}
    sql = query.compile(dialect=dialect, compile_kwargs=literal)
    async with store.backend.engine.connect() as connection:
        lines = (await connection.exec_driver_sql(f"EXPLAIN {sql}")).scalars().all()
    nodes = [re.sub(r"\s+\(cost=.*", "", line).strip(" ->") for line in lines]
    details = ("Filter", "Index Cond", "Recheck", "Sort Key", "Group Key", "Hash Cond")
    return "; ".join(node for node in nodes if node and not node.startswith(details))


async def _measure(
    store: EventStore, customers: list[str], samples: tuple[int, int]
) -> list[dict[str, Any]]:
    """Each query of TARGETS_MS, its plan, and (untimed, timed) `samples` calls."""
    view, stats = ExecutionsView(store), ExecutionStats(store)
    context = store.projection_context
    labels, typical = {"customer": customers[0]}, {"customer": customers[1]}
    failed: dict[str, Any] = {"status": "failed", "labels": labels}
    failed_today = {**failed, "since": timedelta(days=1)}
    cursor = None
    for _ in range(99):  # the cursor of page 100, read once
        cursor = (await view.list(limit=50, cursor=cursor, **failed)).next_cursor

    def page(filters: dict[str, Any], after: str | None = None) -> Call:
        select = page_query(context, filters, order="newest", limit=50, cursor=after)
        return lambda: view.list(limit=50, cursor=after, **filters), select

    def count(filters: dict[str, Any]) -> Call:
        return lambda: view.count_by_status(**filters), count_query(context, filters)

    def summary(group: str, days: int) -> Call:
        since = timedelta(days=days)
        return functools.partial(stats.summary, group_by=[group], since=since), None

    calls = [page({}), page(failed_today), page(failed, cursor), count({})]
    calls += [count({"labels": labels}), count({"labels": typical})]
    calls += [summary("graph", 1), summary("day", 30)]
    measured = []
    for name, (query, select) in zip(TARGETS_MS, calls, strict=True):
        await latencies(query, samples[0])
        times, results = await latencies(query, samples[1])
        result = results[-1]
        # a count per status, a page's runs, a summary's rows
        counted = result.values() if isinstance(result, dict) else None
        rows = sum(counted) if counted else len(getattr(result, "items", result))
        plan = await _plan(store, select)
        measured.append({"name": name, "ms": times, "plan": plan, "rows": rows})
    return measured


async def _copy_to_sqlite(store: EventStore, url: str) -> int:
    """The projected runs and the rows they reference (not the log, which no
    query reads) copied into a new SQLite store; how many runs."""
    tables = (schema.threads, schema.messages, schema.graphs, schema.executions)
    copied = 0
    async with (
        harness.migrated_store(url) as lite,
        store.backend.engine.connect() as source,
    ):
        for table in tables:
            select = sa.select(table).execution_options(yield_per=5000)
            async for chunk in (await source.stream(select)).mappings().partitions():
                async with lite.backend.begin_write() as target:
                    await target.execute(sa.insert(table), [dict(row) for row in chunk])
                copied += len(chunk) if table is schema.executions else 0
        async with lite.backend.begin_write() as target:
            await target.execute(sa.text("ANALYZE"))
    return copied


async def _database(config: Config) -> dict[str, Any]:
    """The report's figures: the log projected, the queries on PostgreSQL and an
    SQLite copy; with `compare_indexes`, the log projected with 0010's indexes."""
    server, runs = config.server, config.executions
    log = projected_log(server, runs, "bench_queries_")
    async with log as (dsn, store, events, rate):
        customers = await harness.fetchval(dsn, CUSTOMERS_SQL)
        samples = (config.warmup, config.samples)
        measured = await _measure(store, customers, samples)
        sizes = await harness.fetchval(dsn, SIZES_SQL)
        found = {"events": events, "rate": rate, "measured": measured, "sizes": sizes}
        found |= {"sqlite": [None] * len(measured), "old_rate": None}
        if config.sqlite:
            with harness.sqlite_file() as path:
                started, url = time.perf_counter(), f"sqlite:///{path}"
                found["copied"] = await _copy_to_sqlite(store, url)
                found["copy_seconds"] = time.perf_counter() - started
                async with harness.migrated_store(url) as lite:  # a fresh one
                    samples = (1, config.sqlite_samples)
                    found["sqlite"] = await _measure(lite, customers, samples)
    if config.compare_indexes:
        log = projected_log(server, runs, "bench_old_", old_indexes=True)
        async with log as (_, _, _, old_rate):
            found["old_rate"] = old_rate
    return found


def write_report(
    output: Path, environment: Environment, text: str, command: str
) -> None:
    """Write a report, `text` (markdown, its title line first) with the command
    that made it and the machine after the title, and the kept notes at the end."""
    environment.finish()
    title, body = text.split("\n", 1)
    made = f"Generated by `{command}`; the figures below are measured, none are edited."
    text = f"{title}\n\n{made}\n\n{environment.lines()}{body}\n{harness.notes(output)}"
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")


TEMPLATE: Final = """\
# Run queries and statistics at {{ config.executions|num }} runs

## Method

- One throwaway PostgreSQL database; a log of {{ config.executions|num }} runs ({{ events|num }} events) generated by one INSERT ... SELECT (70 % completed, 12 % failed, 8 % cancelled, 5 % running, 5 % pending; 300 graphs, skewed; labels customer (1,000 values, skewed), env, model; 30 days of creation times), projected by `Projector(store).run_until_caught_up()`, then `VACUUM ANALYZE executions`.
- Each query through the public API (`ExecutionsView.list/count_by_status`, `ExecutionStats.summary`): {{ config.warmup }} warm-up calls, then {{ config.samples }} timed calls one after another, the client in the same process. "One label" is the busiest customer; the median customer (by runs) is measured too. Page 100 is read with the cursor of page 99, over all time.
- Plans: `EXPLAIN` of the SQL the API sends (the nodes, without conditions).
{% if sqlite[0] %}
- SQLite (reported, not targeted): the same {{ copied|num }} projected runs (and the threads, messages and graphs they name) copied into a new SQLite file in {{ copy_seconds|num }} s, `ANALYZE`d, then the same calls through the same API, 1 warm-up call and {{ config.sqlite_samples }} timed calls each. Percentiles are computed in Python there (SQLite has no `percentile_cont`); the rows are the same as PostgreSQL's unless shown.
{% endif %}

## Queries

| query | target p95 | p50 ms | p95 ms | p99 ms | met | rows | plan | SQLite p50 ms | SQLite p95 ms |
|---|---|---|---|---|---|---|---|---|---|
{% for m, lite in zip(measured, sqlite) %}
| {{ m.name }} | {{ targets[m.name] }} ms | {{ p(m.ms, 0.5)|num(1) }} | {{ p(m.ms, 0.95)|num(1) }} | {{ p(m.ms, 0.99)|num(1) }} | {{ "yes" if p(m.ms, 0.95) <= targets[m.name] else "**no**" }} | {{ m.rows|num }}{{ " (SQLite: %d)"|format(lite.rows) if lite and lite.rows != m.rows }} | {{ m.plan }} | {{ p(lite.ms, 0.5)|num(1) if lite else "-" }} | {{ p(lite.ms, 0.95)|num(1) if lite else "-" }} |
{% endfor %}

Sizes: {{ sizes }}.

## The projector with and without the new indexes

{% if old_rate %}
With revisions 0011-0012's indexes (GIN labels, (status, created_at, id), (graph_id, created_at, id), (status)): {{ rate|num }} events/s; with revision 0010's (one-column status and graph_id): {{ old_rate|num }} events/s. Ratio: {{ (rate / old_rate)|num(2) }} (one run each, same log).
{% else %}
With the new indexes: {{ rate|num }} events/s (run with `--compare-indexes` to project the same log without them too).
{% endif %}"""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write its report."""
    parser = harness.options(
        "python -m bench.queries",
        __doc__ or "",
        Config(Server()),
        f"report file (default {RESULTS.relative_to(harness.REPOSITORY)})",
        executions="runs to generate (default 1,000,000)",
        samples="timed calls per query (default 50)",
        sqlite="skip the same queries on an SQLite copy of the runs",
    )
    parser.add_argument(
        "--compare-indexes",
        action="store_true",
        help="also project the same log without revision 0011's indexes",
    )
    args = parser.parse_args(argv)
    config = harness.configured(Config(Server(args.dsn)), args)
    environment, found = Environment(config.server), asyncio.run(_database(config))
    text = harness.report(TEMPLATE, config=config, **TEMPLATE_NAMES, **found)
    command = " ".join([parser.prog, *(sys.argv[1:] if argv is None else argv)])
    write_report(args.output or RESULTS, environment, text, command)


if __name__ == "__main__":
    main()
