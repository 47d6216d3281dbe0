"""`eventstore cleanup`: fail stale and expired executions, archive finished ones."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from eventstore import EventStore, ReapReport, StoreSettings, errors, reap
from eventstore.audit import ArchiveResult
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    print_json,
    run,
    stdout,
)
from eventstore.cli.display import safe
from eventstore.parsing import parse_duration, parse_time


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
            "duration, e.g. 5m; `cleanup` with no option uses "
            "$EVENTSTORE_STALE_AFTER_SECONDS (600)",
        ),
    ] = None,
    pending_after: Annotated[
        str | None,
        typer.Option(
            "--pending-after", help="fail pending executions older than this, e.g. 1h"
        ),
    ] = None,
    archive_before: Annotated[
        str | None,
        typer.Option(
            "--archive-before",
            help="archive executions that finished before this ISO 8601 time "
            "(with offset): export them to --to, then remove them from the log "
            "and the projection, with a receipt in the log",
        ),
    ] = None,
    # A string, not a Path: typer would read an empty --to as ".".
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="the directory for the archive file and its manifest"
        ),
    ] = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Fail stale running executions and expired pending ones; archive finished ones.

    Failed executions get an ExecutionFailed event (error type Timeout,
    actor reaper); the executions projection names the candidates, so run
    the projector (`eventstore project`) so that it is current. Archiving
    needs the projection to have folded the archived executions, and the
    archivist role on PostgreSQL (docs/ROLES.md).
    """

    async def command() -> tuple[ReapReport | None, ArchiveResult | None, bool]:
        if (archive_before is None) != (to is None):
            raise errors.ValidationError("--archive-before and --to go together")
        if to is not None and not to.strip():
            raise errors.ValidationError("--to is empty: give the archive's directory")
        stale = (
            parse_duration(stale_after, "--stale-after")
            if stale_after is not None
            else None
        )
        if stale_after is None and pending_after is None and archive_before is None:
            # The bare `cleanup` (README, "Command line"): fail stale runs, with the configured timeout.
            stale = timedelta(
                seconds=StoreSettings.from_environment().stale_after_seconds
            )
        pending = (
            parse_duration(pending_after, "--pending-after")
            if pending_after is not None
            else None
        )
        cutoff = (
            parse_time(archive_before, "--archive-before")
            if archive_before is not None
            else None
        )
        async with EventStore.open(url) as store:
            report = None
            if stale is not None or pending is not None:
                report = await reap(store, stale_after=stale, pending_after=pending)
            archived = None
            if cutoff is not None and to is not None:
                archived = await store.audit.archive(
                    finished_before=cutoff, directory=Path(to)
                )
        return report, archived, cutoff is not None

    report, archived, archiving = run(command, debug=debug)
    if json_output:
        print_json(_as_json(report, archived, archiving=archiving))
        return
    if report is not None:
        for execution_id in report.stale:
            stdout.print(safe(f"failed stale execution {execution_id}"))
        for execution_id in report.expired_pending:
            stdout.print(safe(f"failed expired pending execution {execution_id}"))
        stdout.print(
            f"cleanup: {len(report.stale)} stale and {len(report.expired_pending)} "
            "expired pending executions failed"
        )
    if archived is not None:
        # The path is the user's --to: `[/x]` in it is not markup.
        stdout.print(
            safe(
                f"archived {len(archived.manifest.streams)} executions "
                f"({archived.manifest.events} events) to {archived.data_path}; "
                f"receipt at position {archived.receipt_position}"
            )
        )
    elif archiving:
        stdout.print("archive: no execution finished before that time")


def _as_json(
    report: ReapReport | None, archived: ArchiveResult | None, *, archiving: bool
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if report is not None:
        result["stale_failed"] = [str(i) for i in report.stale]
        result["pending_failed"] = [str(i) for i in report.expired_pending]
    if archiving:
        result["archive"] = (
            None
            if archived is None
            else {
                "file": str(archived.data_path),
                "manifest": str(archived.manifest_path),
                "file_sha256": archived.manifest.file_sha256,
                "executions": [str(s.stream_id) for s in archived.manifest.streams],
                "events": archived.manifest.events,
                "receipt_position": archived.receipt_position,
            }
        )
    return result
