"""OpenTelemetry metrics and spans (docs/OBSERVABILITY.md), recorded through the OpenTelemetry API.

With the `eventstore[otel]` extra installed, the store records:

- `eventstore.append.duration` (histogram, seconds): each append's round trip;
- `eventstore.events.appended` (counter, attribute `event.type`);
- `eventstore.commands` (counter, attributes `command`, `outcome`: `ok` or
  the error's class name);
- `eventstore.projector.lag.events` and `eventstore.projector.lag.seconds`
  (gauges, attribute `projection.slot`): how far each slot this process
  leads is behind the log, as of its last batch;
- a span per lifecycle command (`eventstore.<command>`, attribute
  `execution.id`) and per projector batch (`eventstore.projector.batch`,
  attributes `projection.slot`, `event.count`).

The API records nothing until the application installs an SDK (a
`MeterProvider`, a `TracerProvider`); `eventstore project --metrics-port`
installs one that serves Prometheus text. Without the extra, `TELEMETRY` is
None and the hot paths pay one `is None` test. With the API but no SDK
(another library brought the API in), the store asks whether a provider
is installed and skips its spans, counts and lag queries until one is: a
no-op span still costs a lifecycle command about 10 % of its CPU
(bench/ab/otel_cost.md).
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from opentelemetry.metrics import CallbackOptions, Observation

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # the extra is not installed
    otel_metrics = None  # type: ignore[assignment]
    otel_trace = None  # type: ignore[assignment]

__all__ = ["COMMANDS", "SCOPE", "TELEMETRY", "Telemetry", "instrumented"]

SCOPE: Final = "eventstore"
# Where the API's proxy and no-op providers are defined; an SDK's are elsewhere.
API_MODULES: Final = ("opentelemetry.metrics", "opentelemetry.trace")


def _placeholder(provider: object) -> bool:
    """Whether `provider` is the API's own proxy or no-op: no SDK is installed."""
    return type(provider).__module__.startswith(API_MODULES)


class Telemetry:
    """The store's instruments, created once per process on the global providers."""

    def __init__(self) -> None:
        assert otel_metrics is not None  # noqa: S101 - built only with the API
        assert otel_trace is not None  # noqa: S101
        # A global provider is set once and never unset: once seen, kept.
        self._metering = False
        self._tracing = False
        meter = otel_metrics.get_meter(SCOPE)
        self.tracer = otel_trace.get_tracer(SCOPE)
        self.append_duration = meter.create_histogram(
            "eventstore.append.duration", unit="s", description="append round trips"
        )
        self.events_appended = meter.create_counter(
            "eventstore.events.appended", unit="{event}", description="events appended"
        )
        self.commands = meter.create_counter(
            "eventstore.commands", unit="{command}", description="lifecycle commands"
        )
        # slot -> (events behind, seconds behind), as of its last batch here.
        self.lags: dict[str, tuple[int, float]] = {}
        meter.create_observable_gauge(
            "eventstore.projector.lag.events",
            callbacks=[self._lag_events],
            unit="{event}",
            description="events appended but not yet folded, per projection slot",
        )
        meter.create_observable_gauge(
            "eventstore.projector.lag.seconds",
            callbacks=[self._lag_seconds],
            unit="s",
            description="age of the oldest event not yet folded, per projection slot",
        )

    def metering(self) -> bool:
        """Whether an SDK's meter provider is installed (else metrics go nowhere)."""
        if not self._metering:
            assert otel_metrics is not None  # noqa: S101
            self._metering = not _placeholder(otel_metrics.get_meter_provider())
        return self._metering

    def tracing(self) -> bool:
        """Whether an SDK's tracer provider is installed (else spans go nowhere)."""
        if not self._tracing:
            assert otel_trace is not None  # noqa: S101
            self._tracing = not _placeholder(otel_trace.get_tracer_provider())
        return self._tracing

    def appended(self, event_types: Sequence[str], seconds: float) -> None:
        """One append of these events took `seconds`."""
        self.append_duration.record(seconds)
        for event_type in event_types:
            self.events_appended.add(1, {"event.type": event_type})

    @contextlib.contextmanager
    def command(self, name: str, execution_id: object) -> Iterator[Any]:
        """A lifecycle command: its span (yielded) and its count, by outcome."""
        outcome = "ok"
        attributes = {} if execution_id is None else {"execution.id": str(execution_id)}
        with self.tracer.start_as_current_span(
            f"eventstore.{name}", attributes=attributes
        ) as span:
            try:
                yield span
            except Exception as exc:
                outcome = type(exc).__name__
                raise
            finally:
                self.commands.add(1, {"command": name, "outcome": outcome})

    def batch_span(self, slot: str) -> Any:
        """The span of one projector batch of `slot` (set `event.count` on it)."""
        return self.tracer.start_as_current_span(
            "eventstore.projector.batch", attributes={"projection.slot": slot}
        )

    def lag(self, slot: str, events: int, seconds: float) -> None:
        """How far behind `slot` is after its last batch here."""
        self.lags[slot] = (events, seconds)

    def _lag_events(self, _options: CallbackOptions) -> list[Observation]:
        assert otel_metrics is not None  # noqa: S101
        return [
            otel_metrics.Observation(events, {"projection.slot": slot})
            for slot, (events, _) in self.lags.items()
        ]

    def _lag_seconds(self, _options: CallbackOptions) -> list[Observation]:
        assert otel_metrics is not None  # noqa: S101
        return [
            otel_metrics.Observation(seconds, {"projection.slot": slot})
            for slot, (_, seconds) in self.lags.items()
        ]


TELEMETRY: Final[Telemetry | None] = Telemetry() if otel_metrics is not None else None
"""The process's instruments; None without the `otel` extra."""

clock: Final = time.perf_counter
COMMANDS: Final = (
    "create",
    "start",
    "progress",
    "complete",
    "fail",
    "request_cancel",
    "label",
    "cancel",
    "retry",
    "heartbeat",
)
"""The lifecycle commands of `ExecutionService`, as metrics and spans name them."""
_C = TypeVar("_C", bound=type)


def instrumented(cls: _C) -> _C:
    """`cls` with its lifecycle commands counted and traced; as it is without the extra."""
    if TELEMETRY is None:
        return cls
    for name in COMMANDS:
        setattr(cls, name, _traced(TELEMETRY, name, getattr(cls, name)))
    return cls


def _traced(
    telemetry: Telemetry, name: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def command(self: object, *args: Any, **kwargs: Any) -> Any:
        if not (telemetry.tracing() or telemetry.metering()):
            return await method(self, *args, **kwargs)
        execution_id = args[0] if args else kwargs.get("execution_id")
        with telemetry.command(name, execution_id) as span:
            result = await method(self, *args, **kwargs)
            if execution_id is None:  # create: the id is its result
                span.set_attribute("execution.id", str(result))
            return result

    return command
