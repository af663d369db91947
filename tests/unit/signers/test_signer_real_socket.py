"""Both transports against a raw asyncio server on 127.0.0.1: refused, hang, reset, trickle.

These pin what respx cannot: that real socket failures from httpcore and from aiohttp land in
the same SignerError classes, that timeouts fire, and what bytes reach the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import gzip
import socket
import struct
import termios
import time
import tracemalloc
import weakref
import zlib
from dataclasses import dataclass, field

import httpx
import pytest

from signing_gateway.app import _client, _signer_tls
from signing_gateway.settings import SignerSettings
from signing_gateway.signers.answers import MAX_RESPONSE_BYTES
from signing_gateway.signers.domestic import DomesticSignerClient
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerConnectionLostError,
    SignerMalformedResponseError,
    SignerResponseError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
)
from signing_gateway.signers.eu import EuSignerClient
from signing_gateway.signers.http import build_signer_client
from signing_gateway.signers.transport import SignerTransport
from tests.support.polling import until

READ_TIMEOUT = 0.3
STATIC_OK = b'{"qr": "NL2:AB", "proofIdentifier": "cA=="}'
#: The answer to a second request, and an answer no request asked for.
SECOND_OK = b'{"qr": "NL2:CD", "proofIdentifier": "cA=="}'
UNASKED_OK = b'{"qr": "NL2:XX", "proofIdentifier": "cA=="}'
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
BUSY_HEAD = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"


def _with_length(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _stored_gzip(size: int) -> bytes:
    """STATIC_OK padded with spaces, in a gzip that stores it uncompressed: `size` bytes."""
    overhead = len(gzip.compress(STATIC_OK, compresslevel=0, mtime=0)) - len(STATIC_OK)
    return gzip.compress(STATIC_OK.ljust(size - overhead), compresslevel=0, mtime=0)


def _chunked(head: bytes, body: bytes) -> bytes:
    return head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


#: Behaviours that write one answer as it stands (then close, unless kept alive).
FIXED_ANSWERS = {
    "ok": _with_length(OK_HEAD, STATIC_OK),
    "cookie": _with_length(OK_HEAD + b"Set-Cookie: session=abc; Path=/\r\n", STATIC_OK),
    "truncated": OK_HEAD + b"Content-Length: 100\r\n\r\n" + STATIC_OK[:10],
    # A Content-Length 10 short of the body: the answer is its first bytes, the rest a surplus.
    "cl-smaller": OK_HEAD + b"Content-Length: %d\r\n\r\n" % (len(STATIC_OK) - 10) + STATIC_OK,
    "garbage": b"HELLO SIGNER\r\n\r\n",
    # A refusal whose 64-byte body ends after 4 bytes with the connection.
    "cut-503": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\n"
               b"Content-Length: 64\r\n\r\nbusy",
    "redirect": _with_length(b"HTTP/1.1 302 Found\r\nLocation: /issue_static\r\n", b""),
    "gzip": _with_length(OK_HEAD + b"Content-Encoding: gzip\r\n", gzip.compress(STATIC_OK)),
    "bad-gzip": _with_length(OK_HEAD + b"Content-Encoding: gzip\r\n", b"{}"),
    # A gzip without its CRC32 and length trailer, one with bytes after it, one of two members.
    "gzip-truncated": _with_length(OK_HEAD + b"Content-Encoding: gzip\r\n",
                                   gzip.compress(STATIC_OK)[:-8]),
    "gzip-trailing": _with_length(OK_HEAD + b"Content-Encoding: gzip\r\n",
                                  gzip.compress(STATIC_OK) + b"GARBAGE-NOT-GZIP"),
    "gzip-two-members": _with_length(OK_HEAD + b"Content-Encoding: gzip\r\n",
                                     gzip.compress(STATIC_OK) + gzip.compress(b"[1,2,3]")),
    # A zlib stream without its Adler-32 trailer.
    "deflate-truncated": _with_length(OK_HEAD + b"Content-Encoding: deflate\r\n",
                                      zlib.compress(STATIC_OK)[:-4]),
    "deflate": _with_length(OK_HEAD + b"Content-Encoding: deflate\r\n", zlib.compress(STATIC_OK)),
    # 16 MB of spaces in 16 KB of gzip: well within MAX_RESPONSE_BYTES on the wire.
    "gzip-bomb": _with_length(
        OK_HEAD + b"Content-Encoding: gzip\r\n", gzip.compress(b" " * (16 << 20), mtime=0)
    ),
    "brotli": _with_length(OK_HEAD + b"Content-Encoding: br\r\n", STATIC_OK),
    "identity": _with_length(OK_HEAD + b"Content-Encoding: identity\r\n", STATIC_OK),
    "gzip-spelt": _with_length(OK_HEAD + b"Content-Encoding: Gzip , identity\r\n",
                               gzip.compress(STATIC_OK)),
    # A list with empty elements, which RFC 9110 (5.6.1) has a recipient ignore.
    "gzip-in-commas": _with_length(OK_HEAD + b"Content-Encoding: , gzip,\r\n",
                                   gzip.compress(STATIC_OK)),
    # The name gzip had before its registration, which RFC 9110 (8.4.1.3) reads as gzip.
    "x-gzip": _with_length(OK_HEAD + b"Content-Encoding: X-Gzip\r\n", gzip.compress(STATIC_OK)),
    "gzip-twice": _with_length(OK_HEAD + b"Content-Encoding: gzip, gzip\r\n",
                               gzip.compress(gzip.compress(STATIC_OK))),
    # Raw deflate, without zlib's wrapper: some servers send it so, and httpx reads it.
    "raw-deflate": _with_length(OK_HEAD + b"Content-Encoding: deflate\r\n",
                                zlib.compress(STATIC_OK)[2:-4]),
    # One byte over the body limit on the wire, less inflated, and no Content-Length to say so.
    "chunked-gzip-over-limit": _chunked(
        OK_HEAD + b"Content-Encoding: gzip\r\n", _stored_gzip(MAX_RESPONSE_BYTES + 1)
    ),
    # A switch to another protocol that the request never asked for (it sends no Upgrade).
    "switching": b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                 b"Upgrade: websocket\r\n\r\n",
    # Transfer codings besides chunked, which the request never offered (it sends no TE).
    "gzip-chunked": OK_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                    % (len(gzip.compress(STATIC_OK)), gzip.compress(STATIC_OK)),
    "unknown-chunked": _chunked(OK_HEAD.replace(b"\r\n", b"\r\nTransfer-Encoding: x-y\r\n", 1),
                                STATIC_OK),
    # Empty list elements and fields (RFC 9110 5.6.1), which parsers read differently.
    "chunked-after-comma": _chunked(OK_HEAD, STATIC_OK).replace(b": chunked", b": ,chunked"),
    "chunked-before-comma": _chunked(OK_HEAD, STATIC_OK).replace(b": chunked", b": chunked,"),
    "chunked-after-empty": _chunked(OK_HEAD + b"Transfer-Encoding: \r\n", STATIC_OK),
    "empty-with-length": _with_length(OK_HEAD + b"Transfer-Encoding: \r\n", STATIC_OK),
    # One field saying chunked, however spelt: read.
    "chunked-spelt": _chunked(OK_HEAD, STATIC_OK).replace(b": chunked", b":  Chunked "),
    # Two lengths, the way a response is split or smuggled (RFC 9112 6.3).
    "chunked-with-length": _chunked(OK_HEAD + b"Content-Length: 5\r\n", STATIC_OK),
    # A reason phrase in Latin-1: obs-text, which RFC 9110 allows there.
    "latin1-reason": _with_length(b"HTTP/1.1 200 R\xe9ponse\r\nContent-Type: application/json\r\n",
                                  STATIC_OK),
    "latin1-503": _with_length(b"HTTP/1.1 503 Indisponible \xe0 l'instant\r\nRetry-After: 3\r\n",
                               b"busy"),
    # Just the body limit on the wire, a little less inflated.
    "gzip-at-limit": _with_length(
        OK_HEAD + b"Content-Encoding: gzip\r\n", _stored_gzip(MAX_RESPONSE_BYTES)
    ),
}  # fmt: skip
#: Behaviours that write the start of an answer and then send nothing more.
STALLING_ANSWERS = {
    "trickle": OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(STATIC_OK) + STATIC_OK[:5],
    "huge": OK_HEAD + b"Content-Length: 10000000\r\n\r\n" + STATIC_OK[:5],
}


@dataclass
class RawServer:
    """A one-behaviour HTTP/1.1 server that records request heads and bodies."""

    behaviour: str
    port: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task] = field(default_factory=set)
    #: Set when the client closes a connection whose answer's body is still unfinished.
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    #: Connections accepted, and closed.
    connections: int = 0
    closed: int = 0
    #: For each request, in order, the connection it came on (1 for the first accepted).
    served_by: list[int] = field(default_factory=list)
    #: Set once an answer no request asked for (or its start) has been sent ("surplus-*").
    unasked_sent: asyncio.Event = field(default_factory=asyncio.Event)
    #: What is still to send of that answer, by connection ("surplus-split").
    unasked_rest: dict[asyncio.StreamWriter, bytes] = field(default_factory=dict)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, then misbehave as configured ("busy": every request, kept alive)."""
        self.tasks.add(asyncio.current_task())
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                self.served_by.append(number)
                self.arrived.set()
                await self.respond(writer)
                if self.behaviour.startswith("stalled-"):
                    # The body stays unfinished; wait for the client to give the connection up.
                    if not await reader.read():
                        self.dropped.set()
                    break
                if not self.behaviour.startswith(("busy", "cookie", "surplus", "kept-")):
                    break
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()

    async def respond(self, writer: asyncio.StreamWriter) -> None:
        """Answer (or not) according to the behaviour ("kept-X": X, the connection kept alive)."""
        if (fixed := FIXED_ANSWERS.get(self.behaviour.removeprefix("kept-"))) is not None:
            writer.write(fixed)
            await writer.drain()
        elif self.behaviour in STALLING_ANSWERS:
            writer.write(STALLING_ANSWERS[self.behaviour])
            await writer.drain()
            await self.release.wait()
        elif self.behaviour.startswith("busy"):
            # "busy-N": a refusal body of exactly N bytes.
            size = self.behaviour.removeprefix("busy").removeprefix("-")
            refusal = b"x" * int(size) if size else b'{"error": "busy"}'
            writer.write(_with_length(BUSY_HEAD, refusal))
            await writer.drain()
        elif self.behaviour.startswith("surplus"):
            await self.respond_with_surplus(writer)
        elif self.behaviour == "kept-early-hints":
            # An interim 103 first, its own read apart: the answer owed is the 200 after it.
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </keys>; rel=preload\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(FIXED_ANSWERS["ok"])
            await writer.drain()
        elif self.behaviour == "hang":
            await self.release.wait()
        elif self.behaviour == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif self.behaviour == "close":
            pass  # EOF before any response byte
        elif self.behaviour.startswith("stalled-"):
            # A refusal whose 64-byte body stops after 4 bytes: status and headers are in.
            status = self.behaviour.removeprefix("stalled-").encode()
            writer.write(b"HTTP/1.1 %s Refused\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 64\r\n\r\nbusy" % status)  # fmt: skip
            await writer.drain()

    async def respond_with_surplus(self, writer: asyncio.StreamWriter) -> None:
        """Follow the first answer by one no request asked for; answer the next one as asked.

        The surplus comes in the same write ("surplus"; "surplus-held": once the test releases
        the first answer), or once the test releases it
        ("surplus-later"), while the connection waits for its next call; or just its status
        line then, the rest before the answer to a next call on that connection
        ("surplus-split"); or just its status line in the same write, the rest as with
        "surplus-split" ("surplus-start"). Or bytes that are no HTTP, in the same write
        ("surplus-garbage").
        """
        unasked = _with_length(OK_HEAD, UNASKED_OK)
        cut = unasked.index(b"\r\n") + 2
        if len(self.requests) > 1:
            writer.write(self.unasked_rest.pop(writer, b"") + _with_length(OK_HEAD, SECOND_OK))
        elif self.behaviour == "surplus-garbage":
            writer.write(_with_length(OK_HEAD, STATIC_OK) + b"GARBAGE\r\n")
        elif self.behaviour == "surplus-start":
            self.unasked_rest[writer] = unasked[cut:]
            writer.write(_with_length(OK_HEAD, STATIC_OK) + unasked[:cut])
        elif self.behaviour in {"surplus", "surplus-held"}:
            if self.behaviour == "surplus-held":
                await self.release.wait()
            writer.write(_with_length(OK_HEAD, STATIC_OK) + unasked)
        else:
            writer.write(_with_length(OK_HEAD, STATIC_OK))
            await writer.drain()
            await self.release.wait()
            if self.behaviour == "surplus-split":
                unasked, self.unasked_rest[writer] = unasked[:cut], unasked[cut:]
            writer.write(unasked)
            await writer.drain()
            self.unasked_sent.set()
        await writer.drain()


@contextlib.asynccontextmanager
async def raw_server(behaviour: str):
    """Run a RawServer on a free loopback port; stop it and its handlers afterwards."""
    state = RawServer(behaviour)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.release.set()
        server.close()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await server.wait_closed()


def client_for(port: int, transport: str, *, host: str = "127.0.0.1", **overrides):
    """A signer client for a loopback port with short timeouts."""
    options = {
        "connect_timeout": 1.0,
        "read_timeout": READ_TIMEOUT,
        "write_timeout": 1.0,
        "pool_timeout": 1.0,
        "max_connections": 4,
        **overrides,
    }
    return build_signer_client(f"http://{host}:{port}", transport=transport, **options)


async def issue_static(http):
    """One domestic issue_static call with a request id."""
    return await DomesticSignerClient(http).issue_static(
        {"a": "1"}, headers={"X-Request-ID": "r-1"}
    )


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def unaccepting_port():
    """A loopback port whose listen queue is full: a new connection is never completed."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_signer_cookie_is_never_sent_back(transport):
    """Neither httpx's jar nor aiohttp's keeps a cookie a signer sets (one client, many callers).

    By host name: aiohttp's own jar ignores cookies from IP addresses anyway.
    """
    async with (
        raw_server("cookie") as server,
        client_for(server.port, transport, host="localhost") as http,
    ):
        for _ in range(2):
            await issue_static(http)
        heads = [head.lower() for head, _ in server.requests]
    assert len(heads) == 2
    assert all(b"\r\ncookie:" not in head for head in heads)


async def test_exact_bytes_reach_the_wire(transport):
    """Both transports send Content-Type: application/json exactly, the request id and the body."""
    async with raw_server("ok") as server, client_for(server.port, transport) as http:
        result = await issue_static(http)
    assert result.qr == "NL2:AB"
    head, body = server.requests[0]
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert lines[0] == b"post /issue_static http/1.1"
    assert [line for line in lines if line.startswith(b"content-type:")] == [
        b"content-type: application/json"
    ]
    assert b"x-request-id: r-1" in lines
    assert body == b'{"credentialAttributes":{"a":"1"}}'


async def test_connection_refused_is_connect_error(transport):
    """Nothing listening gives SignerConnectError (the request never reached a signer)."""
    port = free_port()
    async with client_for(port, transport) as http:
        with pytest.raises(SignerConnectError) as raised:
            await issue_static(http)
    # The error names the signer and the exception class, never where the signer is.
    assert "127.0.0.1" not in str(raised.value)
    assert str(port) not in str(raised.value)


async def test_a_signer_that_completes_no_connection_times_out_at_the_connect_timeout(transport):
    """A connect that never completes ends at the connect timeout, not the pool's or the read's."""
    with unaccepting_port() as port:
        async with client_for(
            port, transport, connect_timeout=0.2, pool_timeout=2.0, read_timeout=5.0
        ) as http:
            started = time.monotonic()
            with pytest.raises(SignerTimeoutError) as raised:
                await issue_static(http)
            assert time.monotonic() - started < 1.5
    assert raised.value.before_sending, "a connect that never completed sent nothing"


async def test_proxy_variables_are_not_followed(transport, monkeypatch):
    """Signers are reached where the settings say: the environment's proxy variables are ignored."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, nowhere)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with raw_server("ok") as server, client_for(server.port, transport) as http:
        assert (await issue_static(http)).qr == "NL2:AB"
    assert len(server.requests) == 1


async def test_hanging_signer_times_out_within_read_timeout(transport):
    """A signer that never answers gives SignerTimeoutError soon after the read timeout."""
    async with raw_server("hang") as server, client_for(server.port, transport) as http:
        started = time.monotonic()
        with pytest.raises(SignerTimeoutError) as raised:
            await issue_static(http)
        elapsed = time.monotonic() - started
    assert READ_TIMEOUT * 0.8 <= elapsed < READ_TIMEOUT + 1.0
    assert not raised.value.before_sending, "the request was sent: the signer may have acted"


async def test_trickling_body_times_out(transport):
    """A body that stops mid-way gives SignerTimeoutError, not a hang."""
    async with raw_server("trickle") as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerTimeoutError) as raised:
            await issue_static(http)
    assert not raised.value.before_sending


@pytest.mark.parametrize(
    "behaviour",
    ["reset", "close", "truncated", "garbage", "gzip-chunked", "unknown-chunked",
     "chunked-with-length", "chunked-after-comma", "chunked-before-comma",
     "chunked-after-empty", "empty-with-length"],
)  # fmt: skip
async def test_broken_connection_is_connection_lost(transport, behaviour):
    """Reset, EOF or bytes that are no HTTP answer, or a truncated body: connection lost.

    aiohttp raises its own ClientResponseError for a status line it cannot parse, which
    httpx_aiohttp passes on unmapped. So is a body framed in a way this client does not read:
    a transfer coding besides chunked (httpcore refused it; aiohttp took the body as it came,
    gzip's bytes, or a body in a coding it did not know, as plain JSON) or chunked beside a
    Content-Length (aiohttp refused it; httpcore read it). And a Transfer-Encoding other than
    one field saying chunked: an empty element or field beside it, or an empty one alone
    (httpcore refused them; aiohttp read them, `chunked,` as no chunking, a malformed body).
    """
    async with raw_server(behaviour) as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerConnectionLostError):
            await issue_static(http)
    assert len(server.requests) == 1  # the request did reach the signer


@pytest.mark.parametrize(
    "behaviour",
    ["gzip-chunked", "unknown-chunked", "chunked-with-length", "chunked-after-comma",
     "empty-with-length"],
)  # fmt: skip
async def test_the_connection_of_an_answer_refused_for_its_framing_is_closed(transport, behaviour):
    """An answer refused for its framing leaves its connection neither held nor pooled.

    With one connection allowed, the next call goes out on a new one (and is refused for
    the same reason). On aiohttp a refused answer whose body had all come already went back
    to the pool (aiohttp releases a connection once its answer is in), and the next call
    was sent on it.
    """
    async with (
        raw_server(f"kept-{behaviour}") as server,
        client_for(server.port, transport, max_connections=1, pool_timeout=0.5) as http,
    ):
        for _ in range(2):
            with pytest.raises(SignerConnectionLostError):
                await issue_static(http)
    assert len(server.requests) == 2
    assert server.connections == 2, "the refused answer's connection was used again"


async def test_an_interim_answer_leaves_the_connection_reusable(transport):
    """A 103 before the 200 owed is not the answer: the bytes after it are no surplus.

    Taken for the answer, the 200 that followed counted as bytes past it, and every call
    with an interim answer cost its connection.
    """
    async with (
        raw_server("kept-early-hints") as server,
        client_for(server.port, transport, max_connections=1) as http,
    ):
        for _ in range(2):
            assert (await issue_static(http)).qr == "NL2:AB"
    assert len(server.requests) == 2
    assert server.connections == 1, "the connection was closed after an interim answer"


@pytest.mark.parametrize(
    ("pool_timeout", "connect_timeout"), [(0.2, 1.0), (0.6, 0.1)], ids=["pool", "connect"]
)
async def test_pool_exhaustion_times_out(transport, pool_timeout, connect_timeout):
    """With one connection busy, a second call waits the pool timeout, and not much longer.

    However short the connect timeout: on aiohttp its `connect` covers the pool wait too.
    """
    async with (
        raw_server("hang") as server,
        client_for(
            server.port, transport, max_connections=1, read_timeout=5.0,
            pool_timeout=pool_timeout, connect_timeout=connect_timeout,
        ) as http,
    ):  # fmt: skip
        first = asyncio.create_task(issue_static(http))
        async with asyncio.timeout(2.0):
            await server.arrived.wait()
        started = time.monotonic()
        with pytest.raises(SignerTimeoutError) as raised:
            await issue_static(http)
        assert pool_timeout * 0.8 <= time.monotonic() - started < 2.5
        assert raised.value.before_sending, "a call that found no connection sent nothing"
        assert len(server.requests) == 1
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first


async def test_every_connection_up_to_the_limit_is_kept_alive(transport):
    """Calls as many at once as `max_connections` find all their connections kept when idle.

    With one fewer kept alive, every burst to a busy signer closed a connection and opened
    (and, over TLS, handshook) a new one.
    """
    async with (
        raw_server("kept-ok") as server,
        client_for(server.port, transport, max_connections=3) as http,
    ):
        for _ in range(3):
            await asyncio.gather(*(issue_static(http) for _ in range(3)))
        assert len(server.requests) == 9
        assert server.connections == 3, "an idle connection within the limit was closed"


async def test_calls_after_a_burst_keep_to_the_connection_used_last(transport):
    """After a burst, calls one at a time all go on one connection; the idle ones expire.

    Taking the connection idle longest, the pool cycled through every connection a burst
    had opened, each gone cold in the caches by its turn and none idle long enough to expire.
    """
    async with raw_server("kept-ok") as server:
        settings = SignerSettings(
            url=f"http://127.0.0.1:{server.port}",
            transport=transport,
            keep_alive_seconds=1.0,  # far above a call's pause: the one in use never expires
        )
        async with _client(settings, _signer_tls(settings)) as http:
            await asyncio.gather(*(issue_static(http) for _ in range(4)))
            assert server.connections == 4
            # One call every 0.1 s: on one connection, each of the others idle since the burst.
            for _ in range(16):
                await issue_static(http)
                await asyncio.sleep(0.1)
            assert len(set(server.served_by[4:])) == 1, server.served_by
            # aiohttp's clean-up runs once a keep-alive expiry and closes what has been idle
            # longer: the three left since the burst, within two runs of it.
            await until(lambda: server.closed == 3, limit=3.0)
            await issue_static(http)
        assert server.connections == 4, "a call opened a connection while one was idle"


@pytest.mark.parametrize(("keep_alive", "connections"), [(0.2, 2), (5.0, 1)])
async def test_a_signers_keep_alive_setting_closes_its_idle_connections(
    transport, keep_alive, connections
):
    """The gateway's client for a signer keeps an idle connection `keep_alive_seconds`, no longer.

    A signer whose own idle timeout is shorter than the gateway's closes connections the
    gateway may be reusing at that moment; the setting lets the gateway close first. Before
    it, every signer's client kept idle connections 5 s, whatever was configured.
    """
    async with raw_server("kept-ok") as server:
        settings = SignerSettings(
            url=f"http://127.0.0.1:{server.port}",
            transport=transport,
            keep_alive_seconds=keep_alive,
        )
        async with _client(settings, _signer_tls(settings)) as http:
            await issue_static(http)
            await asyncio.sleep(0.6)
            await issue_static(http)
        assert len(server.requests) == 2
        assert server.connections == connections


async def test_a_finished_call_leaves_nothing_for_the_cyclic_collector(transport):
    """The signer's answer is freed by reference counting as soon as the call returns.

    httpx links every response and its stream both ways; left so, each finished call's
    response, transport response, headers and buffers (~50 objects) waited for the cyclic
    garbage collector, which freed them on the event loop thousands at a time under load.
    """
    responses: list[weakref.ref[httpx.Response]] = []

    async def keep_a_weak_reference(response: httpx.Response) -> None:
        responses.append(weakref.ref(response))

    async with raw_server("ok") as server, client_for(server.port, transport) as http:
        http.event_hooks = {"request": [], "response": [keep_a_weak_reference]}
        gc.collect()
        gc.disable()
        try:
            result = await issue_static(http)
            (response,) = responses
            assert response() is None, "the response outlived its call"
        finally:
            gc.enable()
    assert result.qr == "NL2:AB"


async def test_a_refused_call_keeps_its_connection_and_leaves_no_cycle(transport):
    """A signer's 503 is raised without a reference cycle, on a connection that is reused.

    The raised error's traceback holds the frames it passed through; a frame that still named
    the error made a cycle, so every failed call (every call, in a signer outage) left its
    response, request and headers to the cyclic collector. And a refusal closed with its body
    unread closed its connection: a throttling signer saw a new connection per refused call.
    """
    responses: list[weakref.ref[httpx.Response]] = []

    async def keep_a_weak_reference(response: httpx.Response) -> None:
        responses.append(weakref.ref(response))

    async with raw_server("busy") as server, client_for(server.port, transport) as http:
        http.event_hooks = {"request": [], "response": [keep_a_weak_reference]}
        with pytest.raises(SignerThrottledError):  # warm-up: the pool's connection, imports
            await issue_static(http)
        responses.clear()
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                with pytest.raises(SignerThrottledError):
                    await issue_static(http)
            assert [response() for response in responses] == [None, None, None]
            assert gc.collect() == 0
        finally:
            gc.enable()
        assert len(server.requests) == 4
        assert len(server.tasks) == 1, "a refused call's connection was not reused"


@pytest.mark.parametrize(
    ("status", "error"), [(429, SignerThrottledError), (500, SignerServerError)]
)
async def test_a_refusal_whose_body_stalls_is_raised_at_once(transport, status, error):
    """A non-2xx whose small body stalls raises its status error at once, on a dropped connection.

    Its status and Retry-After are in; waiting for the body until the attempt's end turned a
    429 into an attempt timeout (a 504 and a breaker failure). The unfinished connection is
    closed, not pooled: the next call must not read the rest of that body as its answer.
    """
    async with (
        raw_server(f"stalled-{status}") as server,
        client_for(server.port, transport, read_timeout=5.0) as http,
    ):
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(SignerResponseError) as raised:
                async with asyncio.timeout(2.0):  # the attempt's bound, as the policy sets it
                    await issue_static(http)
            assert time.monotonic() - started < 0.5  # its 100 ms drain, not the attempt's 2 s
            assert type(raised.value) is error
            assert raised.value.status_code == status
            try:
                async with asyncio.timeout(2.0):
                    await server.dropped.wait()
            except TimeoutError:
                pytest.fail("a connection with an unfinished body was kept")
            server.dropped.clear()
    assert len(server.requests) == 2
    if error is SignerThrottledError:
        assert raised.value.retry_after == 1.0


async def test_a_refusal_cut_off_in_its_body_is_still_the_refusal(transport):
    """A 503 whose connection ends inside its body is the 503, Retry-After and all."""
    async with raw_server("cut-503") as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerThrottledError) as raised:
            await issue_static(http)
    assert raised.value.retry_after == 2.0


async def test_a_refusal_body_of_4_kib_is_read_so_the_connection_is_reused(transport):
    """A refusal body declared at exactly 4096 bytes is still read to its end and pooled."""
    async with raw_server("busy-4096") as server, client_for(server.port, transport) as http:
        for _ in range(3):
            with pytest.raises(SignerThrottledError):
                await issue_static(http)
        assert len(server.requests) == 3
        assert len(server.tasks) == 1, "a refused call's connection was not reused"


@pytest.mark.parametrize(
    ("behaviour", "status", "message"),
    [("huge", 200, "body over"), ("redirect", 302, "unexpected HTTP 302"),
     ("switching", 101, "unexpected HTTP 101"),
     ("bad-gzip", 200, "undecodable body"), ("gzip-twice", 200, "undecodable body"),
     ("chunked-gzip-over-limit", 200, "body over"), ("cl-smaller", 200, "body is not JSON")],
)  # fmt: skip
async def test_answers_outside_the_contract_are_malformed(transport, behaviour, status, message):
    """Malformed: a 2xx declaring more than MAX_RESPONSE_BYTES, a redirect, an undecodable body.

    The first is refused on its headers, while its body stalls; the redirect is not followed.
    A 101 no request asked for is a status like the redirect, on both transports (httpcore
    refused it as a protocol error, a lost connection; aiohttp handed the status on).
    Undecodable too: two codings, even two known ones. A compressed body sent chunked is
    refused once its bytes on the wire pass the limit, whatever they would inflate to.
    A `Content-Length` short of the body sent is an answer of that length (not JSON here),
    the rest a surplus, on both transports (aiohttp's parser refused the rest, and that
    refusal, a lost connection, took the place of the answer).
    """
    async with raw_server(behaviour) as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerMalformedResponseError, match=message) as raised:
            await issue_static(http)
    assert raised.value.status_code == status
    assert len(server.requests) == 1


async def test_a_compressed_answer_is_decoded_once(transport):
    """A signer compressing despite `Accept-Encoding: identity` is read the same on both."""
    async with raw_server("gzip") as server, client_for(server.port, transport) as http:
        result = await issue_static(http)
    assert (result.qr, result.proof_identifier) == ("NL2:AB", "cA==")


async def test_a_deflated_answer_is_decoded(transport):
    """`Content-Encoding: deflate` (zlib-wrapped) is read as httpx reads it, on both."""
    async with raw_server("deflate") as server, client_for(server.port, transport) as http:
        result = await issue_static(http)
    assert (result.qr, result.proof_identifier) == ("NL2:AB", "cA==")


@pytest.mark.parametrize(
    "behaviour", ["gzip-truncated", "gzip-trailing", "gzip-two-members", "deflate-truncated"]
)
async def test_a_compressed_answer_cut_short_or_with_bytes_after_it_is_malformed(
    transport, behaviour
):
    """A compressed body must end where its stream ends: no trailer missing, nothing after.

    All were taken before, whatever came of them: a gzip without its CRC and length (which
    are what tell a whole body from a cut one), junk after the stream, a second member.
    """
    async with raw_server(behaviour) as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerMalformedResponseError, match="undecodable body") as raised:
            await issue_static(http)
    assert raised.value.status_code == 200
    assert len(server.requests) == 1


async def test_an_answer_in_a_coding_not_asked_for_nor_known_is_malformed(transport):
    """A coding other than gzip or deflate (here br, which this client cannot undo) is refused."""
    async with raw_server("brotli") as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerMalformedResponseError, match="undecodable body"):
            await issue_static(http)


async def test_a_compressed_answer_is_inflated_no_further_than_the_body_limit(transport):
    """16 KB of gzip that inflate to 16 MB are refused having made about the limit, not 16 MB.

    Its `Content-Length` is within `MAX_RESPONSE_BYTES`, and httpx inflated each chunk whole
    before the size check saw it: 48 MB allocated for this one answer.
    """
    async with raw_server("gzip-bomb") as server, client_for(server.port, transport) as http:
        tracemalloc.start()
        try:
            with pytest.raises(SignerMalformedResponseError, match="body over") as raised:
                await issue_static(http)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert raised.value.status_code == 200
    assert peak < 16 * MAX_RESPONSE_BYTES, f"{peak / 1e6:.1f} MB allocated for one answer"


async def test_a_compressed_answer_of_just_the_body_limit_on_the_wire_is_taken(transport):
    """Pin that gzip of exactly MAX_RESPONSE_BYTES on the wire, inflating to less, is read."""
    assert len(_stored_gzip(MAX_RESPONSE_BYTES)) == MAX_RESPONSE_BYTES
    async with raw_server("gzip-at-limit") as server, client_for(server.port, transport) as http:
        result = await issue_static(http)
    assert (result.qr, result.proof_identifier) == ("NL2:AB", "cA==")


async def test_a_get_carries_no_body_headers(transport):
    """A probe's GET sends no body, and no header that announces one."""
    async with raw_server("ok") as server, client_for(server.port, transport) as http:
        await EuSignerClient(http).probe()
    head, body = server.requests[0]
    lines = [line.lower() for line in head.split(b"\r\n")]
    assert lines[0] == b"get /healthz http/1.1"
    announcing = (b"content-length:", b"content-type:", b"transfer-encoding:")
    assert [line for line in lines if line.startswith(announcing)] == []
    assert body == b""


async def test_a_reason_phrase_outside_utf_8_is_read_on_both_transports(transport):
    """An answer whose reason phrase is not UTF-8 (obs-text) is read as its status says.

    aiohttp keeps such a phrase with surrogate escapes; encoding it back strictly raised a
    UnicodeEncodeError, no SignerError: the gateway answered 500 and dropped a signed answer.
    """
    async with raw_server("latin1-reason") as server, client_for(server.port, transport) as http:
        result = await issue_static(http)
    assert (result.qr, result.proof_identifier) == ("NL2:AB", "cA==")
    async with raw_server("latin1-503") as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerThrottledError) as raised:
            await issue_static(http)
    assert raised.value.retry_after == 3.0


@pytest.mark.parametrize(
    "behaviour",
    ["identity", "gzip-spelt", "gzip-in-commas", "raw-deflate", "x-gzip", "chunked-spelt"],
)
async def test_content_codings_are_read_as_rfc_9110_spells_them(transport, behaviour):
    """`identity`, any case and spacing of a coding, raw deflate and `x-gzip` are all read.

    Empty elements of a coding list are ignored, as RFC 9110 (5.6.1) asks. `x-gzip` was
    refused as undecodable, though RFC 9110 (8.4.1.3) asks a recipient to take it as gzip.
    A `Transfer-Encoding` of one `chunked` in any case and spacing is read too.
    """
    async with raw_server(behaviour) as server, client_for(server.port, transport) as http:
        result = await issue_static(http)
    assert (result.qr, result.proof_identifier) == ("NL2:AB", "cA==")


async def test_a_probe_answered_with_garbage_is_a_lost_connection(transport):
    """Pin that a probe's unreadable answer is a SignerError on both transports, not aiohttp's."""
    async with raw_server("garbage") as server, client_for(server.port, transport) as http:
        with pytest.raises(SignerConnectionLostError) as raised:
            await EuSignerClient(http).probe()
    assert raised.value.endpoint == "probe"


def _unread(sock: socket.socket) -> int:
    """How many bytes the kernel holds for `sock` that nobody has read yet."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def _an_idle_connection_holds_bytes(http: httpx.AsyncClient) -> bool:
    """Whether bytes sent (to loopback, where they arrive as sent) have reached an idle connection.

    Read from each transport's own pool: aiohttp's protocol, which reads what arrives at once,
    has taken them in (its socket has nothing left to read), or httpcore's socket has them.
    """
    transport = http._transport
    if isinstance(transport, SignerTransport):
        idle = [p for waiting in transport.client.connector._conns.values() for p, _ in waiting]
        return bool(idle) and not any(
            _unread(protocol.transport.get_extra_info("socket")) for protocol in idle
        )
    return any(
        connection._connection._network_stream.get_extra_info("is_readable")
        for connection in transport._pool.connections
        if connection.is_idle()
    )


@pytest.mark.parametrize(
    "behaviour",
    ["surplus", "surplus-later", "surplus-split", "surplus-start", "surplus-garbage"],
)  # fmt: skip
async def test_bytes_past_an_answer_are_never_the_next_calls_answer(transport, behaviour):
    """A signer sending an answer more than it owes: the next call gets its own answer.

    Before, on one kept-alive connection, the next call (someone else's) read the surplus as
    its answer: on httpcore when it came with the answer (h11 kept it for the next one), on
    aiohttp when it came while the connection was idle (taken in as the next answer). On
    aiohttp a part of an answer (its status line) arriving while idle, or in the same read
    as the end of the answer owed, still let the connection be reused, and the next call
    failed on the rest (a lost connection). And bytes that are no HTTP, in the same read as
    the end of the answer owed, had aiohttp's parser refuse them in place of that answer (a
    lost connection, the signer's work thrown away) where httpcore read the answer.
    """
    async with raw_server(behaviour) as server, client_for(server.port, transport) as http:
        first = await issue_static(http)
        if behaviour not in {"surplus", "surplus-start", "surplus-garbage"}:
            server.release.set()
            await server.unasked_sent.wait()
            await until(lambda: _an_idle_connection_holds_bytes(http))
        second = await issue_static(http)
    assert (first.qr, second.qr) == ("NL2:AB", "NL2:CD"), "the surplus was read as an answer"
    assert len(server.requests) == 2
    assert server.connections == 2, "the connection that heard the surplus was used again"


def _calls_waiting_for_a_connection(http: httpx.AsyncClient) -> int:
    """How many calls of `http` wait for a connection, in each transport's own pool."""
    transport = http._transport
    if isinstance(transport, SignerTransport):
        return sum(len(waiting) for waiting in transport.client.connector._waiters.values())
    return sum(request.is_queued() for request in transport._pool._requests)


async def test_a_call_waiting_for_the_connection_of_an_answer_with_a_surplus_gets_its_own(
    transport,
):
    """A call queued for the one connection, which an answer's surplus then spoils: a new one.

    httpcore hands the released connection to the queued call before its stream is closed;
    closing it then (the surplus) must have that call take a new connection, not fail.
    """
    async with (
        raw_server("surplus-held") as server,
        client_for(server.port, transport, max_connections=1) as http,
    ):
        first = asyncio.create_task(issue_static(http))
        await server.arrived.wait()
        second = asyncio.create_task(issue_static(http))
        await until(lambda: _calls_waiting_for_a_connection(http) == 1)
        server.release.set()
        answers = await asyncio.gather(first, second)
    assert [answer.qr for answer in answers] == ["NL2:AB", "NL2:CD"]
    assert server.connections == 2


async def test_header_names_reach_the_wire_as_spelt(transport):
    """Both transports write each header name as httpx spells it, in the same order."""
    async with raw_server("ok") as server, client_for(server.port, transport) as http:
        await issue_static(http)
    head, _ = server.requests[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n")[1:] if line]
    assert names == [
        b"Host", b"User-Agent", b"Accept", b"Accept-Encoding", b"X-Request-ID", b"Content-Type",
        b"Content-Length",
    ]  # fmt: skip
