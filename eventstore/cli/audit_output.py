"""What `eventstore audit` prints or writes: timelines, states, statuses, archives."""

from __future__ import annotations

import gzip
from collections import Counter
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from eventstore import ExecutionStatus, errors
from eventstore.audit import (
    describe_labels,
    event_line,
    is_execution_stream,
    render_timeline,
)
from eventstore.cli.app import (
    EXIT_USAGE,
    debug_traceback,
    error_line,
    print_json,
    stdout,
)
from eventstore.cli.display import clean, safe

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from eventstore import EventStore, ExecutionState, RecordedEvent
    from eventstore.audit import AsOf, StatusAt, Timeline, VerifiedArchive


class AuditFound:
    """What the audit command found, for the printing half."""

    @classmethod
    def of(
        cls, timeline: Timeline, *, archive: VerifiedArchive | None = None
    ) -> AuditFound:
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
        # For --html: the graph's name and version, what the chain check found.
        self.graph: str | None = None
        self.chain: str | None = None


async def chain_status(store: EventStore, stream_id: UUID) -> str:
    """What checking the stream's hash chain finds, as a page shows it."""
    try:
        await store.audit.verify_stream(stream_id)
    except errors.RecordAltered as exc:
        return f"does not verify: {exc}"
    return "verified"


def report_execution(
    execution_id: str,
    result: AuditFound,
    *,
    verified: bool,
    html: Path | None,
    export: Path | None,
    json_output: bool,
    debug: bool,
) -> None:
    """One stream's timeline and state: printed, as JSON, or written to files."""
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
            events,
            state,
            execution_id=execution_id,
            as_of=_moment_text(moment),
            graph=result.graph,
            chain=result.chain,
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
    if not events or is_execution_stream(events):  # a system stream has no state
        _print_state(state)


def report_statuses(
    statuses: list[StatusAt], moment: AsOf | None, *, json_output: bool
) -> None:
    """Every execution's status at a moment: a table, or JSON."""
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


def archive_line(verified: VerifiedArchive) -> str:
    """One line naming a verified archive and its receipt."""
    manifest = verified.manifest
    return (
        f"archive {manifest.file} verified: {len(manifest.streams)} executions, "
        f"{manifest.events} events, sha256 {manifest.file_sha256}, receipt at "
        f"position {verified.receipt_position}"
    )


def report_archive(verified: VerifiedArchive, *, json_output: bool) -> None:
    """A verified archive's executions and their final states: a table, or JSON."""
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
    stdout.out(clean(archive_line(verified)), highlight=False)
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
        + (f", retry of {data['retry_of']}" if data.get("retry_of") else "")
        + (f", labels {describe_labels(data)}" if data.get("labels") else ""),
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
        "ExecutionLabelled": describe_labels(data),
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
