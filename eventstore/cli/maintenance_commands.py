"""`eventstore cleanup`: fail stale running executions and expired pending ones."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Final

import typer

from eventstore import EventStore, errors
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stdout,
)
from eventstore.reaper import ReapReport, reap

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> timedelta:
    """`90`, `90s`, `15m`, `2h`, `1d` or `250ms` as a timedelta.

    Raises:
        ValidationError: anything else, or zero.
    """
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise errors.ValidationError(
            f"invalid {option} {text!r}: a positive duration such as 90s, 15m, 2h or 1d"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(cleanup)


def cleanup(
    url: UrlOption = None,
    *,
    stale_after: Annotated[
        str | None,
        typer.Option(
            "--stale-after",
            help="fail running executions with no heartbeat (or start) within this "
            "duration, e.g. 5m",
        ),
    ] = None,
    pending_after: Annotated[
        str | None,
        typer.Option(
            "--pending-after", help="fail pending executions older than this, e.g. 1h"
        ),
    ] = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Fail stale running executions and expired pending ones (error type Timeout, actor reaper).

    The executions projection names the candidates: run the projector
    (`eventstore project`) so that it is current.
    """

    async def command() -> ReapReport:
        if stale_after is None and pending_after is None:
            raise errors.ValidationError(
                "nothing to do: give --stale-after and/or --pending-after"
            )
        stale = parse_duration(stale_after, "--stale-after") if stale_after else None
        pending = (
            parse_duration(pending_after, "--pending-after") if pending_after else None
        )
        async with EventStore.open(url) as store:
            return await reap(store, stale_after=stale, pending_after=pending)

    report = run(command, debug=debug)
    if json_output:
        print_json(
            {
                "stale_failed": [str(i) for i in report.stale],
                "pending_failed": [str(i) for i in report.expired_pending],
            }
        )
        return
    for execution_id in report.stale:
        stdout.print(f"failed stale execution {execution_id}")
    for execution_id in report.expired_pending:
        stdout.print(f"failed expired pending execution {execution_id}")
    stdout.print(
        f"cleanup: {len(report.stale)} stale and {len(report.expired_pending)} "
        "expired pending executions failed"
    )
