"""Optional OpenTelemetry tracing: request and signer-call spans, traceparent to the signers."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from signing_gateway.app import create_app
from signing_gateway.observability.tracing import build_tracer
from signing_gateway.observability.tracing_setup import (
    TracingUnavailableError,
    check_tracing_available,
)
from signing_gateway.settings import ObservabilitySettings
from tests.api.bodies import domestic_attributes, eu_vaccination
from tests.api.signer_mocks import mock_signers
from tests.support.gateway import SignerKeys, make_settings, running_gateway

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process-wide SDK provider (a provider can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [s for s in spans if s.name == name]
    assert len(matching) == 1, [s.name for s in spans]
    return matching[0]


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


async def test_traceparent_reaches_the_signer_as_a_child_of_the_request_span(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """The caller's trace continues through the request span into the signer call's traceparent."""
    span_exporter.clear()
    mocked = mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    async with running_gateway(settings) as client:
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"traceparent": CALLER_TRACEPARENT}
        )
    assert response.status_code == 200, response.text

    sent = mocked.get_credential.calls.last.request.headers["traceparent"]
    version, trace_id, parent_id, _flags = sent.split("-")
    assert (version, trace_id) == ("00", CALLER_TRACE_ID)

    spans = span_exporter.get_finished_spans()
    server = _by_name(spans, "POST /v1/dcc")
    client_span = _by_name(spans, "signer eu get_credential")
    assert server.kind is SpanKind.SERVER
    assert client_span.kind is SpanKind.CLIENT
    assert server.parent is not None
    assert _hex(server.parent.span_id, 16) == CALLER_SPAN_ID
    assert client_span.parent is not None
    assert client_span.parent.span_id == server.context.span_id
    assert _hex(client_span.context.span_id, 16) == parent_id
    attributes: dict[str, Any] = dict(client_span.attributes or {})
    assert attributes["signer.outcome"] == "ok"
    assert dict(server.attributes or {})["http.response.status_code"] == 200


async def test_a_retried_signer_call_says_which_attempt_each_span_is(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """Each attempt is a span under the request's; a retry's has `http.request.resend_count`.

    Without it the attempts of one call were told apart only by their start times; the
    OpenTelemetry convention leaves the attribute off the first attempt.
    """
    span_exporter.clear()
    mocked = mock_signers(signers, test_keys)
    busy = httpx.Response(503, text="busy", headers={"Retry-After": "0"})
    mocked.get_credential.mock(side_effect=[busy, busy, mocked.get_credential.side_effect])
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 200, response.text
    spans = span_exporter.get_finished_spans()
    server = _by_name(spans, "POST /v1/dcc")
    calls = sorted(
        (s for s in spans if s.name == "signer eu get_credential"),
        key=lambda s: s.start_time or 0,
    )
    assert [dict(s.attributes or {}).get("signer.outcome") for s in calls] == [
        "throttled",
        "throttled",
        "ok",
    ]
    assert [dict(s.attributes or {}).get("http.request.resend_count") for s in calls] == [
        None,
        1,
        2,
    ]
    assert all(s.parent is not None and s.parent.span_id == server.context.span_id for s in calls)


async def test_the_callers_baggage_is_not_passed_on_to_the_signers(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """Only the trace context crosses into the signers: a caller's `baggage` stays at the gateway.

    Its entries are whatever the caller chose to put there; operations.md promises the signers
    the span's `traceparent`, nothing more of the caller's headers.
    """
    span_exporter.clear()
    mocked = mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    headers = {"traceparent": CALLER_TRACEPARENT, "baggage": "patient=Jansen,dob=1980-04-02"}
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination(), headers=headers)
    assert response.status_code == 200, response.text
    sent = mocked.get_credential.calls.last.request.headers
    assert sent["traceparent"].split("-")[1] == CALLER_TRACE_ID
    assert "baggage" not in sent


async def test_without_tracing_no_traceparent_is_sent(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """With tracing off the signer sees no traceparent and no span is recorded."""
    span_exporter.clear()
    mocked = mock_signers(signers, test_keys)
    async with running_gateway(make_settings(test_keys)) as client:
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"traceparent": CALLER_TRACEPARENT}
        )
    assert response.status_code == 200, response.text
    assert "traceparent" not in mocked.get_credential.calls.last.request.headers
    assert span_exporter.get_finished_spans() == ()


def test_tracing_off_imports_no_tracing_code():
    """Building and serving config without tracing never imports the tracing module or the SDK."""
    script = textwrap.dedent(
        """
        import sys
        from signing_gateway.app import create_app
        from tests.support.gateway import make_settings
        create_app(make_settings())
        loaded = [m for m in sys.modules
                  if m == "signing_gateway.observability.tracing"
                  or m.startswith("opentelemetry.sdk")]
        print(",".join(loaded))
        """
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == ""


def _uninstalled(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make `package` and everything under it fail to import, as where it is not installed."""
    for name in [package, *(m for m in sys.modules if m.startswith(f"{package}."))]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("package", ["opentelemetry.sdk", "opentelemetry.exporter.otlp"])
def test_tracing_without_the_otel_extra_fails_start_up(
    monkeypatch: pytest.MonkeyPatch, test_keys: SignerKeys, package: str
):
    """Tracing on, no provider configured and the SDK or exporter missing: no app is built."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    _uninstalled(monkeypatch, package)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    with pytest.raises(TracingUnavailableError, match=r"signing-gateway\[otel\]") as raised:
        create_app(settings)
    assert package in str(raised.value)


async def test_a_provider_configured_by_the_process_needs_no_sdk(
    monkeypatch: pytest.MonkeyPatch,
    test_keys: SignerKeys,
    signers: respx.MockRouter,
    span_exporter: InMemorySpanExporter,
):
    """With a provider the process set up itself, the app builds without the SDK and uses it."""
    span_exporter.clear()
    mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    with monkeypatch.context() as building:
        _uninstalled(building, "opentelemetry.sdk")
        _uninstalled(building, "opentelemetry.exporter")
        app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 200, response.text
    assert _by_name(span_exporter.get_finished_spans(), "POST /v1/dcc").kind is SpanKind.SERVER


async def test_request_spans_say_the_method_asked_and_the_route_template(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """A HEAD is traced as the HEAD it was; a path no route matches as "unmatched", never raw."""
    span_exporter.clear()
    mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    async with running_gateway(settings) as client:
        head_answer = await client.head("/v1/keys")
        assert head_answer.status_code == 200
        assert (await client.get("/v1/people/Jansen/1980-04-02")).status_code == 404
    spans = span_exporter.get_finished_spans()
    head = _by_name(spans, "HEAD /v1/keys")
    assert dict(head.attributes or {}) == {
        "http.request.method": "HEAD",
        "request_id": head_answer.headers["X-Request-ID"],
        "http.route": "/v1/keys",
        "http.response.status_code": 200,
    }
    assert head.status.status_code is StatusCode.UNSET
    unmatched = _by_name(spans, "GET unmatched")
    assert dict(unmatched.attributes or {})["http.route"] == "unmatched"
    assert unmatched.status.status_code is StatusCode.UNSET
    assert "Jansen" not in repr([(s.name, dict(s.attributes or {})) for s in spans])


async def test_failed_requests_and_signer_calls_are_error_spans(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """A 500 marks its request span failed, as a 502 does; a signer call not ok says its outcome.

    And a request leaves no span current behind it in the task that served it.
    """
    span_exporter.clear()
    mocked = mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    app = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/test-only/explode", explode, methods=["GET"])
    mocked.get_credential.mock(return_value=httpx.Response(429, text="busy"))
    async with running_gateway(settings, app=app, raise_app_exceptions=False) as client:
        assert (await client.get("/test-only/explode")).status_code == 500
        assert (await client.post("/v1/dcc", json=eu_vaccination())).status_code == 503
        assert trace.get_current_span() is trace.INVALID_SPAN
    spans = span_exporter.get_finished_spans()
    for name, status in (("GET /test-only/explode", 500), ("POST /v1/dcc", 503)):
        server = _by_name(spans, name)
        assert server.status.status_code is StatusCode.ERROR, name
        assert dict(server.attributes or {})["http.response.status_code"] == status
    calls = [s for s in spans if s.name == "signer eu get_credential"]
    assert calls
    for call in calls:
        assert dict(call.attributes or {}) == {
            "signer.name": "eu",
            "signer.endpoint": "get_credential",
            "signer.outcome": "throttled",
        }
        assert (call.status.status_code, call.status.description) == (StatusCode.ERROR, "throttled")


def test_without_a_provider_an_otlp_one_named_after_the_service_is_installed(
    monkeypatch: pytest.MonkeyPatch,
):
    """No provider configured: the gateway sets one whose spans say `service.name`, sent by OTLP."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    installed: list[TracerProvider] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)
    build_tracer("gateway-under-test")
    (provider,) = installed
    try:
        assert provider.resource.attributes["service.name"] == "gateway-under-test"
        (processor,) = provider._active_span_processor._span_processors
        assert isinstance(processor, BatchSpanProcessor)
        assert isinstance(processor.span_exporter, OTLPSpanExporter)
    finally:
        provider.shutdown()


@pytest.mark.parametrize("package", ["opentelemetry.sdk", "opentelemetry.exporter.otlp"])
def test_the_start_up_check_fails_as_building_would(monkeypatch: pytest.MonkeyPatch, package: str):
    """For the process that starts workers: the same error, before any app is built."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    _uninstalled(monkeypatch, package)
    check_tracing_available(ObservabilitySettings(tracing_enabled=False))
    with pytest.raises(TracingUnavailableError, match=r"signing-gateway\[otel\]") as raised:
        check_tracing_available(ObservabilitySettings(tracing_enabled=True))
    assert package in str(raised.value)


def test_fastapis_own_telemetry_hooks_are_off(test_keys: SignerKeys):
    """Tracing, metrics and logs alike: they would start with any process-wide provider.

    Its logs hook would ship validation failures, which may quote personal data, to an OTel
    log provider; its spans and metrics would duplicate the gateway's own.
    """
    app = create_app(make_settings(test_keys))
    hooks = app._telemetry
    assert (hooks["tracing"], hooks["metrics"], hooks["logs"]) == (False, False, False)


async def test_the_request_span_carries_the_request_id_of_the_answer_and_the_logs(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """From a failing span to its log lines: the span says the request id the lines carry.

    The caller's own `X-Request-ID` when it gave a safe one, else the id minted for the answer.
    """
    span_exporter.clear()
    mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    async with running_gateway(settings) as client:
        given = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": "caller-id-7"}
        )
        minted = await client.get("/v1/keys")
    assert (given.status_code, minted.status_code) == (200, 200)
    spans = span_exporter.get_finished_spans()
    for name, request_id in (
        ("POST /v1/dcc", "caller-id-7"),
        ("GET /v1/keys", minted.headers["X-Request-ID"]),
    ):
        attributes = dict(_by_name(spans, name).attributes or {})
        assert attributes.get("request_id") == request_id, (name, attributes)


async def test_log_lines_of_a_traced_request_carry_its_trace_and_span_ids(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter, json_log
):
    """From a log line to its trace: every line of the request says its trace and span ids.

    In the hex form of `traceparent`, as log pipelines take them: the access line too (written
    as the request ends), and the lines of the concurrent signer-call tasks of `/v1/print`.
    Nothing of it stays bound in the task that served the request.
    """
    span_exporter.clear()
    mocked = mock_signers(signers, test_keys)
    mocked.get_credential.mock(return_value=httpx.Response(500, text="down"))
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    body = {"domestic": domestic_attributes(), "european": eu_vaccination()}
    headers = {"traceparent": CALLER_TRACEPARENT, "X-Request-ID": "joined-1"}
    async with running_gateway(settings) as client:
        assert (await client.post("/v1/print", json=body, headers=headers)).status_code == 502
        logging.getLogger("signing_gateway.test").warning("after the request")
    server = _by_name(span_exporter.get_finished_spans(), "POST /v1/print")
    written = json_log()
    (after,) = [r for r in written if r["event"] == "after the request"]
    assert "trace_id" not in after, after
    lines = [r for r in written if r.get("request_id") == "joined-1"]
    events = {r["event"] for r in lines}
    assert {"signer call failed", "request"} <= events, events
    ids = {(r.get("trace_id"), r.get("span_id")) for r in lines}
    assert ids == {(CALLER_TRACE_ID, _hex(server.context.span_id, 16))}, ids


async def test_without_tracing_log_lines_carry_no_trace_ids(
    test_keys: SignerKeys, signers: respx.MockRouter, json_log
):
    """A caller's `traceparent` is not the gateway's trace: with tracing off no line names one."""
    mock_signers(signers, test_keys)
    async with running_gateway(make_settings(test_keys)) as client:
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"traceparent": CALLER_TRACEPARENT}
        )
    assert response.status_code == 200, response.text
    lines = json_log()
    assert any(r["event"] == "request" for r in lines)
    assert not [r for r in lines if "trace_id" in r or "span_id" in r]


async def test_the_readiness_probe_and_the_scrape_are_not_traced(
    test_keys: SignerKeys, signers: respx.MockRouter, span_exporter: InMemorySpanExporter
):
    """`/readyz` and `/metrics`, GET or HEAD, make no trace, as `/healthz` makes none.

    The orchestrator asks `/readyz` every few seconds and neither calls a signer: their traces
    would be single spans outnumbering the callers'. A caller's request beside them is traced.
    """
    span_exporter.clear()
    mock_signers(signers, test_keys)
    settings = make_settings(test_keys, observability=ObservabilitySettings(tracing_enabled=True))
    async with running_gateway(settings) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            for method in ("GET", "HEAD"):
                answer = await client.request(
                    method, path, headers={"traceparent": CALLER_TRACEPARENT}
                )
                assert answer.status_code in {200, 503}, (method, path, answer.status_code)
        assert (await client.get("/v1/keys")).status_code == 200
    names = [s.name for s in span_exporter.get_finished_spans()]
    assert names == ["GET /v1/keys"], names
