"""`eventstore rebuild`: the executions table rebuilt from the log, readers served throughout."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from eventstore import EventStore
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stderr,
    stdout,
)
from projections.executions import ExecutionsProjection
from projections.gc_tuning import gc_for_batches
from projections.rebuild import DEFAULT_BATCH, RebuildReport, plan_rebuild, run_rebuild


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command()(rebuild)


def rebuild(
    url: UrlOption = None,
    *,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            max=1_000_000,
            help="events per batch (executions per part while PostgreSQL folds)",
        ),
    ] = DEFAULT_BATCH,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="drop an interrupted rebuild's table and start over"
        ),
    ] = False,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Rebuild the executions table from the log.

    PostgreSQL: builds a new table beside the live one and swaps it in at
    the end; readers and the projector keep running meanwhile, and an
    interrupted rebuild resumes where it stopped (--restart starts over).
    SQLite: replays in one transaction; readers keep the old rows until it
    commits.
    """

    async def command() -> RebuildReport:
        async with EventStore.open(url) as store, gc_for_batches():
            projection = ExecutionsProjection(store.backend)
            plan = await plan_rebuild(store, projection, restart=restart)
            if plan.resume_from is not None:
                stderr.print(
                    f"resuming the rebuild from position {plan.resume_from} "
                    "(--restart starts over)"
                )
            with Progress(
                TextColumn("rebuilding executions"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} events/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr,
                disable=json_output,
            ) as progress:
                task = progress.add_task("rebuild", total=plan.events, rate="-")

                def advance(done: int, _: int) -> None:
                    elapsed = progress.tasks[task].elapsed or 0.0
                    rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
                    # The log may grow during the rebuild.
                    total = max(plan.events, done)
                    progress.update(task, completed=done, total=total, rate=rate)

                return await run_rebuild(
                    store,
                    projection,
                    batch_size=batch_size,
                    restart=restart,
                    on_batch=advance,
                )

    report = run(command, debug=debug)
    if json_output:
        print_json(dataclasses.asdict(report))
        return
    resumed = (
        f" (resumed from position {report.resumed_from})"
        if report.resumed_from is not None
        else ""
    )
    rate = f", {report.events / report.seconds:,.0f} events/s" if report.seconds else ""
    stdout.print(
        f"rebuilt executions from {report.events} events{resumed} "
        f"in {report.seconds:.1f} s{rate}"
    )
    if not report.swapped:
        stdout.print(f"replayed in one transaction, up to position {report.position}")
        return
    stdout.print(
        f"swapped in at position {report.position}; the live table was locked "
        f"for {report.swap_seconds * 1000:.0f} ms"
    )
    if not report.retired_dropped:
        stderr.print(
            "the replaced table could not be locked in time to drop it; "
            "the next rebuild drops it"
        )
