"""The probe port: its refusal of non-probe paths, and the listener serving the app."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import uvicorn
from uvicorn.server import ServerState

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime.http_protocol import GatewayHttpProtocol
from signing_gateway.runtime.probe_listener import probes_only, start_probe_listener
from signing_gateway.security.settings import LimitsSettings
from tests.support.logs import as_written


async def _reached(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("a refused path reached the app")


async def _refuse(
    path: str, headers: list[tuple[bytes, bytes]], metrics: GatewayMetrics | None = None
) -> list[dict[str, Any]]:
    """`path` sent to the probe port (counted in `metrics`, if given): the messages answered."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "state": {}}
    await probes_only(_reached, {"/healthz"}, metrics=metrics)(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("given", "expected"),
    [(b"trace-7", "trace-7"), (b"bad id\n", None), (None, None)],
    ids=["caller's", "unsafe", "none"],
)
@pytest.mark.parametrize("counted", [False, True], ids=["uncounted", "counted"])
async def test_refused_path_answers_with_a_request_id(given, expected, counted):
    """A 404 on the probe port carries X-Request-ID (the caller's if safe), as does its body."""
    headers = [] if given is None else [(b"x-request-id", given)]
    start, body = await _refuse("/v1/dcc", headers, GatewayMetrics() if counted else None)
    [header] = [value.decode() for name, value in start["headers"] if name == b"x-request-id"]
    assert start["status"] == 404
    assert (b"cache-control", b"no-store") in start["headers"]
    assert orjson.loads(body["body"])["requestId"] == header
    if expected is not None:
        assert header == expected
    else:
        assert len(header) == 32  # a fresh uuid4 hex


async def test_a_refused_path_is_counted_and_logged_as_unmatched(caplog):
    """Pin that a client sent to the probe port shows where every other request shows.

    Before, the 404 was sent in front of the app: no count in `/metrics`, no access-log line,
    so a client pointed at the wrong port left no trace on the gateway.
    """
    metrics = GatewayMetrics()
    with caplog.at_level("INFO", logger="signing_gateway.access"):
        start, _ = await _refuse("/v1/dcc", [(b"x-request-id", b"trace-8")], metrics)
    assert start["status"] == 404
    sample = metrics.registry.get_sample_value
    assert sample("gateway_requests_received_total", {}) == 1
    assert sample("gateway_responses_total", {"route": "unmatched", "status": "404"}) == 1
    assert sample("gateway_requests_in_progress", {}) == 0
    [line] = as_written(caplog.records)
    assert {k: line[k] for k in ("method", "route", "status", "request_id")} == {
        "method": "POST",
        "route": "unmatched",
        "status": 404,
        "request_id": "trace-8",
    }


async def test_a_probe_path_reaches_the_app():
    """The paths given are served by the app itself, as on the main port."""
    reached: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    async def unused(*_: Any) -> None:  # pragma: no cover - the app sends nothing here
        raise AssertionError

    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": [], "state": {}}
    await probes_only(app, {"/healthz"})(scope, unused, unused)
    assert reached == ["/healthz"]


async def _exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send `request` on a new connection to 127.0.0.1:`port`; the status and body answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head[9:12]), body


async def _probe_listener(app: Any, state: dict[str, Any]) -> asyncio.Server:
    """A probe listener for /healthz on a free port of 127.0.0.1: `app`, its lifespan `state`."""
    config = uvicorn.Config(
        app, host="127.0.0.1", http=GatewayHttpProtocol, log_config=None, proxy_headers=False
    )
    config.load()
    server = SimpleNamespace(
        config=config, server_state=ServerState(), lifespan=SimpleNamespace(state=state)
    )
    return await start_probe_listener(server, 0, {"/healthz"})  # type: ignore[arg-type]


async def test_the_probe_listener_serves_the_servers_app_on_its_host_with_its_state():
    """The probe port: the server's host, only the probe paths, the app state's head limits."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = scope["path"].encode()
        headers = [(b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    settings = SimpleNamespace(limits=LimitsSettings(max_header_bytes=4096))
    listener = await _probe_listener(app, {"settings": settings})
    async with listener:
        host, port = listener.sockets[0].getsockname()[:2]
        assert host == "127.0.0.1"
        close = b"Host: g\r\nConnection: close\r\n"
        assert await _exchange(port, b"GET /healthz HTTP/1.1\r\n" + close + b"\r\n") == (
            200,
            b"/healthz",
        )
        status, _ = await _exchange(port, b"POST /v1/dcc HTTP/1.1\r\n" + close + b"\r\n")
        assert status == 404
        padding = b"X-Pad: " + b"p" * 5000 + b"\r\n"
        status, _ = await _exchange(port, b"GET /healthz HTTP/1.1\r\n" + close + padding + b"\r\n")
        assert status == 431  # the app's 4,096 bytes, not the default 32 KiB


@pytest.mark.parametrize("access_log", [True, False], ids=["logged", "not-logged"])
async def test_the_probe_ports_refusals_follow_the_access_log_setting(caplog, access_log):
    """Pin that `observability.access_log` off keeps the probe port's 404s out of the log too.

    They are counted either way.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # pragma: no cover
        raise AssertionError("a refused path reached the app")

    metrics = GatewayMetrics()
    settings = SimpleNamespace(
        limits=LimitsSettings(), observability=SimpleNamespace(access_log=access_log)
    )
    listener = await _probe_listener(app, {"settings": settings, "metrics": metrics})
    with caplog.at_level("INFO", logger="signing_gateway.access"):
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            request = b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
            assert (await _exchange(port, request))[0] == 404
    lines = [r for r in caplog.records if r.name == "signing_gateway.access"]
    assert len(lines) == int(access_log)
    sample = metrics.registry.get_sample_value
    assert sample("gateway_responses_total", {"route": "unmatched", "status": "404"}) == 1
