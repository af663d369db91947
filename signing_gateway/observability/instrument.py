"""Attach the gateway's observability to an app: /metrics, request metrics, access log, tracing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from signing_gateway.api.routes import add_routes
from signing_gateway.observability import exposition
from signing_gateway.observability.counter_series import start_traffic_counters
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware, template_of
from signing_gateway.settings import ObservabilitySettings

if TYPE_CHECKING:
    from signing_gateway.observability.tracing import GatewayTracer


#: FastAPI's own OpenTelemetry hooks, switched off. They start whenever a process-wide provider
#: exists, whatever the gateway's settings say, would duplicate the request span and metrics
#: kept here, and would ship validation failures (which may quote personal data) to any
#: configured OTel log provider. The gateway's spans come from `tracing.py` alone.
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class TracingUnavailableError(RuntimeError):
    """Tracing was switched on, no tracer provider is configured and the `otel` extra is missing."""


@contextlib.contextmanager
def _otel_extra_required() -> Iterator[None]:
    """Turn a missing OpenTelemetry package into TracingUnavailableError, naming the package."""
    try:
        yield
    except ImportError as exc:
        missing = exc.name or "OpenTelemetry"
        raise TracingUnavailableError(
            f"tracing needs the otel extra ({missing} is not installed): "
            "pip install 'signing-gateway[otel]'"
        ) from exc


def check_tracing_available(settings: ObservabilitySettings) -> None:
    """Raise now what `build_tracer_if_enabled` would raise, without building a tracer.

    For a process that checks the settings before it starts the workers that build the app.

    Raises:
        TracingUnavailableError: as `build_tracer_if_enabled`.
    """
    if not settings.tracing_enabled:
        return
    with _otel_extra_required():
        from signing_gateway.observability.tracing import (  # noqa: PLC0415 - optional
            check_tracing_support,
        )

        check_tracing_support()


def build_tracer_if_enabled(settings: ObservabilitySettings) -> GatewayTracer | None:
    """The tracer when tracing is on; OpenTelemetry is imported only then.

    Raises:
        TracingUnavailableError: tracing is on, the process configured no tracer provider of
            its own and the `otel` extra (SDK, OTLP exporter) is not installed; failing at
            start-up beats running without the traces the operator asked for.
    """
    if not settings.tracing_enabled:
        return None
    with _otel_extra_required():
        from signing_gateway.observability.tracing import build_tracer  # noqa: PLC0415 - optional

        return build_tracer(settings.service_name)


def instrument_app(app: FastAPI, settings: ObservabilitySettings, metrics: GatewayMetrics) -> None:
    """Serve /metrics, wrap the app in the request-metrics middleware, start the traffic series.

    Call it after every other `add_middleware`: the middleware added last is the outermost,
    and this one must see every request, including those other middlewares answer themselves.
    And after `add_routes`: the routes there now start with their series at 0.
    """
    add_routes(app, exposition.router)
    start_traffic_counters(metrics, (template_of(route) for route in app.routes))
    app.add_middleware(
        RequestMetricsMiddleware,
        metrics=metrics,
        tracer=build_tracer_if_enabled(settings),
        access_log_enabled=settings.access_log,
    )
