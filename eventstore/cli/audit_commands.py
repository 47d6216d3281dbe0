"""`eventstore audit`: one execution's timeline, the store as of a moment, archives.

- ``audit ID``: the timeline and state (``--as-of``), ``--verify`` of the
  chain, ``--html`` report, ``--export`` of the stored events;
- ``audit --as-of TIME`` without an id: which executions were in which
  status then (one indexed query);
- ``audit --archive FILE [ID]``: verify an archive file against its manifest
  and its receipt in the log, then list or replay its executions.
"""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path  # typer reads the annotations at runtime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from eventstore import EventStore, errors
from eventstore.audit import StatusAt
from eventstore.audit.exporting import event_line
from eventstore.audit.reports import render_timeline
from eventstore.cli.app import (
    EXIT_USAGE,
    DebugOption,
    JsonOption,
    UrlOption,
    debug_traceback,
    error_line,
    print_json,
    run,
    stdout,
)
from eventstore.cli.display import clean, safe
from eventstore.cli.parsing import parse_as_of
from eventstore.log import as_stream_id
from eventstore.status import ExecutionStatus

if TYPE_CHECKING:
    from eventstore import ExecutionState, RecordedEvent
    from eventstore.audit import AsOf, Timeline, VerifiedArchive


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

    async def command() -> _Audit:
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
        # `audit ''` is an id that is not one, not "no id": the whole store.
        identifier = as_stream_id(execution_id) if execution_id is not None else None
        async with EventStore.open(url) as store:
            audit = store.audit
            if archive is not None:
                if identifier is None:
                    verified = await audit.verify_archive(archive)
                    return _Audit(moment=moment, archive=verified)
                verified, timeline = await audit.archived_timeline(
                    archive, identifier, as_of=moment
                )
                return _Audit.of(timeline, archive=verified)
            if identifier is None:
                statuses = await audit.statuses_as_of(moment)
                return _Audit(moment=moment, statuses=statuses)
            if verify_chain:  # first: a broken chain is named before the fold fails
                await audit.verify_stream(identifier)
            timeline = await audit.timeline(
                identifier, as_of=moment, stored=export is not None
            )
            return _Audit.of(timeline)

    result = run(command, debug=debug)
    if result.archive is not None and execution_id is None:
        _report_archive(result.archive, json_output=json_output)
        return
    if result.archive is not None and not json_output:
        stdout.out(clean(_archive_line(result.archive)), highlight=False)
    if result.statuses is not None:
        _report_statuses(result.statuses, result.moment, json_output=json_output)
        return
    assert execution_id is not None  # noqa: S101 - the other cases returned
    _report_execution(
        execution_id,
        result,
        verified=verify_chain,
        html=html,
        export=export,
        json_output=json_output,
        debug=debug,
    )


def _is_execution(events: list[RecordedEvent]) -> bool:
    return bool(events) and events[0].stream_type == "execution"


class _Audit:
    """What the audit command found, for the printing half."""

    @classmethod
    def of(
        cls, timeline: Timeline, *, archive: VerifiedArchive | None = None
    ) -> _Audit:
        """One stream's timeline, from the live log or an archive."""
        return cls(
            moment=timeline.moment,
            events=timeline.events,
            state=timeline.state,
            stored=timeline.stored,
            archive=archive,
        )

    def __init__(
        self,
        *,
        moment: AsOf | None,
        events: list[RecordedEvent] | None = None,
        state: ExecutionState | None = None,
        stored: list[RecordedEvent] | None = None,
        statuses: list[StatusAt] | None = None,
        archive: VerifiedArchive | None = None,
    ) -> None:
        self.moment = moment
        self.events = events or []
        self.state = state
        self.stored = stored or []
        self.statuses = statuses
        self.archive = archive


def _report_execution(
    execution_id: str,
    result: _Audit,
    *,
    verified: bool,
    html: Path | None,
    export: Path | None,
    json_output: bool,
    debug: bool,
) -> None:
    events, state, moment, stored = (
        result.events,
        result.state,
        result.moment,
        result.stored,
    )
    if verified and not json_output:
        stdout.print(f"hash chain verified: {len(events)} events intact")
    written: dict[str, Any] = {}
    if html is not None:
        page = render_timeline(
            events, state, execution_id=execution_id, as_of=_moment_text(moment)
        )
        _write(html, page, debug=debug)
        written["html"] = str(html)
    if export is not None:
        lines = "".join(f"{event_line(event)}\n" for event in stored)
        _write(export, lines, debug=debug)
        written["export"] = {"file": str(export), "events": len(stored)}
    if json_output:
        print_json(
            {
                "execution_id": execution_id,
                "as_of": moment.model_dump(mode="json") if moment else None,
                "events": [_event_json(event) for event in events],
                "state": state.model_dump(mode="json") if state else None,
                **written,
            }
        )
        return
    if written:
        # out(), not print(): a long path must stay on its one line.
        if html is not None:
            stdout.out(clean(f"timeline written to {html}"), highlight=False)
        if export is not None:
            stdout.out(
                clean(f"{len(stored)} events exported to {export}"), highlight=False
            )
        return
    _print_timeline(execution_id, events, moment)
    if not events or _is_execution(events):  # a system stream has no state
        _print_state(state)


def _report_statuses(
    statuses: list[StatusAt], moment: AsOf | None, *, json_output: bool
) -> None:
    if json_output:
        print_json(
            {
                "as_of": moment.model_dump(mode="json") if moment else None,
                "executions": [status.model_dump(mode="json") for status in statuses],
            }
        )
        return
    counts = Counter(status.status for status in statuses)
    summary = Table(
        title=safe(f"executions by status as of {_moment_text(moment) or 'now'}")
    )
    for name in ExecutionStatus:
        summary.add_column(name.value, justify="right")
    summary.add_row(*(str(counts[name]) for name in ExecutionStatus))
    stdout.print(summary)
    table = Table()
    for column in ("execution", "status", "since (UTC)", "version"):
        table.add_column(column, overflow="fold")
    for row in statuses:
        table.add_row(
            safe(row.execution_id),
            safe(row.status.value),
            row.since.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            str(row.version),
        )
    stdout.print(table)


def _archive_line(verified: VerifiedArchive) -> str:
    manifest = verified.manifest
    return (
        f"archive {manifest.file} verified: {len(manifest.streams)} executions, "
        f"{manifest.events} events, sha256 {manifest.file_sha256}, receipt at "
        f"position {verified.receipt_position}"
    )


def _report_archive(verified: VerifiedArchive, *, json_output: bool) -> None:
    states = verified.states()
    manifest = verified.manifest
    if json_output:
        print_json(
            {
                "archive": manifest.file,
                "file_sha256": manifest.file_sha256,
                "receipt_position": verified.receipt_position,
                "events": manifest.events,
                "executions": {
                    str(stream_id): state.model_dump(mode="json")
                    for stream_id, state in states.items()
                },
            }
        )
        return
    stdout.out(clean(_archive_line(verified)), highlight=False)
    table = Table()
    for column in ("execution", "status", "finished (UTC)", "events"):
        table.add_column(column, overflow="fold")
    counts = Counter(event.stream_id for event in verified.events)
    for stream_id, state in sorted(states.items(), key=lambda item: str(item[0])):
        finished = state.finished_at
        table.add_row(
            safe(stream_id),
            safe(state.status.value),
            finished.strftime("%Y-%m-%d %H:%M:%S") if finished else "",
            str(counts[stream_id]),
        )
    stdout.print(table)


def _moment_text(moment: AsOf | None) -> str | None:
    if moment is None:
        return None
    if moment.position is not None:
        return f"position {moment.position}"
    assert moment.time is not None  # noqa: S101 - one of the two is set
    return moment.time.isoformat()


def _write(path: Path, text: str, *, debug: bool) -> None:
    """Write a report file; a path that cannot be written is the user's error (exit 2)."""
    try:
        if path.name.endswith(".gz"):
            # mtime 0: the same events always give the same bytes.
            with (
                path.open("wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed,
            ):
                packed.write(text.encode("utf-8"))
        else:
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        if debug:
            debug_traceback(exc)
        error_line(f"cannot write {path}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None


def _event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "version": event.version,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "actor": event.metadata.actor,
        "event_id": str(event.event_id),
        "data": event.data,
        "summary": summarize(event),
    }


def summarize(event: RecordedEvent) -> str:
    """One readable line about an event."""
    data = event.data
    metrics = data.get("metrics") or {}
    usage = (
        ", ".join(f"{k}={v}" for k, v in metrics.items())
        if isinstance(metrics, dict)
        else ""
    )
    summaries = {
        "ExecutionCreated": f"attempt {data.get('attempt', 1)}"
        + (f", retry of {data['retry_of']}" if data.get("retry_of") else ""),
        "ExecutionStarted": f"worker {data.get('worker_id')}",
        "ExecutionProgressed": f"step {data.get('step')}",
        "ExecutionCompleted": "completed",
        "ExecutionFailed": (
            f"{error.get('type')}: {error.get('message')}"
            if isinstance(error := data.get("error"), dict)
            else "failed"
        ),
        "ExecutionCancellationRequested": f"reason {data.get('reason')!r}"
        + (f" by {data['requested_by']}" if data.get("requested_by") else ""),
        "ExecutionCancelled": f"reason {data.get('reason')!r}",
    }
    text = summaries.get(event.type, event.type)
    return f"{text} ({usage})" if usage else text


def _print_timeline(
    execution_id: str, events: list[RecordedEvent], moment: AsOf | None
) -> None:
    title = f"execution {execution_id}"
    if moment is not None:
        title += (
            f" as of {moment.position if moment.position is not None else moment.time}"
        )
    table = Table(title=safe(title))
    for column in (
        "position",
        "version",
        "occurred at (UTC)",
        "type",
        "actor",
        "summary",
        "+ms",
    ):
        table.add_column(column, overflow="fold")
    previous = None
    for event in events:
        delta = (
            ""
            if previous is None
            else f"{(event.occurred_at - previous).total_seconds() * 1000:.0f}"
        )
        # The type, the actor and the summary are whatever was recorded.
        table.add_row(
            str(event.position),
            str(event.version),
            event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            safe(event.type),
            safe(event.metadata.actor or ""),
            safe(summarize(event)),
            delta,
        )
        previous = event.occurred_at
    stdout.print(table)


def _print_state(state: ExecutionState | None) -> None:
    if state is None:
        stdout.print("no state at that moment: the execution did not exist yet")
        return
    table = Table(title="state", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in state.model_dump(mode="json").items():
        table.add_row(name, safe("" if value is None else value))
    stdout.print(table)
