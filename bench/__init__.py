"""Benchmarks of eventstore; see bench/README.md (`python -m bench` is bench.append).

BENCH_OTEL picks how the store's OpenTelemetry instrumentation runs; it is read
here, before anything imports eventstore (the store decides once, at import):
absent (as if the otel extra were not installed), api (the default: the API, no
SDK, no-op instruments) or sdk (an SDK recording every metric and span in memory).
"""

from __future__ import annotations

import os
import sys

_OTEL = os.environ.get("BENCH_OTEL", "api")
if _OTEL == "absent":
    sys.modules["opentelemetry"] = None  # type: ignore[assignment]
elif _OTEL == "sdk":
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
        InMemorySpanExporter,
    )

    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    _tracer = TracerProvider()
    _tracer.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(_tracer)
elif _OTEL != "api":
    raise SystemExit(f"BENCH_OTEL={_OTEL!r}: absent, api or sdk")
