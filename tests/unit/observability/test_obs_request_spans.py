"""The request span: no status code when no answer was delivered; its ids in the request's lines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Message, Receive, Scope, Send

from signing_gateway.observability.context import ANSWER_WATCHER_KEY
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware
from signing_gateway.observability.tracing import GatewayTracer
from tests.support.logs import logged_as_written


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


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The records logged meanwhile, as written."""
    with logged_as_written() as written:
        yield written


class _LoggingWatcher:
    """An `AnswerWatcher` that logs what it is told, as an issuance's audit record does."""

    def answered(self, status: int | None) -> None:
        logging.getLogger("signing_gateway.test").warning("told", extra={"told": status})


async def _serve_logging(tracer: GatewayTracer) -> None:
    """One request through the middleware, its app and its watcher each writing a line."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ANSWER_WATCHER_KEY] = _LoggingWatcher()
        logging.getLogger("signing_gateway.test").warning("in the app")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = RequestMetricsMiddleware(app, metrics=GatewayMetrics(), tracer=tracer)
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "state": {}}
    await middleware(scope, _receive, _send)
    logging.getLogger("signing_gateway.test").warning("after")


async def test_the_lines_written_as_the_request_ends_still_carry_its_span_ids(lines):
    """The access line and the watcher's line come as the request ends: before its span does.

    The line written after the request, in the same task, carries none.
    """
    tracer, exporter = _tracer()
    await _serve_logging(tracer)
    (span,) = exporter.get_finished_spans()
    ids = (trace.format_trace_id(span.context.trace_id), trace.format_span_id(span.context.span_id))
    written = {r["event"]: (r.get("trace_id"), r.get("span_id")) for r in lines()}
    assert written == {"in the app": ids, "told": ids, "request": ids, "after": (None, None)}


async def test_a_tracer_recording_nothing_leaves_the_lines_without_ids(lines):
    """A provider whose spans have no valid context (a no-op one): no ids, and no failure."""
    await _serve_logging(GatewayTracer(trace.NoOpTracer()))
    written = lines()
    assert {r["event"] for r in written} == {"in the app", "told", "request", "after"}
    assert not [r for r in written if "trace_id" in r or "span_id" in r]
