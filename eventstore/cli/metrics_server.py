"""`eventstore project --metrics-port`: the process's metrics as Prometheus text on /metrics.

The OpenTelemetry SDK's Prometheus reader turns the store's instruments
(`eventstore.telemetry`) into Prometheus families, and prometheus-client's
own HTTP server serves them from a thread of its own. Both come with the
`eventstore[otel]` extra.
"""

from __future__ import annotations

from eventstore import errors


def serve_metrics(host: str, port: int) -> None:
    """Install a MeterProvider that Prometheus scrapes at http://HOST:PORT/metrics.

    Raises:
        ConfigurationError: the otel extra is not installed, or the port is
            taken or not ours to bind.
    """
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise errors.ConfigurationError(
            "--metrics-port needs the otel extra: pip install 'eventstore[otel]'"
        ) from exc
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise errors.ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
