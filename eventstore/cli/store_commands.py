"""Commands on the log and the projection's contents: migrate, audit, stats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from eventstore import EventStore, ExecutionStatus, fold_events
from eventstore.audit import AsOf, prefix_as_of, verify_stream
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stdout,
)
from eventstore.log import as_stream_id
from projections.stats import DURATIONS, execution_stats

if TYPE_CHECKING:
    from eventstore import ExecutionState, RecordedEvent
    from projections.stats import Stats


TERMINAL_ORDER = (
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(migrate)
    app.command()(audit)
    app.command()(stats)


def migrate(url: UrlOption = None, *, debug: DebugOption = False) -> None:
    """Create or upgrade the schema (alembic upgrade head)."""

    async def command() -> str | None:
        async with EventStore.open(url) as store:
            await store.migrate()
            return await store.schema_revision()

    revision = run(command, debug=debug)
    stdout.print(f"schema at revision {revision}")


def audit(
    execution_id: Annotated[str, typer.Argument(help="the execution's id")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="a position (bare integer) or an ISO 8601 time with offset "
            "(compared with recorded_at): the timeline and state at that moment",
        ),
    ] = None,
    url: UrlOption = None,
    *,
    verify_chain: Annotated[
        bool,
        typer.Option("--verify", help="verify the hash chain (exit 1 if it is broken)"),
    ] = False,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """The timeline of one execution, and its state (as of a moment)."""

    async def command() -> tuple[
        list[RecordedEvent], ExecutionState | None, AsOf | None
    ]:
        identifier = as_stream_id(execution_id)
        moment = AsOf.parse(as_of) if as_of is not None else None
        async with EventStore.open(url) as store:
            events = await store.executions.history(identifier)
            if verify_chain:
                await verify_stream(store.backend, identifier)
        if moment is not None:
            events = prefix_as_of(events, moment)
        return events, fold_events(events), moment

    events, state, moment = run(command, debug=debug)
    if verify_chain and not json_output:
        stdout.print(f"hash chain verified: {len(events)} events intact")
    if json_output:
        print_json(
            {
                "execution_id": execution_id,
                "as_of": moment.model_dump(mode="json") if moment else None,
                "events": [_event_json(event) for event in events],
                "state": state.model_dump(mode="json") if state else None,
            }
        )
        return
    _print_timeline(execution_id, events, moment)
    _print_state(state)


def stats(
    url: UrlOption = None,
    *,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Counts by status; per graph, queue/run/total time percentiles and usage."""

    async def command() -> Stats:
        async with EventStore.open(url) as store:
            return await execution_stats(store)

    result = run(command, debug=debug)
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    print_stats(result)


def _event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "version": event.version,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "actor": event.metadata.actor,
        "event_id": str(event.event_id),
        "data": event.data,
        "summary": summarize(event),
    }


def summarize(event: RecordedEvent) -> str:
    """One readable line about an event."""
    data = event.data
    metrics = data.get("metrics") or {}
    usage = (
        ", ".join(f"{k}={v}" for k, v in metrics.items())
        if isinstance(metrics, dict)
        else ""
    )
    summaries = {
        "ExecutionCreated": f"attempt {data.get('attempt', 1)}"
        + (f", retry of {data['retry_of']}" if data.get("retry_of") else ""),
        "ExecutionStarted": f"worker {data.get('worker_id')}",
        "ExecutionProgressed": f"step {data.get('step')}",
        "ExecutionCompleted": "completed",
        "ExecutionFailed": (
            f"{error.get('type')}: {error.get('message')}"
            if isinstance(error := data.get("error"), dict)
            else "failed"
        ),
        "ExecutionCancellationRequested": f"reason {data.get('reason')!r}"
        + (f" by {data['requested_by']}" if data.get("requested_by") else ""),
        "ExecutionCancelled": f"reason {data.get('reason')!r}",
    }
    text = summaries.get(event.type, event.type)
    return f"{text} ({usage})" if usage else text


def _print_timeline(
    execution_id: str, events: list[RecordedEvent], moment: AsOf | None
) -> None:
    title = f"execution {execution_id}"
    if moment is not None:
        title += (
            f" as of {moment.position if moment.position is not None else moment.time}"
        )
    table = Table(title=title)
    for column in (
        "position",
        "version",
        "occurred at (UTC)",
        "type",
        "actor",
        "summary",
        "+ms",
    ):
        table.add_column(column, overflow="fold")
    previous = None
    for event in events:
        delta = (
            ""
            if previous is None
            else f"{(event.occurred_at - previous).total_seconds() * 1000:.0f}"
        )
        table.add_row(
            str(event.position),
            str(event.version),
            event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            event.type,
            event.metadata.actor or "",
            summarize(event),
            delta,
        )
        previous = event.occurred_at
    stdout.print(table)


def _print_state(state: ExecutionState | None) -> None:
    if state is None:
        stdout.print("no state at that moment: the execution did not exist yet")
        return
    table = Table(title="state", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in state.model_dump(mode="json").items():
        table.add_row(name, "" if value is None else str(value))
    stdout.print(table)


def print_stats(result: Stats) -> None:
    """The stats as rich tables."""
    counts = Table(title="executions by status")
    for status in result.counts:
        counts.add_column(status.value, justify="right")
    counts.add_row(*(str(n) for n in result.counts.values()))
    stdout.print(counts)
    usage = Table(title="per graph")
    for column in (
        "graph",
        "runs",
        "completed",
        "failed",
        "cancelled",
        "tokens",
        "cost $",
    ):
        usage.add_column(column, justify="left" if column == "graph" else "right")
    durations = Table(title="durations per graph (ms)")
    for column in ("graph", "duration", "p50", "p95", "p99"):
        durations.add_column(
            column, justify="left" if column in ("graph", "duration") else "right"
        )
    for graph in result.graphs:
        name = f"{graph.graph_name} v{graph.graph_version}"
        usage.add_row(
            name,
            str(sum(graph.counts.values())),
            *(str(graph.counts[s]) for s in TERMINAL_ORDER),
            str(graph.prompt_tokens + graph.completion_tokens),
            f"{graph.cost_usd:.2f}",
        )
        for duration in DURATIONS:
            p = getattr(graph, duration)
            durations.add_row(
                name if duration == DURATIONS[0] else "",
                duration,
                *("-" if v is None else f"{v:.0f}" for v in (p.p50, p.p95, p.p99)),
            )
    stdout.print(usage)
    stdout.print(durations)
