"""`signing-gateway demo` bounds request heads as `serve` does: 431, 408 and 400 problem+json."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import orjson

from tests.contract.gateway.demo_process import READY_LINE, running_demo, wait_for_line
from tests.contract.gateway.gateway_process import free_port

#: The demo's header timeout here (seconds): short, so that the 408 comes soon.
HEADER_TIMEOUT = 1.0


def _answer(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh connection; everything the gateway sends until it closes."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT + 10) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            received += data
    return received


def _status_and_problem(answer: bytes) -> tuple[int, str, str]:
    """Status, content type and problem type of one HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers["content-type"], orjson.loads(body)["type"]


def test_the_demo_refuses_oversized_slow_and_malformed_heads_as_serve_does(
    tmp_path: Path,
) -> None:
    """A head over `max_header_bytes` is answered 431 problem+json, and so on, as by `serve`.

    Before, the demo served with uvicorn's own protocol: the oversized head was read whole and
    answered 200, the half-sent one waited for ever, the malformed one got a plain-text 400.
    """
    settings = {"LIMITS__HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    port = free_port()  # given, where the other demo tests take a free one
    with running_demo(tmp_path, stdout=subprocess.PIPE, settings=settings, port=port) as demo:
        stdout = demo.process.stdout
        assert stdout is not None
        output = wait_for_line(demo.process, READY_LINE, timeout=30)
        # Keep reading what it prints, so a full pipe can never be what holds it.
        threading.Thread(target=stdout.read, daemon=True).start()
        found = re.search(rb"demo is up at (http://\S+)", output)
        assert found is not None, output[-2000:]
        base = found.group(1).decode()
        assert base == f"http://127.0.0.1:{port}"

        oversized = httpx.get(f"{base}/healthz", headers={"X-Pad": "p" * 40_000}, timeout=10)
        assert oversized.status_code == 431
        assert oversized.headers["content-type"] == "application/problem+json"
        assert oversized.json()["type"].endswith("/header-too-large")

        started = time.monotonic()
        slow = _status_and_problem(_answer(port, b"GET /healthz HTTP/1.1\r\nHost: demo\r\n"))
        assert slow[:2] == (408, "application/problem+json")
        assert slow[2].endswith("/header-timeout")
        assert time.monotonic() - started >= HEADER_TIMEOUT

        malformed = _status_and_problem(
            _answer(port, b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n")
        )
        assert malformed[:2] == (400, "application/problem+json")
        assert malformed[2].endswith("/bad-request")
