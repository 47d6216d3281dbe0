"""`eventstore audit`: one execution's timeline, the store as of a moment, archives.

- ``audit ID``: the timeline and state (``--as-of``), ``--verify`` of the
  chain, ``--html`` report, ``--export`` of the stored events;
- ``audit --as-of TIME`` without an id: which executions were in which
  status then (one indexed query);
- ``audit --archive FILE [ID]``: verify an archive file against its manifest
  and its receipt in the log, then list or replay its executions.
"""

from __future__ import annotations

from pathlib import Path  # typer reads the annotations at runtime
from typing import TYPE_CHECKING, Annotated

import typer

from eventstore import EventStore, errors
from eventstore.cli.app import (
    DebugOption,
    JsonOption,
    UrlOption,
    run,
    stdout,
)
from eventstore.cli.audit_output import (
    AuditFound,
    archive_line,
    chain_status,
    report_archive,
    report_execution,
    report_statuses,
)
from eventstore.cli.display import clean
from eventstore.parsing import parse_as_of

if TYPE_CHECKING:
    from uuid import UUID


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(audit)


def audit(
    execution_id: Annotated[
        str | None,
        typer.Argument(
            help="the execution's id; without it: --as-of TIME for the whole store, "
            "or --archive FILE",
            show_default=False,
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="a position (bare integer) or an ISO 8601 time with offset "
            "(compared with recorded_at): the timeline and state at that moment; "
            "without an id, every execution's status at that moment",
        ),
    ] = None,
    url: UrlOption = None,
    *,
    verify_chain: Annotated[
        bool,
        typer.Option("--verify", help="verify the hash chain (exit 1 if it is broken)"),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="write the timeline as a self-contained HTML report to this file",
            show_default=False,
        ),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="write the stream's events as stored, one JSON line each, to this "
            "file (gzipped if it ends with .gz); check it with tools/verify_stream.py",
            show_default=False,
        ),
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            help="an archive file (or its manifest) written by `cleanup "
            "--archive-before`: verify it against its manifest and its receipt in "
            "the log, then list its executions, or replay ID from it",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """The timeline of one execution and its state (as of a moment); the store as of a moment; archives.

    With --html or --export, writes those files instead of printing the
    timeline (--json still prints it, with the files written).
    """

    async def command() -> tuple[UUID | None, AuditFound]:
        moment = parse_as_of(as_of) if as_of is not None else None
        if execution_id is None:
            if (
                (verify_chain and archive is None)
                or html is not None
                or export is not None
            ):
                raise errors.ValidationError(
                    "--verify (of the log), --html and --export need an execution id"
                )
            if archive is None and moment is None:
                raise errors.ValidationError(
                    "give an execution id, --as-of TIME for the whole store, "
                    "or --archive FILE"
                )
        async with EventStore.open(url) as store:
            # `audit ''` is an id that is not one, not "no id": the whole store.
            identifier = (
                await store.expand_id(execution_id)
                if execution_id is not None
                else None
            )
            audit = store.audit
            if archive is not None:
                if identifier is None:
                    verified = await audit.verify_archive(archive)
                    return identifier, AuditFound(moment=moment, archive=verified)
                verified, timeline = await audit.archived_timeline(
                    archive, identifier, as_of=moment
                )
                return identifier, AuditFound.of(timeline, archive=verified)
            if identifier is None:
                statuses = await audit.statuses_as_of(moment)
                return identifier, AuditFound(moment=moment, statuses=statuses)
            if verify_chain:  # first: a broken chain is named before the fold fails
                await audit.verify_stream(identifier)
                chain: str | None = "verified"
            elif html is not None:  # the page says whether it verified
                chain = await chain_status(store, identifier)
            else:
                chain = None
            timeline = await audit.timeline(
                identifier, as_of=moment, stored=export is not None
            )
            found = AuditFound.of(timeline)
            if html is not None and timeline.state is not None:
                graph = await store.graphs.get(timeline.state.graph_id)
                found.graph = f"{graph.name} v{graph.version}"
                found.chain = chain
            return identifier, found

    identifier, result = run(command, debug=debug)
    if result.archive is not None and execution_id is None:
        report_archive(result.archive, json_output=json_output)
        return
    if result.archive is not None and not json_output:
        stdout.out(clean(archive_line(result.archive)), highlight=False)
    if result.statuses is not None:
        report_statuses(result.statuses, result.moment, json_output=json_output)
        return
    assert identifier is not None  # noqa: S101 - the other cases returned
    report_execution(
        str(identifier),
        result,
        verified=verify_chain,
        html=html,
        export=export,
        json_output=json_output,
        debug=debug,
    )
