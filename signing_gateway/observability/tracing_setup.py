"""Tracing's set-up from the settings: whether it can start, and its tracer.

Apart from the app's instrumentation (`instrument`) so that the check before anything starts
(`start_up_checks`) needs neither FastAPI nor the app's routes. OpenTelemetry itself is
imported only when tracing is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from signing_gateway.settings import ObservabilitySettings

if TYPE_CHECKING:
    from signing_gateway.observability.tracing import GatewayTracer


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
