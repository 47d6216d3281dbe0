"""Commands on the schema and the projection's contents: migrate, stats."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

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
from projections.stats import DURATIONS, execution_stats

if TYPE_CHECKING:
    from projections.stats import Stats


TERMINAL_ORDER = (
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(migrate)
    app.command()(stats)


def migrate(url: UrlOption = None, *, debug: DebugOption = False) -> None:
    """Create or upgrade the schema (alembic upgrade head)."""

    async def command() -> str | None:
        async with EventStore.open(url) as store:
            await store.migrate()
            return await store.schema_revision()

    revision = run(command, debug=debug)
    stdout.print(f"schema at revision {revision}")


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


def _cost(value: float | None) -> str:
    # None: a sum no float holds; say so rather than print inf.
    return f"{value:.2f}" if value is not None else f"over {sys.float_info.max:.1e}"


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
        # Graph names and versions are whatever a service registered.
        name = safe(f"{graph.graph_name} v{graph.graph_version}")
        usage.add_row(
            name,
            str(sum(graph.counts.values())),
            *(str(graph.counts[s]) for s in TERMINAL_ORDER),
            str(graph.prompt_tokens + graph.completion_tokens),
            _cost(graph.cost_usd),
        )
        for duration in DURATIONS:
            p = getattr(graph, duration)
            durations.add_row(
                name if duration == DURATIONS[0] else Text(),
                duration,
                *("-" if v is None else f"{v:.0f}" for v in (p.p50, p.p95, p.p99)),
            )
    stdout.print(usage)
    stdout.print(durations)
