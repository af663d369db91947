"""The request span of a request that ended without an answer: no status code recorded."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Message, Receive, Scope, Send

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware
from signing_gateway.observability.tracing import GatewayTracer


async def _receive() -> Message:
    return {"type": "http.disconnect"}


async def _send(message: Message) -> None:
    pass


async def test_a_request_cancelled_before_its_answer_has_no_status_code_on_its_span():
    """Nothing was sent, so the span says no `http.response.status_code` (not a status 0)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = GatewayTracer(provider.get_tracer("test"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    middleware = RequestMetricsMiddleware(
        app, metrics=GatewayMetrics(), tracer=tracer, access_log_enabled=False
    )
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [], "state": {}}
    with pytest.raises(asyncio.CancelledError):
        await middleware(scope, _receive, _send)
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST unmatched"
    assert "http.response.status_code" not in dict(span.attributes or {})
