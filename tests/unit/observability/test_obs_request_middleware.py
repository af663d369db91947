"""How the request-metrics middleware counts disconnects, cancellations, crashes and streams."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_gateway.observability.context import (
    ANSWER_WATCHER_KEY,
    CONNECTION_KEY,
    Connection,
    current_request_id,
)
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware, status_class
from signing_gateway.observability.telemetry import telemetry_var
from signing_gateway.resilience.drain import AnswerCut, DrainController, DrainMiddleware


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


def _counted_disconnected_once(metrics: GatewayMetrics, route: str = "unmatched") -> bool:
    """The one request counted `disconnected`, under no status, the ledger balanced."""
    labels = {"route": route, "status_class": "disconnected"}
    return (
        _sample(metrics, "gateway_responses_sent_total", **labels) == 1
        and _sample(metrics, "gateway_responses_total", route=route, status="200") == 0
        and _ledger_balanced(metrics)
    )


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
    assert _counted_disconnected_once(metrics)


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


def _liveness_scope(*headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "method": "GET", "path": "/healthz", "headers": list(headers)}


async def _unreachable(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the liveness probe reached the wrapped app")


async def test_liveness_probe_is_answered_without_the_wrapped_app(caplog):
    """GET /healthz: 200 {"status":"ok"} from the outermost layer, counted, not access-logged."""
    metrics = GatewayMetrics()
    client = Client()
    with caplog.at_level("INFO", logger="signing_gateway.access"):
        await RequestMetricsMiddleware(_unreachable, metrics=metrics)(
            _liveness_scope(), client.receive, client.send
        )
    start, body = client.sent
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert len(headers[b"x-request-id"]) == 32  # minted: none was given
    assert body["body"] == b'{"status":"ok"}'
    assert not body.get("more_body", False)
    assert _sample(metrics, "gateway_responses_total", route="/healthz", status="200") == 1
    assert _sample(
        metrics, "gateway_request_duration_seconds_count", route="/healthz", status_class="2xx"
    ) == 1  # fmt: skip
    assert _ledger_balanced(metrics)
    assert not caplog.records


async def test_liveness_probe_echoes_a_safe_request_id_and_replaces_an_unsafe_one():
    """The probe's X-Request-ID follows the same rule as every other response's."""
    metrics = GatewayMetrics()
    sent_ids = []
    for given in (b"probe-42", b"bad id\x01"):
        client = Client()
        await RequestMetricsMiddleware(_unreachable, metrics=metrics)(
            _liveness_scope((b"x-request-id", given)), client.receive, client.send
        )
        sent_ids.append(dict(client.sent[0]["headers"])[b"x-request-id"])
    assert sent_ids[0] == b"probe-42"
    assert len(sent_ids[1]) == 32  # minted instead


async def test_liveness_probe_to_a_gone_client_counts_as_disconnected():
    """A send that fails (client gone) is counted once as disconnected and re-raised."""
    metrics = GatewayMetrics()

    async def broken_send(message: Message) -> None:
        raise OSError("connection reset")

    with pytest.raises(OSError, match="reset"):
        await RequestMetricsMiddleware(_unreachable, metrics=metrics)(
            _liveness_scope(), Client().receive, broken_send
        )
    labels = {"route": "/healthz", "status_class": "disconnected"}
    assert _sample(metrics, "gateway_responses_sent_total", **labels) == 1
    assert _ledger_balanced(metrics)


class DroppingServer(Client):
    """uvicorn's side of a caller that hangs up: lost at the `lose_at`th send, silently.

    That answer and what follows are dropped without a word to the app.
    """

    def __init__(self, lose_at: int) -> None:
        super().__init__()
        self.connection = Connection()
        self.lose_at = lose_at

    async def send(self, message: Message) -> None:
        if len(self.sent) + 1 >= self.lose_at:
            self.connection.lost = True
        if not self.connection.lost:
            await super().send(message)

    def scope(self, base: Scope) -> Scope:
        return {**base, CONNECTION_KEY: self.connection}


@pytest.mark.parametrize("lose_at", [1, 2])
async def test_an_answer_the_server_drops_for_a_lost_connection_counts_as_disconnected(
    lose_at: int,
):
    """A caller that hung up while the app worked (on a signer) is counted disconnected.

    Not under the status nobody received, whether lost before the head or before the body.
    """
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _respond(send)

    server = DroppingServer(lose_at)
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        server.scope(_scope()), server.receive, server.send
    )
    assert _counted_disconnected_once(metrics)


async def test_a_connection_lost_after_the_whole_answer_keeps_its_status():
    """Lost once the answer was written (the caller read it and closed): a 2xx all the same."""
    metrics = GatewayMetrics()
    server = DroppingServer(lose_at=3)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _respond(send)
        server.connection.lost = True

    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        server.scope(_scope()), server.receive, server.send
    )
    assert server.connection.lost
    assert _sample(metrics, "gateway_responses_sent_total", route="unmatched", status_class="2xx")
    assert _ledger_balanced(metrics)


async def test_a_liveness_answer_the_server_drops_counts_as_disconnected():
    """/healthz to a caller gone by then: counted disconnected, as the full path would."""
    metrics = GatewayMetrics()
    server = DroppingServer(lose_at=1)
    await RequestMetricsMiddleware(_unreachable, metrics=metrics)(
        server.scope(_liveness_scope()), server.receive, server.send
    )
    assert _counted_disconnected_once(metrics, "/healthz")


async def test_liveness_head_probe_has_the_get_headers_and_no_body(caplog):
    """HEAD /healthz: the GET's status and headers (Content-Length too), an empty body."""
    metrics = GatewayMetrics()
    get, head = Client(), Client()
    with caplog.at_level("INFO", logger="signing_gateway.access"):
        for method, client in (("GET", get), ("HEAD", head)):
            scope = {**_liveness_scope((b"x-request-id", b"probe-1")), "method": method}
            await RequestMetricsMiddleware(_unreachable, metrics=metrics)(
                scope, client.receive, client.send
            )
    assert head.sent[0] == get.sent[0]
    assert head.sent[1]["body"] == b""
    assert not head.sent[1].get("more_body", False)
    assert _sample(metrics, "gateway_responses_total", route="/healthz", status="200") == 2
    assert not caplog.records


async def test_head_reaches_the_app_as_a_get_and_is_logged_as_head(caplog):
    """The app serves a HEAD as a GET; the server's scope stays HEAD; the log says HEAD."""
    metrics = GatewayMetrics()
    seen = []
    route = type("Route", (), {"path_format": "/things"})()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["method"])
        scope["route"] = route  # as the router sets it, on the scope it was given
        await _respond(send)

    scope = {"type": "http", "method": "HEAD", "path": "/things", "headers": [], "state": {}}
    client = Client()
    with caplog.at_level("INFO", logger="signing_gateway.access"):
        await RequestMetricsMiddleware(app, metrics=metrics)(scope, client.receive, client.send)
    assert seen == ["GET"]
    assert scope["method"] == "HEAD"  # the server drops the body by its own scope's method
    assert client.sent[0]["status"] == 200
    assert _sample(metrics, "gateway_responses_total", route="/things", status="200") == 1
    assert _ledger_balanced(metrics)
    (record,) = caplog.records
    assert (record.method, record.route, record.status) == ("HEAD", "/things", 200)


async def test_other_methods_and_paths_go_through_the_wrapped_app():
    """Only GET and HEAD /healthz are short-cut: POST and /healthz/ reach the app as before."""
    metrics = GatewayMetrics()
    reached = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append((scope["method"], scope["path"]))
        await _respond(send, 405)

    for method, path in (("HEAD", "/healthz"), ("POST", "/healthz"), ("GET", "/healthz/")):
        scope = {"type": "http", "method": method, "path": path, "headers": [], "state": {}}
        client = Client()
        await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
            scope, client.receive, client.send
        )
    assert reached == [("POST", "/healthz"), ("GET", "/healthz/")]


async def _serve(app: ASGIApp, client: Client, *, access_log: bool = False) -> GatewayMetrics:
    """Serve one request of `client` through the middleware around `app`; its metrics."""
    metrics = GatewayMetrics()
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=access_log)(
        _scope(), client.receive, client.send
    )
    return metrics


@pytest.mark.parametrize(
    ("more_body", "ending", "answered"),
    [
        pytest.param(False, "2xx", 1, id="after-the-last-chunk"),
        pytest.param(True, "disconnected", 0, id="between-two-chunks"),
    ],
)
async def test_a_disconnect_counts_only_before_the_last_chunk(
    more_body: bool, ending: str, answered: int
):
    """A client leaving once the whole answer was handed over is no disconnect; mid-stream it is.

    The app then asks for the next message, as a listener for the disconnect would.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": more_body})
        assert (await receive())["type"] == "http.disconnect"

    metrics = await _serve(app, Client())
    assert _sample(metrics, "gateway_responses_sent_total", route="unmatched",
                   status_class=ending) == 1  # fmt: skip
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="200") == answered
    assert _ledger_balanced(metrics)


async def test_a_cancellation_after_the_complete_answer_keeps_its_status():
    """Cancelled once the answer is out (work after it): counted as sent, 201, and re-raised."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _respond(send, 201)
        raise asyncio.CancelledError

    client = Client()
    with pytest.raises(asyncio.CancelledError):
        await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
            _scope(), client.receive, client.send
        )
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="201") == 1
    assert _ledger_balanced(metrics)


@pytest.mark.parametrize(
    ("chunks", "status"),
    [
        pytest.param([{"body": b"a"}], "201", id="after-the-answer"),
        pytest.param([{"body": b"a", "more_body": True}], "500", id="mid-answer"),
    ],
)
async def test_a_crash_counts_500_only_before_the_answer_is_complete(
    chunks: list[Message], status: str
):
    """Raising after the last chunk keeps the status sent; mid-stream, the client got a 5xx."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        for chunk in chunks:
            await send({"type": "http.response.body", **chunk})
        raise RuntimeError("bug")

    client = Client()
    with pytest.raises(RuntimeError):
        await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
            _scope(), client.receive, client.send
        )
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status=status) == 1
    assert _ledger_balanced(metrics)


async def test_the_duration_runs_until_the_answer_ended(caplog):
    """The histogram's sample and the access log's milliseconds are the time the app took.

    The access record carries exactly its six fields: nothing of the body, headers or query.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.05)
        await _respond(send)

    scope = {**_scope(), "query_string": b"email=a%40b.example", "headers": [(b"x-b", b"c")]}
    metrics, client = GatewayMetrics(), Client({"type": "http.request", "body": b"secret"})
    with caplog.at_level("INFO", logger="signing_gateway.access"):
        await RequestMetricsMiddleware(app, metrics=metrics)(scope, client.receive, client.send)
    elapsed = _sample(metrics, "gateway_request_duration_seconds_sum", route="unmatched",
                      status_class="2xx")  # fmt: skip
    assert 0.05 <= elapsed < 5
    (record,) = caplog.records
    standard = logging.makeLogRecord({}).__dict__.keys() | {"message", "asctime"}
    fields = {k: v for k, v in record.__dict__.items() if k not in standard}
    assert fields.keys() == {"method", "route", "status", "outcome", "duration_ms", "request_id"}
    assert 50 <= fields["duration_ms"] < 5000
    assert fields["duration_ms"] == round(fields["duration_ms"], 2)


async def test_a_request_its_client_left_unanswered_is_logged_with_status_0(caplog):
    """No status was produced: the access log says 0 and disconnected, not a 500."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.disconnect"

    with caplog.at_level("INFO", logger="signing_gateway.access"):
        metrics = await _serve(app, Client(), access_log=True)
    (record,) = caplog.records
    assert (record.status, record.outcome) == (0, "disconnected")
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="500") == 0
    assert _ledger_balanced(metrics)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(100, "1xx"), (199, "1xx"), (200, "2xx"), (299, "2xx"), (300, "3xx"), (308, "3xx"),
     (399, "3xx"), (400, "4xx"), (499, "4xx"), (500, "5xx"), (599, "5xx")],
)  # fmt: skip
def test_status_class_is_the_hundreds_digit(status: int, expected: str):
    """Each class from its first to its last status."""
    assert status_class(status) == expected


@pytest.mark.parametrize("status", [0, 99, 600, 999])
def test_a_status_outside_the_classes_counts_as_a_server_error(status: int):
    """No server can send it as it stands: the caller got no proper answer, so `5xx`."""
    assert status_class(status) == "5xx"


async def test_the_request_id_and_telemetry_are_bound_for_the_request_only():
    """Inside: the caller's id in the context and `request.state`; after: "-" and nothing."""
    seen = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((current_request_id(), scope["state"]["request_id"], telemetry_var.get()))
        await _respond(send)

    scope = {**_scope(), "headers": [(b"x-request-id", b"req-9")]}
    metrics, client = GatewayMetrics(), Client()
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        scope, client.receive, client.send
    )
    ((inside_id, state_id, telemetry),) = seen
    assert (inside_id, state_id) == ("req-9", "req-9")
    assert telemetry is not None
    assert telemetry.metrics is metrics
    assert dict(client.sent[0]["headers"])[b"x-request-id"] == b"req-9"
    assert (current_request_id(), telemetry_var.get()) == ("-", None)


async def test_an_answer_with_its_own_caching_rule_keeps_it():
    """`Cache-Control: no-store` is added only where the app set no caching rule of its own."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [] if scope["path"] == "/x" else [(b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RequestMetricsMiddleware(app, metrics=GatewayMetrics(), access_log_enabled=False)
    for path in ("/x", "/cached"):
        client = Client()
        await middleware({**_scope(), "path": path}, client.receive, client.send)
        values = [v for k, v in client.sent[0]["headers"] if k == b"cache-control"]
        assert values == ([b"no-store"] if path == "/x" else [b"max-age=60"])


class _BrokenTracer:
    """A tracer whose request spans fail to start."""

    def start_request(self, *_: object) -> None:
        raise RuntimeError("tracer broken")


async def test_a_tracer_failing_to_open_the_span_counts_the_request_as_a_500():
    """Received, then sent as the server's 500: not left in progress for ever."""
    metrics = GatewayMetrics()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await _respond(send)

    client = Client()
    middleware = RequestMetricsMiddleware(
        app,
        metrics=metrics,
        tracer=_BrokenTracer(),  # type: ignore[arg-type]
        access_log_enabled=False,
    )
    with pytest.raises(RuntimeError, match="tracer broken"):
        await middleware(_scope(), client.receive, client.send)
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="500") == 1
    assert _ledger_balanced(metrics)
    assert current_request_id() == "-"  # nothing of the request's left bound
    assert telemetry_var.get() is None


async def test_an_answer_the_drain_cuts_counts_once_as_5xx_and_is_logged_so(caplog):
    """`AnswerCut` from the drain through the metrics: one 5xx, logged 500; the ledger holds.

    The caller read a 200 status line, then an answer ending short: no status it can use.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.access")
    metrics = GatewayMetrics()
    controller = DrainController(drain_timeout=0, cancel_grace=1)
    begun = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        begun.set()
        await asyncio.Event().wait()  # a signer that never answers

    client = Client()
    stack = RequestMetricsMiddleware(DrainMiddleware(app, controller=controller), metrics=metrics)
    served = asyncio.create_task(stack(_scope(), client.receive, client.send))
    await begun.wait()
    async with asyncio.timeout(1):
        assert await controller.drain() == 1
        with pytest.raises(AnswerCut):
            await served
    labels = {"route": "unmatched", "status_class": "5xx"}
    assert _sample(metrics, "gateway_responses_sent_total", **labels) == 1
    assert _sample(metrics, "gateway_responses_total", route="unmatched", status="500") == 1
    assert _ledger_balanced(metrics)
    logged = [(r.status, r.outcome) for r in caplog.records if r.name == "signing_gateway.access"]
    assert logged == [(500, "5xx")]


class Watcher:
    """An `AnswerWatcher`: what it was told."""

    def __init__(self) -> None:
        self.told: list[int | None] = []

    def answered(self, status: int | None) -> None:
        self.told.append(status)


@pytest.mark.parametrize(
    ("lose_at", "told"),
    [(1, None), (2, None), (3, 200), (4, 200)],
    ids=["before-the-head", "before-the-body", "after-the-answer", "never"],
)
async def test_the_app_s_watcher_is_told_whether_its_answer_reached_the_connection(
    lose_at: int, told: int | None
) -> None:
    """Once the request is counted, the watcher the app left in its scope learns its status.

    None for an answer dropped because the caller had hung up (before the head, before the
    body); its status for one handed whole to the connection, lost afterwards or never. An
    issued credential's audit record is that watcher: it had no way to learn either.
    """
    metrics = GatewayMetrics()
    watcher = Watcher()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ANSWER_WATCHER_KEY] = watcher
        await _respond(send)

    server = DroppingServer(lose_at)
    await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
        server.scope(_scope()), server.receive, server.send
    )
    assert watcher.told == [told]
    assert _ledger_balanced(metrics)


async def test_the_watcher_of_an_app_that_raised_or_was_cancelled_is_told_none() -> None:
    """No answer of the app's went out whole: raised before its body, or cancelled mid-answer."""
    watchers = [Watcher(), Watcher()]

    async def raising(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ANSWER_WATCHER_KEY] = watchers[0]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("bug")

    async def cancelled(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ANSWER_WATCHER_KEY] = watchers[1]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise asyncio.CancelledError

    for app, raised in ((raising, RuntimeError), (cancelled, asyncio.CancelledError)):
        client = Client()
        with pytest.raises(raised):
            await RequestMetricsMiddleware(app, metrics=GatewayMetrics(), access_log_enabled=False)(
                _scope(), client.receive, client.send
            )
    assert [watcher.told for watcher in watchers] == [[None], [None]]


class _TracerFailingAtTheEnd:
    """A tracer whose request spans open, but fail to end (an exporter that raises)."""

    def start_request(self, *_: object) -> object:
        return object()

    def end_request(self, *_: object, **__: object) -> None:
        raise RuntimeError("exporter broken")


async def test_a_tracer_failing_to_end_the_span_still_logs_and_tells_the_watcher(caplog) -> None:
    """The request's access line and its watcher's news do not hang on the tracer.

    They came after the span's end: an issued credential whose answer never reached the
    connection lost its `undelivered` audit record to a tracer that raised there.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.access")
    metrics = GatewayMetrics()
    watcher = Watcher()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ANSWER_WATCHER_KEY] = watcher
        await _respond(send)

    server = DroppingServer(1)  # the caller hung up before the head
    middleware = RequestMetricsMiddleware(
        app,
        metrics=metrics,
        tracer=_TracerFailingAtTheEnd(),  # type: ignore[arg-type]
    )
    with pytest.raises(RuntimeError, match="exporter broken"):
        await middleware(server.scope(_scope()), server.receive, server.send)
    assert watcher.told == [None]
    logged = [(r.status, r.outcome) for r in caplog.records if r.name == "signing_gateway.access"]
    assert logged == [(200, "disconnected")]
    assert _ledger_balanced(metrics)


@pytest.mark.parametrize(
    ("lose_at", "chunks"),
    [
        pytest.param(1, [], id="head-dropped"),
        pytest.param(2, [{"body": b"a", "more_body": True}], id="first-chunk-dropped"),
    ],
)
async def test_a_crash_after_the_connection_was_lost_counts_as_disconnected(
    lose_at: int, chunks: list[Message]
):
    """The caller left first, so no truncated answer reached it: not a 5xx, as the docs say.

    The same as when the server reports `http.disconnect` before the app raises.
    """
    metrics = GatewayMetrics()
    server = DroppingServer(lose_at)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in chunks:
            await send({"type": "http.response.body", **chunk})
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await RequestMetricsMiddleware(app, metrics=metrics, access_log_enabled=False)(
            server.scope(_scope()), server.receive, server.send
        )
    assert _sample(metrics, "gateway_responses_sent_total", route="unmatched",
                   status_class="5xx") == 0  # fmt: skip
    assert _counted_disconnected_once(metrics)
