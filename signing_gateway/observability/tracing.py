"""Optional OpenTelemetry tracing: a server span per inbound request, a client span per signer call.

Installed with the `otel` extra (`pip install signing-gateway[otel]`) and switched on with
`SIGNING_GATEWAY_OBSERVABILITY__TRACING_ENABLED=true`. Only `build_tracer` imports this module,
and only when the setting is on, so a gateway without tracing never imports OpenTelemetry.

The W3C `traceparent` of the caller (if any) becomes the parent of the request span; each signer
call gets a child span and its own `traceparent` header, so a trace crosses into the signers.
The caller's `baggage` does not: its entries are whatever the caller chose, and the propagators
would send them on to the signers with every call.
The request span carries the request's id (`request_id`, as in its log lines and its
`X-Request-ID`), and the log lines written while it is open carry its `trace_id` and `span_id`
(`context.trace_ids_var`): from a span to its lines and back.
Spans go to the process-wide tracer provider: one the deployment configured, or (when none was
set) an SDK provider exporting over OTLP/HTTP to the endpoint named by the standard
`OTEL_EXPORTER_OTLP_*` variables. Without a configured provider the SDK and the exporter are
required: `build_tracer` raises ImportError rather than sending every span to a no-op provider.
At exit, that provider gets `EXIT_FLUSH_SECONDS` to send the spans still queued, and no more.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterable, MutableMapping
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode

from signing_gateway.observability.context import trace_ids_var
from signing_gateway.observability.telemetry import add_exit_flush

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

_INSTRUMENTATION = "signing_gateway"
#: The request span's attribute holding the request id: the name of the log lines' field.
REQUEST_ID_ATTRIBUTE = "request_id"

#: At exit, how long the gateway's own provider may take to send the spans still queued; the
#: process then ends without the rest. A collector that is down or does not answer must not hold
#: up the gateway's stop: the SDK's own exit handler waits for the batch thread up to 30 s (some
#: SDK releases without any bound), and that thread may be sitting out a 10 s export attempt.
EXIT_FLUSH_SECONDS = 2.0


@dataclass(slots=True)
class RequestSpan:
    """An open server span and the context tokens to detach when the request ends.

    `ids_token`: of the span's ids set for the log lines; None when the span has no valid
    context (a provider that records nothing), which leaves the lines without ids.
    """

    span: trace.Span
    token: object
    ids_token: Token[tuple[str, str] | None] | None


class GatewayTracer:
    """Starts and ends the gateway's spans on one OpenTelemetry tracer."""

    def __init__(self, tracer: trace.Tracer) -> None:
        """Use `tracer` for every span."""
        self._tracer = tracer

    def start_request(
        self, method: str, headers: Iterable[tuple[bytes, bytes]], request_id: str
    ) -> RequestSpan:
        """Open the server span of an inbound request and make it current for its task.

        The span gets the request id; the task's log lines, until `end_request`, the span's
        trace and span ids, in the hex form of the W3C `traceparent`.
        """
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
        parent = baggage.clear(context=propagate.extract(carrier))  # the trace context only
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, REQUEST_ID_ATTRIBUTE: request_id},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        ids = span.get_span_context()
        ids_token = (
            trace_ids_var.set(
                (trace.format_trace_id(ids.trace_id), trace.format_span_id(ids.span_id))
            )
            if ids.is_valid
            else None
        )
        return RequestSpan(span, token, ids_token)

    def end_request(self, handle: RequestSpan, *, method: str, route: str, status: int) -> None:
        """Name the span after the route template, record the status and close it.

        `status` 0: no answer reached the caller (the client left, before the answer or while
        it was written; the task was cancelled), so the span records no status code rather than
        a status 0, nor the status of an answer nobody received.
        """
        span = handle.span
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
        if status:
            span.set_attribute("http.response.status_code", status)
        if status >= 500:  # noqa: PLR2004 - server errors mark the span failed
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        otel_context.detach(handle.token)  # type: ignore[arg-type]
        if handle.ids_token is not None:
            trace_ids_var.reset(handle.ids_token)

    def start_signer_call(
        self,
        signer: str,
        endpoint: str,
        headers: MutableMapping[str, str],
        *,
        resend_count: int = 0,
    ) -> trace.Span:
        """Open a client span for one signer call and put its `traceparent` into `headers`.

        A retry's span (`resend_count` > 0: attempts of the same call sent before it) says so
        in OpenTelemetry's `http.request.resend_count`; a first attempt's has none, as the
        convention asks.
        """
        attributes: dict[str, str | int] = {"signer.name": signer, "signer.endpoint": endpoint}
        if resend_count:
            attributes["http.request.resend_count"] = resend_count
        span = self._tracer.start_span(
            f"signer {signer} {endpoint}", kind=SpanKind.CLIENT, attributes=attributes
        )
        propagate.inject(headers, context=trace.set_span_in_context(span))
        return span

    @staticmethod
    def end_signer_call(span: trace.Span, outcome: str) -> None:
        """Record the call's outcome and close its span."""
        span.set_attribute("signer.outcome", outcome)
        if outcome != "ok":
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()


class ExitFlush:
    """Shuts a tracer provider down at exit, waiting for it `timeout` seconds at most.

    The shutdown runs on a thread started here, idle until the exit: Python 3.12 refuses to
    start a thread from an exit handler, and the provider's shutdown (which waits for its batch
    thread) cannot be cut short from outside. A daemon thread still waiting is dropped as the
    process ends. `flush` runs at exit, or before, from `telemetry.flush_telemetry`, in a
    process that ends by a signal (a `serve --workers` worker whose drain a second signal cut
    short) and so runs no exit handler.
    """

    def __init__(self, provider: SdkTracerProvider, timeout: float) -> None:
        """Start the waiting thread and register `flush` to run at exit."""
        self._provider = provider
        self._timeout = timeout
        self._exiting = threading.Event()
        self._done = threading.Event()
        threading.Thread(target=self._shut_down, name="otel-exit-flush", daemon=True).start()
        atexit.register(self.flush)
        add_exit_flush(self.flush)

    def _shut_down(self) -> None:
        self._exiting.wait()
        try:
            self._provider.shutdown()
        finally:
            self._done.set()

    def flush(self) -> bool:
        """Shut the provider down; whether it finished within the timeout."""
        atexit.unregister(self.flush)
        self._exiting.set()
        return self._done.wait(self._timeout)


def _provider_configured() -> bool:
    """Whether something other than the gateway set the process-wide provider (then it is used)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _import_otlp_sdk() -> Callable[[str], trace.TracerProvider]:
    """Import the SDK and the OTLP/HTTP exporter; return what builds a provider from the two.

    Raises:
        ImportError: either is not installed (the `otel` extra is missing).
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - extra
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    def otlp_provider(service_name: str) -> trace.TracerProvider:
        provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), shutdown_on_exit=False
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        ExitFlush(provider, EXIT_FLUSH_SECONDS)
        return provider

    return otlp_provider


def check_tracing_support() -> None:
    """Fail as `build_tracer` would, without building anything: for a process starting workers.

    Raises:
        ImportError: no provider is configured and the SDK or the OTLP exporter is missing.
    """
    if not _provider_configured():
        _import_otlp_sdk()


def build_tracer(service_name: str) -> GatewayTracer:
    """The gateway's tracer on the process-wide provider (an OTLP one installed if none is set).

    Raises:
        ImportError: no provider is configured and the SDK or the OTLP exporter is missing.
    """
    if not _provider_configured():
        trace.set_tracer_provider(_import_otlp_sdk()(service_name))
    return GatewayTracer(trace.get_tracer(_INSTRUMENTATION))
