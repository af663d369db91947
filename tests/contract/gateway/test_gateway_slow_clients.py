"""Callers that send too much or too slowly: raw sockets against a real `serve` process.

uvicorn alone kept every header line a connection sent (100 MB sent, 100 MB more held, no
answer) and waited for ever on connections that sent nothing, half a head or half a body.
The gateway runs with timeouts of a second here, so that each test waits a second or two.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson
import pytest

from signing_gateway.api import examples
from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    free_port,
    gateway_env,
    running_gateway_process,
)
from tests.support.fake_signer_process import FakeSignerProcess

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
#: uvicorn's keep-alive timeout, which `serve` leaves at uvicorn's default.
KEEP_ALIVE = 5.0
#: Longest a test waits for the gateway to answer or close.
PATIENCE = 5.0
#: The start of a head that signs, up to the body's framing.
POST_JSON = b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def probe_port() -> int:
    """The strict gateway's probe port (`serve --probe-port`)."""
    return free_port()


@pytest.fixture(scope="module")
def strict_gateway(
    eu_signer: FakeSignerProcess, domestic_signer: FakeSignerProcess, probe_port: int
) -> Iterator[GatewayProcess]:
    """A gateway process whose read timeouts are short enough to wait for in a test."""
    env = gateway_env(
        eu_signer.base_url,
        domestic_signer.base_url,
        SIGNING_GATEWAY_LIMITS__HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        SIGNING_GATEWAY_LIMITS__BODY_READ_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    )
    with running_gateway_process(env, "--probe-port", str(probe_port)) as gateway:
        yield gateway


def _port(gateway: GatewayProcess) -> int:
    return int(gateway.base_url.rsplit(":", 1)[1])


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)


def _read_until_closed(sock: socket.socket, started: float) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes the connection, and the time since `started`.

    `started` is read before the connection is opened (or before the bytes whose timeout is
    measured are sent): the gateway's clock starts after that, so an elapsed time at least its
    timeout holds however long this process then waits for a core before it reads. Closed means
    an end of stream or a reset (a close with input unread sends one). Fails the test when the
    connection is still open `PATIENCE` seconds after reading began.
    """
    deadline = time.monotonic() + PATIENCE
    received = bytearray()
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open after {PATIENCE:g} s; received {bytes(received)!r}")
        except ConnectionResetError:
            data = b""
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
    totals: dict[str, dict[str, int]] = signer.stats()["totals"]
    return totals


def test_a_half_sent_body_is_answered_408_after_the_body_timeout(strict_gateway, eu_signer):
    """Headers and the start of a body, then silence: 408 problem+json, closed, nothing signed."""
    before = _signed(eu_signer)
    started = time.monotonic()
    with _connect(_port(strict_gateway)) as sock:
        sock.sendall(POST_JSON + b"Content-Length: 1000\r\n\r\n{")
        answer, closed_after = _read_until_closed(sock, started)
    status, headers, body = _parse(answer)
    assert status == 408
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/problem+json"
    assert orjson.loads(body)["type"].endswith("/body-timeout")
    assert BODY_TIMEOUT <= closed_after < BODY_TIMEOUT + 2
    assert _signed(eu_signer) == before


def test_a_body_over_the_limit_still_arriving_gets_its_413_and_an_orderly_close(
    strict_gateway, eu_signer
):
    """1.5 MB of an announced 50 MB, then reading: the 413, then the end of the stream.

    The gateway answered and closed with the caller's bytes unread, which resets the
    connection (20 of 20 such callers here read their 413 and then a reset); over a network
    the reset drops an answer not yet sent. It now reads on, dropping them, while it closes.
    """
    before = _signed(eu_signer)
    for _ in range(3):
        with _connect(_port(strict_gateway)) as sock:
            sock.sendall(POST_JSON + b"Content-Length: 50000000\r\n\r\n")
            _send_until_refused(sock, b" " * 65536, 24)
            received = bytearray()
            while data := sock.recv(65536):  # a reset raises ConnectionResetError
                received += data
        status, headers, body = _parse(bytes(received))
        assert status == 413
        assert headers["connection"] == "close"
        assert orjson.loads(body)["type"].endswith("/body-too-large")
    assert _signed(eu_signer) == before


def _rss_bytes(gateway: GatewayProcess) -> int:
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def _send_until_refused(sock: socket.socket, data: bytes, times: int) -> None:
    """Send `data` `times` times, or until the gateway stops taking it."""
    with contextlib.suppress(OSError):
        for _ in range(times):
            sock.sendall(data)


def test_oversized_heads_are_answered_431_and_not_kept(strict_gateway):
    """Eight connections each send 1 MiB of header lines: 431 on each, and the 8 MiB not held.

    uvicorn alone grew by 8.4 MiB here (measured), the bounded protocol by 0.8 MiB.
    """
    line = b"X-Pad: " + b"p" * 8000 + b"\r\n"
    before = _rss_bytes(strict_gateway)
    started = time.monotonic()
    connections = [_connect(_port(strict_gateway)) for _ in range(8)]
    try:
        for sock in connections:
            sock.sendall(b"GET /v1/keys HTTP/1.1\r\nHost: gateway\r\n")
            _send_until_refused(sock, line, 2**20 // len(line))
        grown = _rss_bytes(strict_gateway) - before
        answers = [_read_until_closed(sock, started)[0] for sock in connections]
    finally:
        for sock in connections:
            sock.close()
    for answer in answers:
        status, headers, body = _parse(answer)
        assert status == 431
        assert headers["connection"] == "close"
        problem = orjson.loads(body)
        assert problem["type"].endswith("/header-too-large")
        assert problem["instance"] == "/v1/keys"  # the request line was read whole
    assert grown < 3 * 2**20, grown


def test_a_head_of_more_fields_than_the_default_count_is_answered_431(strict_gateway):
    """100 header fields are served; 101 are refused before any route, with the count named."""
    answers = []
    for count in (100, 101):
        # `Host`, `Connection: close` (so that the served answer ends too), and the rest.
        padding = b"".join(b"X-%d: v\r\n" % n for n in range(count - 2))
        head = b"Host: gateway\r\nConnection: close\r\n" + padding
        with _connect(_port(strict_gateway)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n" + head + b"\r\n")
            answers.append(_parse(_read_until_closed(sock, time.monotonic())[0]))
    (served, _, _), (refused, headers, body) = answers
    assert (served, refused) == (200, 431)
    assert headers["connection"] == "close"
    assert orjson.loads(body)["detail"] == "a request may carry at most 100 header fields"


def test_a_half_sent_head_is_answered_408_after_the_header_timeout(strict_gateway):
    """A request line and one header field, then silence: 408 problem+json, then closed."""
    started = time.monotonic()
    with _connect(_port(strict_gateway)) as sock:
        sock.sendall(b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\n")
        answer, closed_after = _read_until_closed(sock, started)
    status, headers, body = _parse(answer)
    assert status == 408
    assert headers["connection"] == "close"
    assert orjson.loads(body)["type"].endswith("/header-timeout")
    assert HEADER_TIMEOUT <= closed_after < HEADER_TIMEOUT + 2


@pytest.mark.parametrize("port", ["main", "probe"])
def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    strict_gateway, probe_port, port
):
    """Connected and silent, on either port: closed unanswered after the header timeout."""
    started = time.monotonic()
    with _connect(_port(strict_gateway) if port == "main" else probe_port) as sock:
        answer, closed_after = _read_until_closed(sock, started)
    assert answer == b""
    assert HEADER_TIMEOUT <= closed_after < HEADER_TIMEOUT + 2


def test_trailer_lines_without_end_close_the_connection(strict_gateway, eu_signer):
    """A chunked body ended by trailer fields that never end is cut off; nothing is signed."""
    before = _signed(eu_signer)
    with _connect(_port(strict_gateway)) as sock:
        sock.sendall(POST_JSON + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n")
        _send_until_refused(sock, b"X-Trailer: " + b"t" * 8000 + b"\r\n", 128)
        # Timed from the last trailer line sent: only an upper bound is checked here.
        _, closed_after = _read_until_closed(sock, time.monotonic())
    assert closed_after < BODY_TIMEOUT  # the size bound, not the body timeout
    assert _signed(eu_signer) == before


def _send(sock: socket.socket, *parts: bytes, pause: float = 0.0) -> None:
    """Send `parts`, `pause` seconds apart."""
    for index, part in enumerate(parts):
        if index:
            time.sleep(pause)
        sock.sendall(part)


def _status(reader: BinaryIO) -> int:
    """The status of the next answer on the connection, read whole (by Content-Length)."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


def test_the_header_clock_runs_per_request_not_between_requests(strict_gateway):
    """Pauses between requests count against keep-alive, not the header timeout, per request.

    Pauses longer than the header timeout between requests keep the connection; a head and a
    body each dripped within their timeouts are served; a later head left half-sent is still
    answered 408.
    """
    pause = HEADER_TIMEOUT * 1.5
    assert pause < KEEP_ALIVE
    body = orjson.dumps(examples.EU_VACCINATION)
    with _connect(_port(strict_gateway)) as sock, sock.makefile("rb") as reader:
        _send(sock, b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        statuses = [_status(reader)]
        time.sleep(pause)
        dripped = (POST_JSON, b"Content-Length: %d\r\n\r\n" % len(body), body[:100], body[100:])
        _send(sock, *dripped, pause=HEADER_TIMEOUT / 3)
        statuses.append(_status(reader))
        time.sleep(pause)
        _send(sock, b"GET /readyz HTTP/1.1\r\nHost: gateway\r\n\r\n")
        statuses.append(_status(reader))
        time.sleep(pause)
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer, closed_after = _read_until_closed(sock, started)
    assert statuses == [200, 200, 200]
    assert _parse(answer)[0] == 408
    assert closed_after < HEADER_TIMEOUT + 2


def test_pipelined_requests_are_answered_in_order(strict_gateway):
    """Three requests in one write get their three answers, in order, on the connection."""
    paths = [b"/healthz", b"/readyz", b"/nowhere"]
    with _connect(_port(strict_gateway)) as sock, sock.makefile("rb") as reader:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: gateway\r\n\r\n" % p for p in paths))
        statuses = [_status(reader) for _ in paths]
    assert statuses == [200, 200, 404]


@pytest.mark.parametrize("padding", [40_000, 400_000], ids=["in-one-read", "over-reads"])
def test_a_pipelined_oversized_head_gets_its_431_after_the_answer_before_it(
    strict_gateway, eu_signer, padding
):
    """The first request's 200, then the 431, then the end of the stream: no reset, no hang.

    The first request signs (a signer call): its answer is still coming when the head behind
    it is refused. 40 KB of head sent with it was served; 400 KB closed the connection
    unanswered, with a reset.
    """
    body = orjson.dumps(examples.EU_VACCINATION)
    first = POST_JSON + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    big = b"GET /v1/keys HTTP/1.1\r\nHost: gateway\r\nX-Pad: " + b"p" * padding + b"\r\n\r\n"
    received = bytearray()
    with _connect(_port(strict_gateway)) as sock:
        sock.sendall(first + big)
        while data := sock.recv(65536):  # a reset or a connection left open fails the test
            received += data
    signed, refused = (b"HTTP/1.1 " + answer for answer in received.split(b"HTTP/1.1 ")[1:])
    signed_status, signed_headers, _ = _parse(signed)
    assert (signed_status, signed_headers.get("connection")) == (200, None)  # the 431 is read
    status, headers, problem = _parse(refused)
    assert (status, headers["connection"]) == (431, "close")
    assert orjson.loads(problem)["instance"] == "/v1/keys"


@pytest.mark.parametrize(
    "behind",
    [
        POST_JSON + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZ\r\n",
        b"GET /v1/keys HTTP/1.1\r\nHost: gateway\r\n\r\n"
        + POST_JSON
        + b"Transfer-Encoding: chunked\r\n\r\nnot a chunk size\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["malformed-chunk", "malformed-chunk-third", "garbage-head"],
)
def test_a_pipelined_request_that_is_not_http_gets_its_400_after_the_answers_before_it(
    strict_gateway, eu_signer, behind
):
    """The answers before it, in order, then a 400 problem+json saying `Connection: close`.

    A request whose chunk framing broke behind one still being answered was not answered:
    the connection ended after the earlier answers, and the caller never learnt why.
    """
    body = orjson.dumps(examples.EU_VACCINATION)
    first = POST_JSON + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    received = bytearray()
    with _connect(_port(strict_gateway)) as sock:
        sock.sendall(first + behind)
        while data := sock.recv(65536):  # a reset or a connection left open fails the test
            received += data
    answers = [_parse(b"HTTP/1.1 " + a) for a in received.split(b"HTTP/1.1 ")[1:]]
    kept = [(200, None)] * (1 + behind.startswith(b"GET /v1/keys"))  # else the 400 goes unread
    assert [(status, headers.get("connection")) for status, headers, _ in answers] == [
        *kept,
        (400, "close"),
    ]
    _, headers, problem = answers[-1]
    assert headers["content-type"] == "application/problem+json"
    assert orjson.loads(problem)["detail"] == "the request is not valid HTTP/1.1"


def test_every_worker_of_serve_workers_bounds_heads_too(eu_signer, domestic_signer):
    """`serve --workers 2` (uvicorn's supervisor): half-sent heads are answered 408 there too."""
    env = gateway_env(
        eu_signer.base_url,
        domestic_signer.base_url,
        SIGNING_GATEWAY_LIMITS__HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
    )
    with running_gateway_process(env, "--workers", "2") as gateway:
        started = time.monotonic()
        connections = [_connect(_port(gateway)) for _ in range(4)]
        try:
            for sock in connections:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            statuses = [_parse(_read_until_closed(sock, started)[0])[0] for sock in connections]
        finally:
            for sock in connections:
                sock.close()
    assert statuses == [408] * 4
