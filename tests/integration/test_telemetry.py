"""Metrics and spans with the names of docs/OBSERVABILITY.md, read back through the SDK's in-memory readers.

The OpenTelemetry SDK lets a process set its global providers once: this
module sets them the first time it needs them, and every test reads the
change in cumulative values its own work made.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventstore import ExecutionStatus, InvalidTransition
from projections import Projector
from tests.helpers import execution_in, wait_for_horizon

if TYPE_CHECKING:
    from pathlib import Path

    from eventstore import EventStore
    from tests.helpers import References

_READERS: list[tuple[InMemoryMetricReader, InMemorySpanExporter]] = []


@pytest.fixture
def telemetry() -> tuple[InMemoryMetricReader, InMemorySpanExporter]:
    """The in-memory readers on the process's global providers (set once)."""
    if not _READERS:
        reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer)
        _READERS.append((reader, spans))
    reader, spans = _READERS[0]
    spans.clear()
    return reader, spans


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _sums(
    reader: InMemoryMetricReader, name: str, *keys: str
) -> Counter[tuple[Any, ...]]:
    totals: Counter[tuple[Any, ...]] = Counter()
    for point in _points(reader, name):
        totals[tuple(point.attributes.get(key) for key in keys)] += point.value
    return totals


async def test_commands_appends_and_their_spans(
    store: EventStore,
    refs: References,
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    reader, spans = telemetry
    commands = _sums(reader, "eventstore.commands", "command", "outcome")
    appended = _sums(reader, "eventstore.events.appended", "event.type")
    durations = sum(p.count for p in _points(reader, "eventstore.append.duration"))

    run = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    with pytest.raises(InvalidTransition):
        await store.executions.start(run, worker_id="late")

    commands_now = _sums(reader, "eventstore.commands", "command", "outcome")
    assert commands_now - commands == Counter(
        {
            ("create", "ok"): 1,
            ("start", "ok"): 1,
            ("complete", "ok"): 1,
            ("start", "InvalidTransition"): 1,
        }
    )
    appended_now = _sums(reader, "eventstore.events.appended", "event.type")
    assert appended_now - appended == Counter(
        {
            ("ExecutionCreated",): 1,
            ("ExecutionStarted",): 1,
            ("ExecutionCompleted",): 1,
        }
    )
    histogram = _points(reader, "eventstore.append.duration")
    assert sum(p.count for p in histogram) - durations == 3
    assert all(p.min >= 0 for p in histogram)

    by_name = [
        (s.name, (s.attributes or {})["execution.id"])
        for s in spans.get_finished_spans()
    ]
    assert by_name == [
        ("eventstore.create", str(run)),
        ("eventstore.start", str(run)),
        ("eventstore.complete", str(run)),
        ("eventstore.start", str(run)),
    ]
    assert not spans.get_finished_spans()[-1].status.is_ok


async def test_projector_batches_and_lag_per_slot(
    store: EventStore,
    refs: References,
    telemetry: tuple[InMemoryMetricReader, InMemorySpanExporter],
) -> None:
    reader, spans = telemetry
    for _ in range(2):
        await execution_in(store, refs, ExecutionStatus.COMPLETED)  # 6 events
    await wait_for_horizon(store)  # PostgreSQL: no older transaction hides them
    projector = Projector(store, batch_size=2)

    await projector.run_once()

    def lag(name: str) -> Any:
        (point,) = [
            p
            for p in _points(reader, name)
            if p.attributes == {"projection.slot": "executions"}
        ]
        return point.value

    assert lag("eventstore.projector.lag.events") == 4
    assert lag("eventstore.projector.lag.seconds") >= 0
    await projector.run_until_caught_up()
    await projector.aclose()
    assert lag("eventstore.projector.lag.events") == 0
    batches = [s for s in spans.get_finished_spans() if s.name.endswith(".batch")]
    # Each full batch doubles the next one (up to ten times the batch size).
    assert [(s.attributes or {})["event.count"] for s in batches][:3] == [2, 4, 0]
    assert {(s.attributes or {})["projection.slot"] for s in batches} == {"executions"}


def test_without_the_extra_nothing_is_recorded_and_nothing_is_wrapped(
    tmp_path: Path,
) -> None:
    script = f"""
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
from eventstore import EventStore, telemetry
from eventstore.executions import ExecutionService

async def main():
    async with EventStore.open("sqlite:///{tmp_path / "store.db"}") as store:
        await store.migrate()
        thread = await store.threads.create(title="t")
        message = await store.messages.create(thread_id=thread.id, role="user", content="c")
        graph = await store.graphs.create(name="g", version="1", definition={{}})
        run = await store.executions.create(message_id=message.id, graph_id=graph.id)
        await store.executions.start(run, worker_id="w")
    assert telemetry.TELEMETRY is None
    assert not hasattr(ExecutionService.start, "__wrapped__")
    print("ok")

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_with_the_api_but_no_sdk_nothing_is_recorded_until_one_is_installed(
    tmp_path: Path,
) -> None:
    """Another library brought the API in: no-op spans are skipped until an SDK comes."""
    script = f"""
import asyncio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from eventstore import EventStore
from eventstore.telemetry import TELEMETRY

calls = []
real_command = TELEMETRY.command
def command(name, execution_id):
    calls.append(name)
    return real_command(name, execution_id)
TELEMETRY.command = command

async def main():
    async with EventStore.open("sqlite:///{tmp_path / "store.db"}") as store:
        await store.migrate()
        thread = await store.threads.create(title="t")
        message = await store.messages.create(thread_id=thread.id, role="user", content="c")
        graph = await store.graphs.create(name="g", version="1", definition={{}})
        run = await store.executions.create(message_id=message.id, graph_id=graph.id)
        assert (TELEMETRY.metering(), TELEMETRY.tracing(), calls) == (False, False, [])

        reader, spans = InMemoryMetricReader(), InMemorySpanExporter()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer)
        await store.executions.start(run, worker_id="w")
    assert (TELEMETRY.metering(), TELEMETRY.tracing(), calls) == (True, True, ["start"])
    assert [span.name for span in spans.get_finished_spans()] == ["eventstore.start"]
    names = {{
        metric.name
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }}
    assert {{"eventstore.commands", "eventstore.events.appended"}} <= names, names
    print("ok")

asyncio.run(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
