"""Pure ASGI middleware: request id, request metrics, the "nothing lost" accounting, access log.

The outermost layer. Per HTTP request it takes the caller's `X-Request-ID` (when short and
safe) or mints one, binds it for the request (`request.state.request_id`, the logs' context)
and sets it on the response; does a handful of counter updates and one histogram sample;
allocates one small object watching receive and send; and never reads the body. The request
id is set here rather than in a layer of its own: each ASGI layer is a frame and a send
wrapper held for the whole signer wait of every request in flight.

Counting rules (the accounting `/metrics` relies on):

- `gateway_requests_received_total` goes up when the request arrives (before routing).
- When the request ends, exactly one `gateway_responses_sent_total{route,status_class}`:
  - the class of the status the app sent (`2xx` ... `5xx`) once the response is complete;
  - `5xx` when the app raised before starting a response (Starlette's outermost error
    middleware then answers 500), or after starting it (the client gets a broken response);
  - `disconnected` when the client went away first: the server reported `http.disconnect`
    before the response was complete, the connection was lost when a part of the response
    was written (the gateway's HTTP protocol says so in the scope, `CONNECTION_KEY`: uvicorn
    drops such an answer silently; an app raising after that part is no 5xx, as nobody got
    the broken response), the request task was cancelled with its response under way (one
    not started yet is answered 503 by the drain middleware, and counted so), or it was
    cancelled because its connection was lost: the gateway's HTTP protocol cancels the
    request of a caller that leaves while it is served, its signer call with it. That
    cancellation ends here (the task is uncancelled, nothing raised to the server, which
    would log it as an error of the app's).
    The route and duration are still recorded; the status the app may have produced is not,
    since nobody received it.
- So at any scrape: received_total - sum(responses_sent_total) == requests_in_progress.

Once counted, a request whose app left an `AnswerWatcher` in its scope (`ANSWER_WATCHER_KEY`:
an issuance's audit record) is told the status of the answer handed whole to the connection,
or None when none was (`disconnected`, or the app raised): an issued credential nobody got is
recorded as such.

Routes are labelled by their template (`/v1/dcc`, never a raw path with ids or junk); a request
no route matched (or that a middleware answered before routing) is labelled `unmatched`. The
one middleware answer that is a route's own, the 401 or 403 the body limits give from the head
of a request holding its body back (`security.auth.authenticate_head`), notes that route in the
scope as the router would, and is labelled with its template.

Liveness probes (`GET /healthz`, and `HEAD`) are answered here, by the outermost layer, without
passing through the other middlewares and FastAPI's routing: the answer is the same (200
`{"status":"ok"}` with its `X-Request-ID`) and they are counted like any request, but they are
neither access-logged nor traced. The orchestrator and the bench poll them often, and through
the whole stack one cost about as much CPU as a forwarded signing request (docs/operations.md).
The readiness probe and the scrape (`/readyz`, `/metrics`) go through the app and are logged,
but not traced either (`UNTRACED_PATHS`).

Every other `HEAD` goes to the app as a `GET` (RFC 9110 §9.3.2: a HEAD is the GET without its
body). FastAPI's routes answer only the methods they declare, and declaring HEAD on each GET
route would give the OpenAPI document a second operation per path, under the GET's operation
id. The app gets a copy of the scope saying GET, so status and headers, Content-Length
included, are the GET's; the server's own scope still says HEAD, so it sends no body (uvicorn
drops it). The request is counted under its route as a GET would be (no metric has a method
label) and logged and traced as the HEAD it was. A 405 lists HEAD wherever it lists GET
(`api/problems`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_gateway.observability.context import (
    ANSWER_WATCHER_KEY,
    CACHE_CONTROL,
    CONNECTION_KEY,
    NO_STORE,
    NO_STORE_VALUE,
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    AnswerWatcher,
    Connection,
    is_lost,
    request_id_of,
    request_id_var,
)
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.telemetry import Telemetry, telemetry_var

if TYPE_CHECKING:
    # Only a type: the tracing module (and OpenTelemetry) is imported when tracing is on.
    from signing_gateway.observability.tracing import GatewayTracer, RequestSpan

access_log = logging.getLogger("signing_gateway.access")

UNMATCHED = "unmatched"
DISCONNECTED = "disconnected"
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
#: How a request of any route can end, as `gateway_responses_sent_total` counts it: the
#: series each route starts with (`counter_series`). A final 1xx cannot be sent, and the
#: gateway answers no 3xx (its router does not even redirect a trailing slash).
ENDINGS = ("2xx", "4xx", "5xx", DISCONNECTED)

#: The liveness route answered by `RequestMetricsMiddleware` itself, and its answer.
LIVENESS_PATH = "/healthz"
_LIVENESS_BODY = b'{"status":"ok"}'
_LIVENESS_HEADERS = [
    (b"content-type", b"application/json"),
    NO_STORE,
    (b"content-length", str(len(_LIVENESS_BODY)).encode("ascii")),
]
#: The methods it answers: a HEAD gets the GET's status and headers, and no body.
_LIVENESS_METHODS = frozenset({"GET", "HEAD"})
#: Served through the app, counted and access-logged, but never traced (with `/healthz`, answered
#: above all this): the readiness probe, every few seconds per replica, and the scrape. Neither
#: calls a signer (readiness is kept by a background prober), so each trace would be one span
#: saying what the access log and the metrics say already, and the probes' traces would
#: outnumber the callers'.
UNTRACED_PATHS = frozenset({"/readyz", "/metrics"})


def route_template(scope: Scope) -> str:
    """The path template of the route that handled `scope`, or "unmatched".

    "unmatched" also covers requests a middleware answered before routing ran (the draining
    503, the body-limit 413): their status tells them apart from a 404.
    """
    return template_of(scope.get("route"))


def template_of(route: object) -> str:
    """The path template of `route` (a router's route), or "unmatched" when it has none."""
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED


def status_class(status: int) -> str:
    """`2xx`-style class of an HTTP status."""
    return _STATUS_CLASSES.get(status // 100, "5xx")


class _Exchange:
    """One request's receive and send, watched: the status sent, and how the exchange ended.

    Its send also sets the request id on the response, and `Cache-Control: no-store` unless
    the app chose a caching rule.
    """

    __slots__ = (
        "_receive",
        "_send",
        "complete",
        "connection",
        "disconnected",
        "request_id",
        "status",
    )

    def __init__(
        self, receive: Receive, send: Send, request_id: str, connection: Connection | None
    ) -> None:
        self._receive = receive
        self._send = send
        self.connection = connection
        self.request_id = request_id
        self.status = 0
        self.complete = False
        self.disconnected = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = MutableHeaders(scope=message)
            headers[REQUEST_ID_HEADER] = self.request_id
            headers.setdefault(CACHE_CONTROL, NO_STORE_VALUE)
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        await self._send(message)
        # Nothing yields between the server's write and here: a connection lost now was lost
        # before this part of the answer was written, which the server then dropped with all
        # that follows. The caller left first, whether the app then completes, is cancelled
        # or raises: it got no truncated answer, so no 5xx either.
        if is_lost(self.connection):
            self.disconnected = True


class RequestMetricsMiddleware:
    """Counts, times and logs every HTTP request; binds the app's telemetry for its duration."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: GatewayMetrics,
        tracer: GatewayTracer | None = None,
        access_log_enabled: bool = True,
    ) -> None:
        """Wrap `app`; record into `metrics`, open spans with `tracer` when given."""
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.access_log_enabled = access_log_enabled
        self.telemetry = Telemetry(metrics, tracer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request through the wrapped app, recording how it ended."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if scope["path"] == LIVENESS_PATH and method in _LIVENESS_METHODS:
            await self._answer_liveness(scope, send, body=method == "GET")
            return
        metrics = self.metrics
        metrics.requests_received.inc()
        metrics.requests_in_progress.inc()
        start = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        if method == "HEAD":
            # Served as the GET; the server reads "HEAD" from its own scope and drops the body.
            scope = {**scope, "method": "GET"}
        exchange = _Exchange(receive, send, request_id, scope.get(CONNECTION_KEY))
        token = telemetry_var.set(self.telemetry)
        id_token = request_id_var.set(request_id)
        span = None
        try:
            # Within the `try`: a tracer that raised would leave the request in progress for
            # ever, counted received and never sent.
            if self.tracer is not None and scope["path"] not in UNTRACED_PATHS:
                span = self.tracer.start_request(method, scope["headers"], request_id)
            await self.app(scope, exchange.receive, exchange.send)
        except asyncio.CancelledError:
            exchange.disconnected = exchange.disconnected or not exchange.complete
            if not is_lost(exchange.connection):
                raise
            # Cancelled by the server's protocol because its caller left (or by anything
            # else once it had): the request ends here, counted `disconnected`. Raised on,
            # uvicorn would log the cancellation as an error of the app's.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except BaseException:
            if not exchange.complete:
                exchange.status = 500
            raise
        finally:
            request_id_var.reset(id_token)
            telemetry_var.reset(token)
            self._finish(
                scope,
                exchange.status,
                method=method,
                request_id=request_id,
                complete=exchange.complete,
                disconnected=exchange.disconnected,
                start=start,
                span=span,
            )

    async def _answer_liveness(self, scope: Scope, send: Send, *, body: bool) -> None:
        """`/healthz`: 200 at once, counted like any request, neither logged nor traced.

        `body`: False for a HEAD, which gets the same headers. Nothing here can fail but the
        send itself; a client gone before the answer is counted as disconnected, as the full
        path would.
        """
        metrics = self.metrics
        metrics.requests_received.inc()
        metrics.requests_in_progress.inc()
        start = time.perf_counter()
        request_id = request_id_of(scope["headers"])
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_LIVENESS_HEADERS, (REQUEST_ID_KEY, request_id.encode("ascii"))],
                }
            )
            await send({"type": "http.response.body", "body": _LIVENESS_BODY if body else b""})
        except BaseException:
            self._count(LIVENESS_PATH, DISCONNECTED, 0, time.perf_counter() - start)
            raise
        if is_lost(scope.get(CONNECTION_KEY)):  # the server dropped the answer
            self._count(LIVENESS_PATH, DISCONNECTED, 0, time.perf_counter() - start)
            return
        self._count(LIVENESS_PATH, "2xx", 200, time.perf_counter() - start)

    def _count(self, route: str, outcome: str, status: int, elapsed: float) -> None:
        """The end of a request in the metrics: out of progress, one sent count, its time."""
        metrics = self.metrics
        metrics.requests_in_progress.dec()
        metrics.responses_sent_for(route, outcome).inc()
        metrics.request_duration_for(route, outcome).observe(elapsed)
        if outcome != DISCONNECTED:
            metrics.responses_by_status_for(route, str(status)).inc()

    def _finish(
        self,
        scope: Scope,
        status: int,
        *,
        method: str,
        request_id: str,
        complete: bool,
        disconnected: bool,
        start: float,
        span: RequestSpan | None,
    ) -> None:
        """Record how the request ended: exactly one responses_sent count, then the log line.

        `scope`: the one the app was given (the router noted its route there, the app its
        `AnswerWatcher`, told last); `method`: the caller's, which that scope does not say for
        a HEAD.
        """
        route = route_template(scope)
        if status == 0 and not disconnected:
            status = 500  # returned without answering: the server sends a 500 itself
        outcome = DISCONNECTED if disconnected else status_class(status)
        elapsed = time.perf_counter() - start
        self._count(route, outcome, status, elapsed)
        # The access line and the watcher come before the span ends: written while its ids
        # are still the task's, they carry them. And a tracer that fails cannot cost the
        # request its access line, nor an issued credential nobody got its `undelivered`
        # audit record.
        try:
            if self.access_log_enabled:
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "route": route,
                        "status": status,
                        "outcome": outcome,
                        "duration_ms": round(elapsed * 1000, 2),
                        "request_id": request_id,
                    },
                )
            watcher: AnswerWatcher | None = scope.get(ANSWER_WATCHER_KEY)
            if watcher is not None:
                watcher.answered(status if complete and not disconnected else None)
        finally:
            if span is not None and self.tracer is not None:
                # A caller that left got no answer: its span says no status, as the metrics do.
                delivered = 0 if disconnected else status
                self.tracer.end_request(span, method=method, route=route, status=delivered)
