"""`eventstore list`: find runs by status, labels, graph and time (README, "Reading the projection")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from eventstore import EventStore, ExecutionState
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stdout,
)
from eventstore.cli.display import safe
from eventstore.parsing import parse_label_pairs, parse_since, parse_time
from projections import ExecutionsView

if TYPE_CHECKING:
    from uuid import UUID

    from projections.queries import Page

StatusOption = Annotated[
    list[str] | None,
    typer.Option("--status", help="only this status (repeat for several)"),
]
LabelOption = Annotated[
    list[str] | None,
    typer.Option("--label", help="KEY=VALUE that must match (repeat: all must)"),
]
GraphOption = Annotated[str | None, typer.Option("--graph", help="graph name")]
GraphVersionOption = Annotated[
    str | None, typer.Option("--graph-version", help="graph version")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="created since: a DURATION (30s, 15m, 2h, 7d) or a TIME"
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="created before this ISO 8601 time")
]


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command("list")(list_runs)


def parse_labels(pairs: list[str] | None) -> dict[str, str] | None:
    """`--label KEY=VALUE` options as a mapping (the store checks keys and values).

    Raises:
        ValidationError: an option without `=`, or a key given twice.
    """
    return parse_label_pairs(pairs or [], separator="=", option="--label")


def run_filters(
    *,
    status: list[str] | None,
    label: list[str] | None,
    graph: str | None,
    graph_version: str | None,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    """The filters of `list` (and `stats`) options, as ExecutionsView takes them."""
    return {
        "status": status or None,
        "labels": parse_labels(label),
        "graph_name": graph,
        "graph_version": graph_version,
        "since": None if since is None else parse_since(since, "--since"),
        "until": None if until is None else parse_time(until, "--until"),
    }


def list_runs(
    url: UrlOption = None,
    *,
    status: StatusOption = None,
    label: LabelOption = None,
    graph: GraphOption = None,
    graph_version: GraphVersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: Annotated[int, typer.Option("--limit", help="runs per page, 1-1000")] = 50,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="the next page, as printed")
    ] = None,
    oldest: Annotated[bool, typer.Option("--oldest", help="oldest first")] = False,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List runs, newest first, with their status, graph, duration, usage and labels."""

    async def command() -> tuple[Page, dict[UUID, str]]:
        filters = run_filters(
            status=status,
            label=label,
            graph=graph,
            graph_version=graph_version,
            since=since,
            until=until,
        )
        async with EventStore.open(url) as store:
            page = await ExecutionsView(store).list(
                order="oldest" if oldest else "newest",
                limit=limit,
                cursor=cursor,
                **filters,
            )
            names = {}
            for graph_id in {state.graph_id for state in page.items}:
                found = await store.graphs.get(graph_id)
                names[graph_id] = f"{found.name} v{found.version}"
            return page, names

    page, names = run(command, debug=debug)
    if json_output:
        print_json(page.model_dump(mode="json"))
        return
    _print_page(page, names)


def _print_page(page: Page, names: dict[UUID, str]) -> None:
    table = Table(title=f"{len(page.items)} runs")
    for column in (
        "id",
        "status",
        "graph",
        "created (UTC)",
        "total",
        "tokens",
        "cost",
        "labels",
    ):
        table.add_column(column, overflow="fold")
    for state in page.items:
        table.add_row(*(safe(cell) for cell in _cells(state, names)))
    stdout.print(table)
    if page.next_cursor is not None:
        stdout.print(f"next page: --cursor {page.next_cursor}", highlight=False)


def _cells(state: ExecutionState, names: dict[UUID, str]) -> list[str]:
    metrics = state.metrics
    tokens = int(metrics.get("prompt_tokens", 0)) + int(
        metrics.get("completion_tokens", 0)
    )
    cost = metrics.get("cost_usd")
    return [
        str(state.id),
        state.status.value,
        names.get(state.graph_id, str(state.graph_id)),
        state.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "-" if state.total_ms is None else f"{state.total_ms / 1000:.1f}s",
        str(tokens) if tokens else "-",
        "-" if cost is None else f"{cost:.4f}",
        ", ".join(f"{key}={value}" for key, value in sorted(state.labels.items())),
    ]
