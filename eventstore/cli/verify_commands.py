"""`eventstore verify`: the log's hash chains, and the projection against a fresh fold."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from eventstore import EventStore
from eventstore.cli.app import (
    EXIT_PROBLEM,
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stderr,
    stdout,
)
from eventstore.integrity import verify_log
from projections.verify import verify_executions


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(verify)


def verify(
    url: UrlOption = None,
    *,
    log_only: Annotated[
        bool,
        typer.Option("--log-only", help="check the hash chains, not the projection"),
    ] = False,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Verify the hash chains and the executions table against a fresh fold.

    Exits 1 and names the first problems when anything does not verify.
    """

    async def command() -> dict[str, Any]:
        async with EventStore.open(url) as store:
            with Progress(
                TextColumn("verifying the log: {task.completed:,} events"),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            ) as progress:
                task = progress.add_task("verify", total=None)
                log = await verify_log(
                    store.backend, on_batch=lambda n: progress.update(task, completed=n)
                )
            divergences = [] if log_only else await verify_executions(store)
        return {
            "events": log.events,
            "streams": log.streams,
            "chain_problems": [
                {
                    "stream_id": str(p.stream_id),
                    "position": p.position,
                    "reason": p.reason,
                }
                for p in log.problems
            ],
            "projection_checked": not log_only,
            "projection_divergences": [
                {"execution_id": str(d.execution_id), "reason": d.reason}
                for d in divergences
            ],
        }

    result = run(command, debug=debug)
    problems = result["chain_problems"] or result["projection_divergences"]
    if json_output:
        print_json({**result, "ok": not problems})
    else:
        stdout.print(f"read {result['events']} events in {result['streams']} streams")
        for problem in result["chain_problems"]:
            stdout.print(
                f"broken chain: execution {problem['stream_id']} at position "
                f"{problem['position']}: {problem['reason']}"
            )
        for divergence in result["projection_divergences"]:
            stdout.print(
                f"projection diverges: execution {divergence['execution_id']}: "
                f"{divergence['reason']}"
            )
        if not problems:
            checked = "hash chains" + (
                "" if log_only else " and the executions projection"
            )
            stdout.print(f"ok: {checked} verified")
    if problems:
        raise typer.Exit(EXIT_PROBLEM)
