"""Attach the gateway's observability to an app: /metrics, request metrics, access log, tracing."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from signing_gateway.api.routes import add_routes
from signing_gateway.observability import exposition
from signing_gateway.observability.counter_series import start_traffic_counters
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware, template_of
from signing_gateway.observability.tracing_setup import build_tracer_if_enabled
from signing_gateway.settings import ObservabilitySettings

#: FastAPI's own OpenTelemetry hooks, switched off. They start whenever a process-wide provider
#: exists, whatever the gateway's settings say, would duplicate the request span and metrics
#: kept here, and would ship validation failures (which may quote personal data) to any
#: configured OTel log provider. The gateway's spans come from `tracing.py` alone.
FASTAPI_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


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
