"""Commands that run projections: the projector (daemon or catch-up) and rebuild."""

from __future__ import annotations

import asyncio
import signal
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
from eventstore.cli.app import DebugOption, UrlOption, run, stderr, stdout
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.rebuild import rebuild as rebuild_projection


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(project)
    app.command()(rebuild)


def project(
    url: UrlOption = None,
    *,
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="exit once the log is folded")
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="events per batch")
    ] = 1000,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, help="seconds between polls when idle")
    ] = 0.5,
    debug: DebugOption = False,
) -> None:
    """Run the projector: fold the log into the executions table.

    Without --until-caught-up it runs as a daemon until SIGINT or SIGTERM,
    finishing the batch in hand.
    """

    async def command() -> int:
        async with EventStore.open(url) as store:
            projector = Projector(
                store, batch_size=batch_size, poll_interval=poll_interval
            )
            if until_caught_up:
                return await projector.run_until_caught_up()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            stderr.print(f"projecting {store.url}; stop with Ctrl-C or SIGTERM")
            await projector.run(stop)
            return 0

    applied = run(command, debug=debug)
    if until_caught_up:
        stdout.print(f"projected {applied} events; the executions table is caught up")
    else:
        stderr.print("projector stopped")


def rebuild(
    url: UrlOption = None,
    *,
    batch_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="events per batch")
    ] = 5000,
    debug: DebugOption = False,
) -> None:
    """Rebuild the executions table from the log.

    Runs in one transaction: readers keep the old table until it commits.
    """

    async def command() -> int:
        async with EventStore.open(url) as store:
            total = await store.log.count_events()
            with Progress(
                TextColumn("rebuilding executions"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} events/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr,
                transient=False,
            ) as progress:
                task = progress.add_task("rebuild", total=total, rate="-")

                def advance(done: int, _: int) -> None:
                    elapsed = progress.tasks[task].elapsed or 0.0
                    rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
                    progress.update(task, completed=done, rate=rate)

                return await rebuild_projection(
                    store,
                    ExecutionsProjection(store.backend),
                    batch_size=batch_size,
                    on_batch=advance,
                )

    replayed = run(command, debug=debug)
    stdout.print(f"rebuilt executions from {replayed} events")
