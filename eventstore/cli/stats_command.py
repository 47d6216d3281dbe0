"""`eventstore stats`: counts, error rate, latency percentiles and usage per group (README, "Command line")."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from eventstore import EventStore, ExecutionStatus
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stdout,
)
from eventstore.cli.display import safe
from eventstore.cli.list_command import (
    GraphOption,
    GraphVersionOption,
    LabelOption,
    SinceOption,
    StatusOption,
    UntilOption,
    run_filters,
)
from projections import ExecutionStats

if TYPE_CHECKING:
    from projections import StatsRow

DEFAULT_GROUPING = ("graph",)
"""Without --group-by the rows are per graph (the command's documented default: percentiles per graph)."""
SHOWN_PERCENTILES = ("queue_ms", "run_ms", "total_ms", "first_step_ms")


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command()(stats)


def stats(
    url: UrlOption = None,
    *,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            help="graph, graph_version, status, worker, label:KEY, hour or day "
            "(repeat to nest; default graph)",
        ),
    ] = None,
    status: StatusOption = None,
    label: LabelOption = None,
    graph: GraphOption = None,
    graph_version: GraphVersionOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Runs, error rate, p50/p95/p99 of queue, run, total and first-step time, usage."""
    keys = list(group_by or DEFAULT_GROUPING)

    async def command() -> list[StatsRow]:
        filters = run_filters(
            status=status,
            label=label,
            graph=graph,
            graph_version=graph_version,
            since=since,
            until=until,
        )
        async with EventStore.open(url) as store:
            return await ExecutionStats(store).summary(group_by=keys, **filters)

    rows = run(command, debug=debug)
    if json_output:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    print_summary(rows, keys)


def _cost(value: float | None) -> str:
    # None: a sum no float holds; say so rather than print inf.
    return f"{value:.2f}" if value is not None else f"over {sys.float_info.max:.1e}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def print_summary(rows: list[StatsRow], keys: list[str]) -> None:
    """The rows as two rich tables: what the runs did, and how long they took."""
    runs = Table(title=f"runs by {', '.join(keys)}")
    durations = Table(title=f"durations by {', '.join(keys)} (ms)")
    for key in keys:
        runs.add_column(key)
        durations.add_column(key)
    for column in ("runs", *(s.value for s in ExecutionStatus), "error rate"):
        runs.add_column(column, justify="right")
    runs.add_column("tokens", justify="right")
    runs.add_column("cost $", justify="right")
    durations.add_column("measure")
    for column in ("p50", "p95", "p99"):
        durations.add_column(column, justify="right")
    for row in rows:
        # Group values are whatever services named their graphs and labels.
        group = [
            safe("-" if row.group[key] is None else row.group[key]) for key in keys
        ]
        runs.add_row(
            *group,
            str(row.runs),
            *(str(row.counts[s]) for s in ExecutionStatus),
            "-" if row.error_rate is None else f"{row.error_rate:.1%}",
            str(row.prompt_tokens + row.completion_tokens),
            _cost(row.cost_usd),
        )
        for n, name in enumerate(SHOWN_PERCENTILES):
            values = getattr(row, name)
            durations.add_row(
                *(group if n == 0 else [safe("")] * len(keys)),
                name.removesuffix("_ms"),
                _ms(values.p50),
                _ms(values.p95),
                _ms(values.p99),
            )
    stdout.print(runs)
    stdout.print(durations)
