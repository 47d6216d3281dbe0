"""One execution's timeline as a self-contained HTML page (`eventstore audit --html`).

`render_timeline` is pure: events and their fold in, HTML text out (no clock,
no database), so the same prefix of a stream always gives the same page.
The page is a Gantt-like chart of CSS bars on a time axis that starts at the
earliest ``occurred_at``: the queue (created -> started), the run (started ->
terminal), one bar per ``ExecutionProgressed`` step (from the previous step,
or the start, to the step's ``occurred_at``), and markers for cancellation
requests and the terminal event; then the state's durations and metrics, the
result or error, and the events themselves. Event data is user content: the
template is rendered with autoescaping on and nothing is marked safe.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Final

import jinja2

from eventstore.audit.reports.formatting import (
    format_duration,
    format_number,
    metric_pairs,
    preview,
)
from eventstore.labels import describe_change

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventstore.events.envelope import RecordedEvent
    from eventstore.fold import ExecutionState

TEMPLATE: Final = "timeline.html.j2"
TERMINAL_TYPES: Final = frozenset(
    {"ExecutionCompleted", "ExecutionFailed", "ExecutionCancelled"}
)
_ONE_MS: Final = timedelta(milliseconds=1)
_TICKS: Final = 6  # about this many labels on the time axis


@dataclass(frozen=True)
class Row:
    """One row of the chart: a bar (a span of time) or a marker (a moment)."""

    label: str
    kind: str  # the CSS class: queue, run, step, cancel or a terminal status
    offset_ms: int  # where it starts, from the start of the axis
    duration_ms: int | None  # None for a marker
    left: str  # percent of the axis, formatted for a style attribute
    width: str
    is_open: bool  # still going at the report's moment
    at: str  # the moment it ends (a marker: happens), UTC
    note: str = ""
    metrics: tuple[tuple[str, str], ...] = ()
    detail: str | None = None
    version: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class Tick:
    """A label on the time axis."""

    left: str
    label: str


@dataclass(frozen=True)
class EventLine:
    """One event in the table under the chart."""

    position: int
    version: int
    type: str
    occurred_at: str
    recorded_at: str
    offset: str
    actor: str


def render_timeline(
    events: Sequence[RecordedEvent],
    state: ExecutionState | None,
    *,
    execution_id: UUID | str,
    as_of: str | None = None,
    graph: str | None = None,
    chain: str | None = None,
    live_url: str | None = None,
    home_url: str | None = None,
) -> str:
    """The HTML page of one execution's timeline.

    Args:
        events: the stream's events in version order (upcast), possibly a
            prefix of it (the report is then of that moment).
        state: the fold of exactly those events; None when there are none.
        execution_id: the execution's id (the title when there is no state).
        as_of: how the moment was given (``--as-of``), shown on the page;
            None for the whole stream.
        graph: the graph's name and version, shown beside its id.
        chain: what checking the stream's hash chain found ("verified: ...",
            "does not verify: ..."); None: not checked.
        live_url: the console's: a server-sent event stream of the run's
            next events; the page then re-reads itself on each one.
        home_url: the console's: the page to go back to.

    Returns:
        A complete HTML document with no external assets, and no scripts
        unless `live_url` is given.
    """
    return _template().render(
        execution_id=str(execution_id),
        as_of=as_of,
        state=state,
        graph=graph,
        chain=chain,
        inputs=None if state is None else preview(state.inputs),
        live_url=live_url,
        home_url=home_url,
        terminal_types=sorted(TERMINAL_TYPES),
        **_chart(events, state),
        summary=_summary(state),
        outcome=_outcome(state),
        event_lines=_event_lines(events),
    )


@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        # importlib.resources finds the template in a wheel or a zip import too.
        loader=jinja2.FunctionLoader(
            lambda name: resources.files(__package__).joinpath(name).read_text("utf-8")
        ),
        autoescape=True,  # event data is user content
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["duration"] = format_duration
    return environment.get_template(TEMPLATE)


def _chart(
    events: Sequence[RecordedEvent], state: ExecutionState | None
) -> dict[str, object]:
    if state is None or not events:
        return {"rows": [], "ticks": [], "span": "", "markers": [], "origin": ""}
    # Producer clocks may disagree: the axis covers every occurred_at.
    moments = [event.occurred_at for event in events]
    origin, latest = min(moments), max(moments)
    span_ms = max(_ms(origin, latest), 1)

    def row(
        label: str,
        kind: str,
        start: datetime,
        end: datetime | None,
        *,
        is_open: bool = False,
        note: str = "",
        metrics: object = None,
        detail: object = None,
        event: RecordedEvent | None = None,
    ) -> Row:
        offset = _ms(origin, start)
        duration = None if end is None else _ms(start, end)
        left = _clamp(offset / span_ms * 100)
        width = 0.0 if duration is None else _clamp(duration / span_ms * 100)
        return Row(
            label=label,
            kind=kind,
            offset_ms=offset,
            duration_ms=duration,
            left=f"{left:.3f}",
            width=f"{min(width, 100 - left):.3f}",
            is_open=is_open,
            at=_when(end or start),
            note=note,
            metrics=metric_pairs(metrics),
            detail=preview(detail),
            version=None if event is None else event.version,
            position=None if event is None else event.position,
        )

    rows: list[Row] = []
    # Failed or cancelled while pending: the queue ends with the execution.
    queue_end = state.started_at or state.finished_at
    never_started = state.started_at is None and state.finished_at is not None
    rows.append(
        row(
            "queue (never started)" if never_started else "queue",
            "queue",
            state.created_at,
            queue_end or latest,
            is_open=queue_end is None,
        )
    )
    if state.started_at is not None:
        rows.append(
            row(
                f"run ({state.worker_id})" if state.worker_id else "run",
                "run",
                state.started_at,
                state.finished_at or latest,
                is_open=state.finished_at is None,
            )
        )
    markers: list[Row] = []
    step_start = state.started_at or state.created_at
    for event in events:
        data = event.data
        if event.type == "ExecutionProgressed":
            rows.append(
                row(
                    f"step {data.get('step')}",
                    "step",
                    step_start,
                    event.occurred_at,
                    metrics=data.get("metrics"),
                    detail=data.get("detail"),
                    event=event,
                )
            )
            step_start = event.occurred_at
        elif event.type == "ExecutionLabelled":
            rows.append(
                row(
                    "labelled",
                    "label",
                    event.occurred_at,
                    None,
                    note=describe_change(data),
                    event=event,
                )
            )
        elif event.type == "ExecutionCancellationRequested":
            by, reason = data.get("requested_by"), data.get("reason")
            note = [f"by {by}"] if by else []
            note += [f"reason: {reason}"] if reason else []
            marker = row(
                "cancellation requested",
                "cancel",
                event.occurred_at,
                None,
                note=", ".join(note),
                event=event,
            )
            rows.append(marker)
            markers.append(marker)
        elif event.type in TERMINAL_TYPES:
            marker = row(
                state.status.value,
                state.status.value,
                event.occurred_at,
                None,
                metrics=data.get("metrics"),
                event=event,
            )
            rows.append(marker)
            markers.append(marker)
    return {
        "rows": rows,
        "ticks": _ticks(span_ms),
        "span": format_duration(span_ms),
        "markers": markers,
        "origin": _when(origin),
    }


def _summary(state: ExecutionState | None) -> list[tuple[str, str]]:
    """The state's durations and usage, as label and value pairs."""
    if state is None:
        return []

    def duration(ms: int | None) -> str:
        if ms is None:
            return "-"
        text = format_duration(ms)
        return text if text.endswith(" ms") else f"{text} ({ms} ms)"

    metrics = dict(state.metrics)
    pairs = [
        ("queue_ms", duration(state.queue_ms)),
        ("run_ms", duration(state.run_ms)),
        ("total_ms", duration(state.total_ms)),
        ("steps_completed", str(state.steps_completed)),
    ]
    prompt = metrics.pop("prompt_tokens", None)
    completion = metrics.pop("completion_tokens", None)
    if prompt is not None or completion is not None:
        pairs += [
            ("tokens", format_number((prompt or 0) + (completion or 0))),
            ("prompt_tokens", "-" if prompt is None else format_number(prompt)),
            (
                "completion_tokens",
                "-" if completion is None else format_number(completion),
            ),
        ]
    cost = metrics.pop("cost_usd", None)
    if cost is not None:
        pairs.append(("cost_usd", f"${format_number(cost)}"))
    pairs += sorted((name, format_number(value)) for name, value in metrics.items())
    return pairs


def _outcome(state: ExecutionState | None) -> dict[str, object] | None:
    """What the execution ended with: its result or its error."""
    if state is None or not state.is_terminal:
        return None
    error = state.error or {}
    return {
        "at": _when(state.finished_at) if state.finished_at else "",
        "result": preview(state.result) if state.status.value == "completed" else None,
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "retryable": error.get("retryable"),
        "traceback": preview(error.get("traceback"), text=True),
    }


def _event_lines(events: Sequence[RecordedEvent]) -> list[EventLine]:
    if not events:
        return []
    origin = min(event.occurred_at for event in events)
    return [
        EventLine(
            position=event.position,
            version=event.version,
            type=event.type,
            occurred_at=_when(event.occurred_at),
            recorded_at=_when(event.recorded_at),
            offset=f"+{format_duration(_ms(origin, event.occurred_at))}",
            actor=event.metadata.actor or "",
        )
        for event in events
    ]


def _ticks(span_ms: int) -> list[Tick]:
    """Axis labels at a round step (1, 2 or 5 times a power of ten ms)."""
    raw = span_ms / _TICKS
    power = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [
        Tick(left=f"{at / span_ms * 100:.3f}", label=format_duration(at))
        for at in range(0, span_ms + 1, step)
    ]


def _ms(start: datetime, end: datetime) -> int:
    return (end - start) // _ONE_MS


def _clamp(percent: float) -> float:
    return min(max(percent, 0.0), 100.0)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
