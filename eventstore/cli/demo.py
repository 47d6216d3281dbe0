"""`eventstore demo`: a realistic workload on the embedded SQLite default, end to end."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from eventstore import EventStore, StoreSettings, scrub
from eventstore.cli.app import DebugOption, UrlOption, run, stdout
from eventstore.cli.demo_workload import Tally, run_workload
from eventstore.cli.display import safe
from eventstore.cli.stats_command import print_summary
from projections import ExecutionStats, StatsRow
from projections.projector import Projector
from projections.queries import ExecutionsView

DEMO_GROUPING = ("graph", "label:model")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(demo)


def demo(
    url: UrlOption = None,
    *,
    executions: Annotated[
        int, typer.Option(min=1, max=100_000, help="runs to simulate")
    ] = 200,
    workers: Annotated[
        int, typer.Option(min=1, max=256, help="concurrent workers")
    ] = 8,
    seed: Annotated[int, typer.Option(help="random seed of the simulation")] = 7,
    show: Annotated[
        int,
        typer.Option(min=0, max=1000, help="rows of the executions table to print"),
    ] = 15,
    debug: DebugOption = False,
) -> None:
    """Simulate a crew workload, project it, show the executions table and stats.

    With no URL it creates (or reuses) ./eventstore.db in the current directory.
    """

    async def command() -> tuple[Table, list[StatsRow], int]:
        settings = StoreSettings(pool_size=max(workers + 2, 5))
        async with EventStore.open(url, settings=settings) as store:
            await store.migrate()
            progress = Progress(
                TextColumn("[bold]simulating[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[outcomes]}"),
                TimeElapsedColumn(),
                console=stdout,
            )
            task = progress.add_task("runs", total=executions, outcomes="")

            def update(tally: Tally) -> None:
                outcomes = ", ".join(
                    f"{k} {v}" for k, v in sorted(tally.by_outcome.items())
                )
                progress.update(task, completed=tally.finished, outcomes=outcomes)

            with Live(progress, console=stdout, refresh_per_second=10):
                await run_workload(
                    store,
                    executions=executions,
                    workers=workers,
                    seed=seed,
                    on_change=update,
                )
            projected = await Projector(store).run_until_caught_up()
            page = await ExecutionsView(store).list(limit=max(show, 1))
            table = Table(title=safe(f"executions (newest {show}) in {store.url}"))
            for column in (
                "id",
                "status",
                "customer",
                "attempt",
                "worker",
                "steps",
                "run ms",
                "tokens",
                "cost $",
            ):
                table.add_column(
                    column, justify="right" if column != "status" else "left"
                )
            for state in page.items[:show]:
                tokens = int(state.metrics.get("prompt_tokens", 0)) + int(
                    state.metrics.get("completion_tokens", 0)
                )
                table.add_row(
                    str(state.id)[:8],
                    state.status.value
                    + (
                        " (cancel requested)"
                        if state.cancel_requested and state.status == "running"
                        else ""
                    ),
                    safe(state.labels.get("customer", "-")),
                    str(state.attempt),
                    safe(state.worker_id or "-"),
                    str(state.steps_completed),
                    "-" if state.run_ms is None else str(state.run_ms),
                    str(tokens),
                    f"{state.metrics.get('cost_usd', 0):.4f}",
                )
            summary = await ExecutionStats(store).summary(group_by=DEMO_GROUPING)
            return table, summary, projected

    table, result, projected = run(command, debug=debug)
    stdout.print(f"projected {projected} events into the executions table")
    stdout.print(table)
    print_summary(result, list(DEMO_GROUPING))
    stdout.print(
        "Find runs by label, and group the statistics by any of them:\n"
        "  eventstore list --label customer=acme --status failed --since 1h\n"
        "  eventstore stats --group-by label:customer --group-by day",
        highlight=False,
    )
    # The same database: the default file here, or the URL the demo was given
    # (its password masked: output must not show one).
    serve = (
        "eventstore serve" if url is None else f"eventstore serve --url '{scrub(url)}'"
    )
    stdout.out(
        f"See every run, live, in a browser:\n  {serve}\n"
        "  then open http://127.0.0.1:8700/",
        highlight=False,
    )


__all__ = ["demo", "register"]
