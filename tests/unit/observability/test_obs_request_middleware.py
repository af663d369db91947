"""How the request-metrics middleware counts disconnects, cancellations, crashes and streams."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware


def _scope() -> Scope:
    return {"type": "http", "method": "POST", "path": "/x", "headers": [], "state": {}}


def _sample(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class Client:
    """The server side of one connection: what the app receives, what it sent."""

    def __init__(self, *messages: Message) -> None:
        self.inbox = list(messages)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return self.inbox.pop(0) if self.inbox else {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _respond(send: Send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _ledger_balanced(metrics: GatewayMetrics) -> bool:
    received = _sample(metrics, "gateway_requests_received_total")
    sent = sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "gateway_responses_sent"
        for s in family.samples
        if s.name == "gateway_responses_sent_total"
    )
    return received == sent == 1 and _sample(metrics, "gateway_requests_in_progress") == 0


async def test_client_gone_before_the_answer_counts_as_disconnected():
    """An app that sees http.disconnect and answers anyway is counted "disconnected"."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.disconnect"
        await _respond(send)

    client = Client()
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        _scope(), client.receive, client.send
    )
    labels = {"route": "unmatched", "status_class": "disconnected"}
    assert _sample(metrics, "gateway_responses_sent_total", **labels) == 1
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="200") == 0
    assert _ledger_balanced(metrics)


async def test_cancelled_request_counts_as_disconnected_and_propagates():
    """A request task cancelled mid-way is counted "disconnected" and the cancellation re-raised."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise asyncio.CancelledError

    client = Client()
    with pytest.raises(asyncio.CancelledError):
        await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
            _scope(), client.receive, client.send
        )
    labels = {"route": "unmatched", "status_class": "disconnected"}
    assert _sample(metrics, "gateway_responses_sent_total", **labels) == 1
    assert _ledger_balanced(metrics)


async def test_crash_before_the_answer_counts_as_500():
    """An app that raises before answering is counted as a 500 (the error middleware's answer)."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    client = Client()
    with pytest.raises(RuntimeError):
        await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
            _scope(), client.receive, client.send
        )
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="500") == 1
    assert _ledger_balanced(metrics)


async def test_app_that_never_answers_counts_as_500():
    """An app that returns without a response is counted as the 500 the server then sends."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return

    client = Client()
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        _scope(), client.receive, client.send
    )
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="500") == 1
    assert _ledger_balanced(metrics)


async def test_streamed_answer_is_counted_once_when_complete():
    """A multi-chunk body counts one response, with the status of its start message."""
    metrics = GatewayMetrics()
    seen_in_progress: list[float] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        seen_in_progress.append(_sample(metrics, "gateway_requests_in_progress"))
        await send({"type": "http.response.body", "body": b"b"})

    client = Client({"type": "http.request", "body": b""})
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        _scope(), client.receive, client.send
    )
    assert seen_in_progress == [1]
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="201") == 1
    assert [m["type"] for m in client.sent].count("http.response.body") == 2
    assert _ledger_balanced(metrics)


async def test_lifespan_and_websocket_scopes_are_not_counted():
    """Only HTTP requests enter the ledger."""
    metrics = GatewayMetrics()
    called: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope["type"])

    client = Client()
    await RequestMetricsMiddleware(app, metrics=metrics)(
        {"type": "lifespan"}, client.receive, client.send
    )
    assert called == ["lifespan"]
    assert _sample(metrics, "gateway_requests_received_total") == 0
