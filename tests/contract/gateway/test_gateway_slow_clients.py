"""Callers that send too slowly: real sockets against a real `signing-gateway serve` process.

The gateway runs with timeouts of a second, so that each test waits a second or two, not the
production defaults.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    gateway_env,
    running_gateway_process,
)
from tests.support.fake_signer_process import FakeSignerProcess

BODY_TIMEOUT = 1.0
#: Longest a test waits for the gateway to answer or close.
PATIENCE = 5.0


@pytest.fixture(scope="module")
def strict_gateway(
    eu_signer: FakeSignerProcess, domestic_signer: FakeSignerProcess
) -> Iterator[GatewayProcess]:
    """A gateway process whose read timeouts are short enough to wait for in a test."""
    env = gateway_env(
        eu_signer.base_url,
        domestic_signer.base_url,
        SIGNING_GATEWAY_LIMITS__BODY_READ_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    )
    with running_gateway_process(env) as gateway:
        yield gateway


def _connect(gateway: GatewayProcess) -> socket.socket:
    host, port = gateway.base_url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=PATIENCE)


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes the connection, and how long that took.

    Fails the test when the connection is still open after `PATIENCE` seconds.
    """
    started = time.monotonic()
    received = bytearray()
    while True:
        sock.settimeout(max(0.01, started + PATIENCE - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open after {PATIENCE:g} s; received {bytes(received)!r}")
        if not data:
            return bytes(received), time.monotonic() - started
        received += data


def _parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers, body


def _signed(signer: FakeSignerProcess) -> dict[str, dict[str, int]]:
    return httpx.get(f"{signer.base_url}/_stats", timeout=10).json()["totals"]


def test_a_half_sent_body_is_answered_408_after_the_body_timeout(strict_gateway, eu_signer):
    """Headers and the start of a body, then silence: 408 problem+json, closed, nothing signed."""
    before = _signed(eu_signer)
    with _connect(strict_gateway) as sock:
        sock.sendall(
            b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        answer, closed_after = _read_until_closed(sock)
    status, headers, body = _parse(answer)
    assert status == 408
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/problem+json"
    assert orjson.loads(body)["type"].endswith("/body-timeout")
    assert BODY_TIMEOUT <= closed_after < BODY_TIMEOUT + 2
    assert _signed(eu_signer) == before
