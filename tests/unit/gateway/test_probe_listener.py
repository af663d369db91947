"""The probe port's refusal of non-probe paths, as an ASGI app on its own."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from signing_gateway.runtime.probe_listener import probes_only


async def _reached(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise AssertionError("a refused path reached the app")


async def _refuse(path: str, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "state": {}}
    await probes_only(_reached, {"/healthz"})(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("given", "expected"),
    [(b"trace-7", "trace-7"), (b"bad id\n", None), (None, None)],
    ids=["caller's", "unsafe", "none"],
)
async def test_refused_path_answers_with_a_request_id(given, expected):
    """A 404 on the probe port carries X-Request-ID (the caller's if safe), as does its body."""
    headers = [] if given is None else [(b"x-request-id", given)]
    start, body = await _refuse("/v1/dcc", headers)
    header = dict(start["headers"])[b"x-request-id"].decode()
    assert start["status"] == 404
    assert orjson.loads(body["body"])["requestId"] == header
    if expected is not None:
        assert header == expected
    else:
        assert len(header) == 32  # a fresh uuid4 hex
