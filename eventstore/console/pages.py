"""The console's pages: runs, one run, graphs, the system (README, "Web console").

Server-rendered with Jinja2, autoescaped: labels, inputs, results, errors
and graph names come from the log and are user data, shown as text. The
pages read without JavaScript; two small scripts make their live parts
live (the run page re-reads itself on each new event of its stream; the
list polls its counts).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import jinja2
from starlette.responses import HTMLResponse
from starlette.routing import Route

from eventstore import ExecutionStatus, errors
from eventstore.audit import render_timeline
from eventstore.console.api import UnknownExecution, execution_id_of, store_of
from eventstore.console.charts import Chart, line_chart
from eventstore.console.run_params import (
    FILTERS,
    PAGING,
    check_known,
    page_params,
    run_filters,
    single,
)
from eventstore.parsing import parse_duration
from projections import ExecutionStats, ExecutionsView, StatsRow, projection_status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from starlette.requests import Request

    from eventstore import EventStore, ExecutionState

STATUSES: Final = tuple(status.value for status in ExecutionStatus)
DEFAULT_WINDOW: Final = "7d"
HOURLY_UP_TO: Final = timedelta(days=2)  # longer windows are drawn by day


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: (
                resources.files(__package__)
                .joinpath("templates", name)
                .read_text("utf-8")
            )
        ),
        autoescape=True,  # everything from the log is user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code)


def _refusing_bad_input(
    page: Callable[[Request], Awaitable[HTMLResponse]],
) -> Callable[[Request], Awaitable[HTMLResponse]]:
    """A page handler whose bad input is a page saying so (400), an unknown run a 404."""

    @functools.wraps(page)
    async def handler(request: Request) -> HTMLResponse:
        try:
            return await page(request)
        except errors.ValidationError as exc:
            return _page("error.html.j2", 400, title="Bad request", message=str(exc))
        except (UnknownExecution, errors.ExecutionNotFound) as exc:
            return _page("error.html.j2", 404, title="Not found", message=str(exc))

    return handler


async def _graph_names(
    store: EventStore, states: list[ExecutionState]
) -> dict[UUID, str]:
    names = {}
    for graph_id in {state.graph_id for state in states}:
        graph = await store.graphs.get(graph_id)
        names[graph_id] = f"{graph.name} v{graph.version}"
    return names


@_refusing_bad_input
async def executions_page(request: Request) -> HTMLResponse:
    """`/`: runs with the filters of the run queries, counts by status, keyset pages."""
    params = request.query_params
    check_known(params, FILTERS | PAGING)
    filters = run_filters(params)
    view = ExecutionsView(store_of(request))
    page = await view.list(**page_params(params), **filters)
    # The counts ignore the status filter: they say where else to look.
    counts = await view.count_by_status(**{**filters, "status": None})
    kept = [(k, v) for k, v in params.multi_items() if k not in {"cursor", "token"}]
    next_url = (
        None
        if page.next_cursor is None
        else "?" + urlencode([*kept, ("cursor", page.next_cursor)])
    )
    counts_query = urlencode([(k, v) for k, v in kept if k in FILTERS - {"status"}])
    return _page(
        "executions.html.j2",
        runs=page.items,
        graphs=await _graph_names(store_of(request), page.items),
        counts={status.value: count for status, count in counts.items()},
        statuses=STATUSES,
        chosen=set(params.getlist("status")),
        form={name: single(params, name) or "" for name in FILTERS - {"status"}},
        next_url=next_url,
        counts_url=f"/api/executions/counts?{counts_query}",
        now=datetime.now(UTC),
    )


@_refusing_bad_input
async def execution_page(request: Request) -> HTMLResponse:
    """`/executions/{id}`: the run's state and timeline, live until it ends."""
    check_known(request.query_params, ())
    store = store_of(request)
    execution_id = await execution_id_of(request)
    # One read of the stream: its events as stored, upcast for the timeline.
    timeline = await store.audit.timeline(execution_id, stored=True)
    if timeline.state is None:  # a system stream: the store's own records
        raise errors.ExecutionNotFound(execution_id=execution_id)
    try:
        timeline.verify_chain()
        chain = "verified"
    except errors.RecordAltered as exc:
        chain = f"does not verify: {exc}"
    state = timeline.state
    graph = None if state is None else await store.graphs.get(state.graph_id)
    live = state is not None and not state.is_terminal
    html = render_timeline(
        timeline.events,
        state,
        execution_id=execution_id,
        graph=None if graph is None else f"{graph.name} v{graph.version}",
        chain=chain,
        live_url=(
            f"/api/executions/{execution_id}/stream?from_version={state.version + 1}"
            if live and state is not None
            else None
        ),
        home_url="/",
    )
    return HTMLResponse(html)


def _buckets(since: datetime, now: datetime, *, hourly: bool) -> list[str]:
    """Every bucket label from `since` to `now`, as the statistics name them."""
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    moment = since.replace(minute=0, second=0, microsecond=0)
    if not hourly:
        moment = moment.replace(hour=0)
    labels = []
    while moment <= now:
        labels.append(moment.strftime("%Y-%m-%dT%H:00:00Z" if hourly else "%Y-%m-%d"))
        moment += step
    return labels


def _charts(rows: list[StatsRow], buckets: list[str], key: str) -> list[Chart]:
    """Runs, failures, p95 latency, tokens and cost per bucket, one line per graph."""
    by_graph: dict[str, dict[str, StatsRow]] = {}
    for row in rows:
        by_graph.setdefault(row.group["graph"] or "?", {})[row.group[key] or ""] = row

    def series(
        value: Callable[[StatsRow | None], float | None],
    ) -> dict[str, list[float | None]]:
        return {
            graph: [value(cells.get(bucket)) for bucket in buckets]
            for graph, cells in by_graph.items()
        }

    return [
        line_chart("runs", buckets, series(lambda r: r.runs if r else 0)),
        line_chart(
            "failed runs",
            buckets,
            series(lambda r: r.counts.get(ExecutionStatus.FAILED, 0) if r else 0),
        ),
        line_chart(
            "latency p95 (created to finished)",
            buckets,
            series(lambda r: r.total_ms.p95 if r else None),
            unit=" ms",
        ),
        line_chart(
            "tokens",
            buckets,
            series(lambda r: r.prompt_tokens + r.completion_tokens if r else 0),
        ),
        line_chart(
            "cost",
            buckets,
            series(lambda r: r.cost_usd if r else 0),
            unit=" USD",
        ),
    ]


@_refusing_bad_input
async def graphs_page(request: Request) -> HTMLResponse:
    """`/graphs`: per-graph statistics, and charts over time."""
    params = request.query_params
    check_known(params, {"since"})
    window_text = single(params, "since") or DEFAULT_WINDOW
    window = parse_duration(window_text, "since")
    now = datetime.now(UTC)
    since = now - window
    hourly = window <= HOURLY_UP_TO
    key = "hour" if hourly else "day"
    stats = ExecutionStats(store_of(request))
    totals = await stats.summary(group_by=["graph"], since=since)
    over_time = await stats.summary(group_by=["graph", key], since=since)
    buckets = _buckets(since, now, hourly=hourly)
    return _page(
        "graphs.html.j2",
        totals=totals,
        charts=_charts(over_time, buckets, key) if totals else [],
        window=window_text,
        bucket=key,
    )


@_refusing_bad_input
async def system_page(request: Request) -> HTMLResponse:
    """`/system`: projection slots, leaders, lag, the read horizon, the last verify."""
    check_known(request.query_params, ())
    store = store_of(request)
    try:
        verified, unreadable = await store.audit.last_verify_run(), None
    except errors.DatabaseError as exc:  # a role not granted verify_runs yet
        verified, unreadable = None, str(exc)
    return _page(
        "system.html.j2",
        status=await projection_status(store),
        database=store.url,
        revision=await store.schema_revision(),
        verified=verified,
        unreadable=unreadable,
    )


ROUTES: Final = [
    Route("/", executions_page),
    Route("/executions/{execution_id}", execution_page),
    Route("/graphs", graphs_page),
    Route("/system", system_page),
]
