"""The request span of a request that ended without an answer delivered: no status code."""

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


def _tracer() -> tuple[GatewayTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return GatewayTracer(provider.get_tracer("test")), exporter


async def test_a_request_cancelled_before_its_answer_has_no_status_code_on_its_span():
    """Nothing was sent, so the span says no `http.response.status_code` (not a status 0)."""
    tracer, exporter = _tracer()

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


async def test_an_answer_the_caller_left_before_has_no_status_code_on_its_span():
    """The app answered 200 after the client went away: nobody got it, so the span says none.

    As the metrics count it: `disconnected`, not a 2xx.
    """
    tracer, exporter = _tracer()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    metrics = GatewayMetrics()
    middleware = RequestMetricsMiddleware(
        app, metrics=metrics, tracer=tracer, access_log_enabled=False
    )
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [], "state": {}}
    await middleware(scope, _receive, _send)
    sent = metrics.registry.get_sample_value(
        "gateway_responses_sent_total", {"route": "unmatched", "status_class": "disconnected"}
    )
    assert sent == 1
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert "http.response.status_code" not in attributes, attributes
