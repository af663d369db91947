"""The head bounds of `GatewayHttpProtocol`, driven read by read on a fake transport."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import sys
import weakref
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.http_protocol import FakeTransport, connect
from signing_gateway.observability.context import CONNECTION_KEY
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime import http_protocol
from signing_gateway.runtime.http_protocol import CONNECTION_REFUSALS, GatewayHttpProtocol
from signing_gateway.security.settings import LimitsSettings
from tests.support.logs import as_written
from tests.support.polling import until

LIMIT = 4096
#: A JSON POST's head; `%` its Content-Length.
POST_HEAD = b"POST /v1/dcc HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


class _Recording(GatewayHttpProtocol):
    """Runs no request; notes the paths of those it would have started."""

    started: list[str]
    received: list[list[tuple[bytes, bytes]]]

    def _start_asgi_task(self, cycle: Any, _app: Any) -> None:
        self.started.append(cycle.scope["path"])
        self.received.append(cycle.scope["headers"])


def _open(
    token_cache_size: int = 1024, metrics: GatewayMetrics | None = None, **limits: Any
) -> tuple[_Recording, FakeTransport]:
    settings = SimpleNamespace(
        limits=LimitsSettings(max_header_bytes=LIMIT, **limits),
        auth=SimpleNamespace(token_cache_size=token_cache_size),
    )
    app_state: dict[str, Any] = {"settings": settings}
    if metrics is not None:
        app_state["metrics"] = metrics
    protocol, transport = connect(_Recording, asyncio.get_running_loop(), app_state)
    assert isinstance(protocol, _Recording)
    protocol.started = []
    protocol.received = []
    return protocol, transport


def _answered(transport: FakeTransport) -> tuple[int, dict[str, Any]]:
    """The one answer written: its status and problem, once its framing is checked."""
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert fields[b"connection"] == b"close"
    assert int(fields[b"content-length"]) == len(body)  # else the caller waits for more
    return int(head[9:12]), orjson.loads(body)


def _answer(protocol: GatewayHttpProtocol) -> None:
    """What uvicorn does when the app has sent the whole answer."""
    protocol.cycle.response_complete = True
    protocol.on_response_complete()


def _padding(size: int) -> bytes:
    """A header field line of `size` bytes, without spaces (as a head measured whole counts)."""
    return b"X-Pad:" + b"p" * (size - 8) + b"\r\n"


def _head_of(size: int, body: bytes) -> bytes:
    """A POST head of exactly `size` bytes (request line, fields, empty line) for `body`."""
    start = b"POST /v1/dcc HTTP/1.1\r\nContent-Length:%d\r\n" % len(body)
    return start + _padding(size - len(start) - 2) + b"\r\n"


async def test_a_head_growing_past_the_limit_is_answered_431():
    """Header lines read after read: 431 once the head passes the limit; nothing is started."""
    protocol, transport = _open()
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\nHost: gateway\r\n")
    for _ in range(LIMIT // 1000):
        protocol.data_received(_padding(1000))
    assert transport.written == b""
    protocol.data_received(_padding(1000))
    status, problem = _answered(transport)
    assert (status, problem["status"]) == (431, 431)
    assert problem["type"].endswith("/header-too-large")
    assert transport.eof_written  # then read on, dropping it, until the linger ends
    assert not transport.closed
    protocol.data_received(_padding(1000) * 100)
    assert protocol.started == []


async def test_a_single_endless_header_line_is_counted_too():
    """One header value that never ends (no callback ever sees it) is refused all the same."""
    protocol, transport = _open()
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\nX-Long: ")
    for _ in range(5):
        protocol.data_received(b"v" * 1000)
    assert _answered(transport)[0] == 431


async def test_a_whole_oversized_head_in_one_read_is_answered_431():
    """A head over the limit that arrives complete in one read is refused before it starts."""
    protocol, transport = _open()
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\n" + _padding(LIMIT) + b"\r\n")
    assert _answered(transport)[0] == 431
    assert protocol.started == []


async def test_a_large_body_in_the_same_read_as_a_small_head_is_not_counted_as_head():
    """A small head and a 20 KiB body in one read: the request starts with its whole body."""
    protocol, transport = _open()
    body = b"[" + b"0," * 10_000 + b"0]"
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert protocol.started == ["/v1/dcc"]
    assert bytes(protocol.cycle.body) == body
    assert transport.written == b""


async def test_chunk_framing_and_trailers_without_end_close_the_connection():
    """After the head, endless trailer lines close the connection once past head + body limit."""
    protocol, transport = _open(max_body_bytes=8192)
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    )
    assert protocol.started == ["/v1/dcc"]
    for _ in range(12):  # 12,000 bytes: within 4,096 + 8,192
        protocol.data_received(_padding(1000))
    assert not transport.closed
    protocol.data_received(_padding(1000))
    assert transport.closed
    assert transport.written == b""  # the app is reading its body; nothing is answered


async def test_pipelined_requests_are_started_in_turn():
    """Two requests in one read: the first starts, the second waits for its answer."""
    protocol, _ = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\nHost: g\r\n\r\n")
    assert protocol.started == ["/a"]
    _answer(protocol)
    assert protocol.started == ["/a", "/b"]


async def test_an_oversized_head_behind_a_request_being_answered_is_answered_after_it():
    """An answer written now would be taken for the earlier request's: the 431 follows that.

    Then the connection lingers, reading on; the 431 was not sent at all, and the close with
    the rest of the head unread could reset the connection under the first answer.
    """
    protocol, transport = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\n")
    protocol.data_received(_padding(LIMIT + 100))
    assert transport.written == b""
    assert not transport.reading
    await _send_answer(protocol, 200, close=False)
    _assert_answered_after(transport, b"HTTP/1.1 200 ", 431)
    assert protocol.started == ["/a"]
    assert protocol.server_state.total_requests == 1  # /a, as uvicorn counts an answer


def _assert_answered_after(transport: FakeTransport, first: bytes, status: int) -> None:
    """Pin that `first`'s answer was written, then a refusal `status`; the connection lingers.

    `first` keeps the connection: an answer saying `Connection: close` ends what its caller
    reads, the refusal after it unread.
    """
    written = bytes(transport.written)
    assert (written.startswith(first), written.count(b"HTTP/1.1 ")) == (True, 2)
    assert b"\r\nconnection: close" not in written[: written.index(b"HTTP/1.1 ", 1)].lower()
    assert _answered_last(transport)[0] == status
    assert (transport.eof_written, transport.reading, transport.closed) == (True, True, False)


def _answered_last(transport: FakeTransport) -> tuple[int, dict[str, Any]]:
    """The last of the answers written, as `_answered` reads one."""
    written = bytes(transport.written)
    transport.written = bytearray(written[written.rindex(b"HTTP/1.1 ") :])
    return _answered(transport)


async def test_an_oversized_head_in_the_read_of_the_request_before_it_is_refused():
    """Pin that a pipelined head the count missed the start of is measured whole: 431.

    It arrived in the read that ended the request before it, where the count restarts: it was
    served, at any size up to a read.
    """
    protocol, transport = _open()
    pipelined = b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n" + _head_of(LIMIT + 1, b"")
    protocol.data_received(pipelined)
    await _send_answer(protocol, 200, close=False)
    _assert_answered_after(transport, b"HTTP/1.1 200 ", 431)
    assert protocol.started == ["/a"]
    protocol, transport = _open()
    protocol.data_received(pipelined[:-1])  # the same head, its last byte in a read of its own
    protocol.data_received(pipelined[-1:])
    await _send_answer(protocol, 200, close=False)
    _assert_answered_after(transport, b"HTTP/1.1 200 ", 431)
    protocol, _ = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n" + _head_of(LIMIT, b""))
    await _send_answer(protocol, 200, close=False)
    assert protocol.started == ["/a", "/v1/dcc"]  # at the limit: served


def _head_in_fields(size: int, separator: bytes, count: int = 20) -> bytes:
    """A GET head of `count` fields `X-nn<separator>value`: `size` bytes written `name:value`.

    With `separator` `: ` it is `count` bytes longer on the wire.
    """
    start = b"GET /v1/keys HTTP/1.1\r\n"
    names = [b"X-%02d" % n for n in range(count)]
    values = size - len(start) - 2 - sum(len(name) + 3 for name in names)
    lines = [
        name + separator + b"v" * (values // count + (n < values % count)) + b"\r\n"
        for n, name in enumerate(names)
    ]
    return start + b"".join(lines) + b"\r\n"


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "pipelined"])
@pytest.mark.parametrize(
    ("separator", "size", "served"),
    [
        (b":", LIMIT, True),
        (b":", LIMIT + 1, False),
        (b": ", LIMIT, True),
        (b": ", LIMIT + 1, False),
    ],
    ids=["colon-at-limit", "colon-past-limit", "colon-space-at-limit", "colon-space-past-limit"],
)
async def test_a_head_is_measured_alike_alone_or_pipelined(separator, size, served, pipelined):
    """A head sent alone and the same head pipelined are served or refused alike.

    A pipelined head is measured from its fields, which counted `: ` for each: written
    `name:value` it was refused within a byte per field of the limit, where the same head
    sent alone, counted as it came, was served.
    """
    head = _head_in_fields(size, separator)
    protocol, transport = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n" * pipelined + head)
    if pipelined:
        await _send_answer(protocol, 200, close=False)
    if served:
        assert protocol.started == ["/a"] * pipelined + ["/v1/keys"]
    else:
        assert protocol.started == ["/a"] * pipelined
        assert _answered_last(transport)[0] == 431


async def test_a_half_sent_head_is_answered_408_after_the_header_timeout():
    """The start of a head, then nothing: 408 problem+json once the header timeout passes."""
    protocol, transport = _open(header_timeout_seconds=0.05)
    protocol.data_received(b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\n")
    await until(lambda: transport.written)
    status, problem = _answered(transport)
    assert status == 408
    assert problem["type"].endswith("/header-timeout")


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer():
    """A connection that never sends a byte is closed at the header timeout, unanswered."""
    _, transport = _open(header_timeout_seconds=0.05)
    await until(lambda: transport.closed)
    assert transport.written == b""


class _SocketTransport(FakeTransport):
    """A fake transport over one end of a real socket pair, for the kernel's unread count."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else super().get_extra_info(name, default)


async def test_a_head_waiting_unread_in_the_kernel_is_not_cut_off(monkeypatch):
    """A head the loop has not read yet when the clock rings is waited for, not cut off.

    The loop is behind, not the caller; once read, the connection is held as any other.
    """
    monkeypatch.setattr(http_protocol, "BEHIND_GRACE_SECONDS", 0.05)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        settings = SimpleNamespace(limits=LimitsSettings(header_timeout_seconds=0.05))
        protocol = _Recording(
            config=Config(app=None, http=_Recording, log_config=None),
            server_state=ServerState(),
            app_state={"settings": settings},
            _loop=asyncio.get_running_loop(),
        )
        protocol.started = []
        protocol.received = []
        transport = _SocketTransport(ours)
        protocol.connection_made(transport)
        theirs.sendall(b"GET /late HTTP/1.1\r\nHost: g\r\n\r\n")
        await asyncio.sleep(0.2)  # four header timeouts with the bytes unread
        assert not transport.closed
        protocol.data_received(ours.recv(4096))  # the loop gets to them at last
        assert protocol.started == ["/late"]
        _answer(protocol)
        protocol.data_received(b"GET /half HTTP/1.1\r\n")  # nothing waits unread now
        await until(lambda: transport.written)
        assert _answered(transport)[0] == 408


async def test_the_header_clock_does_not_run_while_a_request_is_answered_or_between_requests():
    """A slow answer and a pause longer than the header timeout leave the connection open."""
    protocol, transport = _open(header_timeout_seconds=0.05)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    await asyncio.sleep(0.15)  # the app takes three header timeouts to answer
    _answer(protocol)
    await asyncio.sleep(0.02)  # within uvicorn's keep-alive timeout (5 s)
    protocol.data_received(b"GET /b HTTP/1.1\r\n")
    protocol.data_received(b"Host: g\r\n\r\n")
    assert protocol.started == ["/a", "/b"]
    assert not transport.closed


async def test_a_kept_alive_connection_sets_a_timer_about_once_per_timeout():
    """Requests on a busy connection note a deadline; they do not each set a timer."""
    loop = asyncio.get_running_loop()
    protocol, _ = _open(header_timeout_seconds=60)
    scheduled = 0
    call_at = loop.call_at

    def counting_call_at(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal scheduled
        scheduled += 1
        return call_at(*args, **kwargs)

    protocol.loop = SimpleNamespace(  # type: ignore[assignment]
        time=loop.time, call_at=counting_call_at, call_later=loop.call_later
    )
    for _ in range(100):
        protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
        _answer(protocol)
    assert len(protocol.started) == 100
    assert scheduled == 0  # the timer set when the connection was made still stands


@pytest.mark.parametrize("app_state", [{}, {"settings": object()}], ids=["empty", "foreign"])
async def test_without_the_gateways_settings_the_defaults_apply(app_state):
    """A protocol serving another app's state bounds heads by the default limits."""
    protocol, _ = connect(GatewayHttpProtocol, asyncio.get_running_loop(), app_state)
    defaults = LimitsSettings()
    assert protocol._bound.max_head_bytes == defaults.max_header_bytes
    assert protocol._bound.head_timeout == defaults.header_timeout_seconds
    assert protocol.timeout_keep_alive == defaults.keep_alive_seconds == 5.0  # uvicorn's


async def test_an_idle_connection_is_closed_after_the_settings_keep_alive():
    """`keep_alive_seconds` after an answer, not uvicorn's own 5 s (nor the server's flag)."""
    protocol, transport = _open(keep_alive_seconds=0.2)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    _answer(protocol)
    await asyncio.sleep(0.05)
    assert not transport.closed
    await until(lambda: transport.closed, limit=3)
    assert transport.written == b""  # closed unanswered: nothing was asked


async def test_a_request_within_the_keep_alive_keeps_the_connection():
    """Each answer starts the keep-alive again; a request before it ends is served."""
    protocol, transport = _open(keep_alive_seconds=0.3)
    for path in ("/a", "/b", "/c"):
        protocol.data_received(b"GET %s HTTP/1.1\r\nHost: g\r\n\r\n" % path.encode())
        _answer(protocol)
        await asyncio.sleep(0.15)
    assert protocol.started == ["/a", "/b", "/c"]
    assert not transport.closed


async def test_a_connection_keeps_an_instance_dict_like_uvicorns_protocol():
    """The bound adds one attribute: past 30, CPython gives every connection a dict of its own.

    That cost ~1.3 KB per connection, ~2 KB of S4's RSS per request in flight.
    """
    loop = asyncio.get_running_loop()
    ours, _ = connect(_Recording, loop)
    theirs, _ = connect(HttpToolsProtocol, loop)
    # One more value slot (8 B) at most; a dict of its own was 1,584 B against 296.
    assert sys.getsizeof(ours.__dict__) <= sys.getsizeof(theirs.__dict__) + 64


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nBad Header\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        (
            b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n{}"
        ),
    ],
)
async def test_a_request_that_is_not_http_is_answered_400_problem_json(request_bytes):
    """Not plain text without a request id, as uvicorn answers: as the gateway refuses others."""
    protocol, transport = _open()
    protocol.data_received(request_bytes)
    status, problem = _answered(transport)
    assert (status, problem["status"]) == (400, 400)
    assert problem["type"].endswith("/bad-request")
    assert problem["requestId"]
    head = bytes(transport.written).partition(b"\r\n\r\n")[0].lower()
    assert b"content-type: application/problem+json" in head
    assert b"x-request-id: " + problem["requestId"].encode() in head
    assert b"\r\ncache-control: no-store\r\n" in head
    assert transport.eof_written  # read on until the linger ends: the answer is not reset away
    assert protocol.started == []


@pytest.mark.parametrize(
    ("sent", "status", "instance"),
    [
        (b"GET /v1/keys HTTP/1.1\r\n" + _padding(LIMIT) + b"\r\n", 431, "/v1/keys"),
        (b"GET /v1/keys HTTP/1.1\r\nHost: g\r\n" + _padding(LIMIT), 431, "/v1/keys"),
        (b"GET /v1/" + b"k" * LIMIT + b" HTTP/1.1\r\n\r\n", 431, "/v1/" + "k" * LIMIT),
        (b"POST /v1/dcc?x=1 HTTP/1.1\r\nHost: g\r\nAccept: */*\r\n", 408, "/v1/dcc"),
        (b"GET /v1/a%20b HTTP/1.1\r\nHost: g\r\nA: b\r\nBad Header\r\n\r\n", 400, "/v1/a b"),
        (b"GET /healthz HTTP/1.1\r\nHost: g\r\nContent-Length: x\r\n\r\n", 400, "/healthz"),
        # The request line not yet known to be whole (no field after it handed over by the
        # parser): what was read may be part of the target.
        (b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\n", 408, ""),
        (b"GET /v1/" + b"k" * LIMIT, 431, ""),
        (b"GET /v1/keys HTTP/1.1\r\nX-Long: " + b"v" * LIMIT, 431, ""),
        (b"POST /v1/dcc HTT", 408, ""),
        (b"GARBAGE\r\n\r\n", 400, ""),
    ],
    ids=[
        "431-whole",
        "431-growing",
        "431-whole-target-no-field",
        "408",
        "400-header",
        "400-length",
        "408-first-field",
        "431-endless-target",
        "431-first-field-endless",
        "408-in-request-line",
        "400-no-request-line",
    ],
)
async def test_a_refusal_names_the_path_once_its_request_line_was_read(sent, status, instance):
    """`instance` is the refused request's path as the app's problems give it, else "".

    "" is an empty reference: it stands for the request's own URI, and never echoes a part of
    a target that may be what was refused. Every member is always there.
    """
    protocol, transport = _open(header_timeout_seconds=0.05)
    protocol.data_received(sent)
    await until(lambda: transport.written)
    answered, problem = _answered(transport)
    assert (answered, problem["instance"]) == (status, instance)
    assert list(problem) == ["type", "title", "status", "detail", "instance", "requestId"]


@pytest.mark.parametrize("root_path", ["", "/gateway"])
async def test_a_refused_requests_path_is_the_one_the_app_would_have_had(root_path):
    """The same target, refused and not: `instance` is the path uvicorn gives the app.

    Under the server's `root_path` too, which uvicorn puts before the path it gives the app.
    """
    target = b"/v1/%C3%A9%2Fx/./y?q=%20"
    protocol, transport = _open()
    protocol.root_path = root_path
    protocol.data_received(b"GET " + target + b" HTTP/1.1\r\nHost: g\r\n\r\n")
    refused, refused_transport = _open()
    refused.root_path = root_path
    refused.data_received(b"GET " + target + b" HTTP/1.1\r\nHost: g\r\n" + _padding(LIMIT))
    assert _answered(refused_transport)[1]["instance"] == protocol.started[0]
    assert transport.written == b""


async def test_a_refusal_is_logged_with_its_message_and_slug(caplog):
    """The refusal's line says so in words (`event`) and names it (`security_event`)."""
    caplog.set_level(logging.INFO, logger="signing_gateway.security")
    protocol, transport = _open()
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\n" + _padding(LIMIT + 1000))
    assert _answered(transport)[0] == 431
    [record] = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert record["event"] == "request refused unread"
    assert (record["security_event"], record["reason"]) == ("refused", "header-too-large")


@pytest.mark.parametrize(
    ("sent", "status"),
    [
        (b"GET /v1/keys HTTP/1.1\r\n" + _padding(LIMIT + 1000), 431),
        (b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\n", 408),
        (b"GARBAGE\r\n\r\n", 400),
    ],
    ids=["header-too-large", "header-timeout", "malformed"],
)
async def test_a_refusal_is_logged_with_the_request_id_of_its_answer(caplog, sent, status):
    """The id the caller is given (header and problem body) is the one its log line carries."""
    caplog.set_level(logging.INFO, logger="signing_gateway.security")
    protocol, transport = _open(header_timeout_seconds=0.05)
    protocol.data_received(sent)
    await until(lambda: transport.written)
    answered, problem = _answered(transport)
    assert answered == status
    [record] = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert record["request_id"] == problem["requestId"]


async def test_an_unparseable_request_is_not_a_warning(caplog):
    """No "Invalid HTTP request received." warning from uvicorn beside the gateway's refusal.

    Any caller can send such requests: at WARNING, they were noise at its will.
    """
    caplog.set_level(logging.DEBUG)
    protocol, transport = _open()
    protocol.data_received(b"GARBAGE\r\n\r\n")
    assert _answered(transport)[0] == 400
    logged = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert logged == [("signing_gateway.security", "INFO", "request refused unread")]


async def test_requests_share_a_repeated_token_but_keep_their_own_fields():
    """Two connections, one token: one `authorization` field object; the rest as sent."""
    token = b"Bearer " + b"t" * 700
    fields = []
    for request_id in (b"one", b"two"):
        protocol, _ = _open()
        protocol.data_received(
            b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nAuthorization: " + token
            + b"\r\nX-Request-ID: " + request_id + b"\r\nContent-Length: 0\r\n\r\n"
        )  # fmt: skip
        assert protocol.started == ["/v1/dcc"]
        [headers] = protocol.received
        assert headers == [
            (b"host", b"g"),
            (b"authorization", token),
            (b"x-request-id", request_id),
            (b"content-length", b"0"),
        ]
        fields.append(headers)
    assert fields[0][1] is fields[1][1]
    assert fields[0][2] is not fields[1][2]


async def test_a_fields_value_is_kept_without_the_whitespace_after_it():
    """Spaces and tabs ending a value are no part of it (RFC 9110 5.5), as uvicorn reads it.

    The parser keeps them: a caller's `X-Request-ID: abc ` read as `abc `, which the id's
    format refuses, so the answer carried a new id instead of the caller's.
    """
    protocol, _ = _open()
    protocol.data_received(
        b"GET /v1/keys HTTP/1.1\r\nHost: g \t\r\nX-Request-ID: abc \r\n"
        b"Authorization:  Bearer t\t\r\nX-Empty: \t \r\n\r\n"
    )
    [headers] = protocol.received
    assert headers == [
        (b"host", b"g"),
        (b"x-request-id", b"abc"),
        (b"authorization", b"Bearer t"),
        (b"x-empty", b""),
    ]


@pytest.mark.parametrize("expect", [b"100-Continue", b"100-continue \t"])
async def test_expect_100_continue_is_still_seen(expect: bytes):
    """The field sharing keeps uvicorn's reading of `Expect: 100-continue`, whitespace after it too.

    Read with the whitespace, the caller was never told to go on and waited to send its body.
    """
    protocol, _ = _open()
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nExpect: " + expect + b"\r\nContent-Length: 2\r\n\r\n"
    )
    assert protocol.expect_100_continue


async def test_with_tokens_not_remembered_no_token_outlives_its_request():
    """`auth.token_cache_size=0`: each request keeps its own token field, and nothing else does."""
    token = b"Bearer never-kept"
    fields = []
    for _ in range(2):
        protocol, _ = _open(token_cache_size=0)
        protocol.data_received(
            b"GET /v1/keys HTTP/1.1\r\nHost: g\r\nAuthorization: " + token + b"\r\n\r\n"
        )
        [headers] = protocol.received
        fields.append(headers[1])
    assert fields[0] == fields[1] == (b"authorization", token)
    assert fields[0] is not fields[1]
    kept = http_protocol._shared_fields(tokens=False)._fields
    assert all(name != b"authorization" for name, _ in kept)


async def test_trailer_fields_never_join_the_headers():
    """A chunked body's trailer is dropped: a token there does not read as a header field.

    uvicorn adds trailer fields to the request's headers, after the app has started; the
    gateway reads none, and a bearer token sent there authenticated the request.
    """
    token = b"Bearer in-a-trailer"
    protocol, _ = _open()
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\nAuthorization: " + token + b"\r\n\r\n"
    )
    assert protocol.started == ["/v1/dcc"]
    assert protocol.received[0] == [(b"host", b"g"), (b"transfer-encoding", b"chunked")]
    assert (b"authorization", token) not in http_protocol._shared_fields(tokens=True)._fields


@pytest.mark.parametrize(("size", "started"), [(LIMIT, True), (LIMIT + 1, False)])
async def test_the_limit_is_the_heads_size_to_the_byte(size, started):
    """A head of exactly `max_header_bytes` is served; one byte more is 431.

    Measured when body bytes came in the same read, so the read alone is over the limit.
    """
    body = b"{}" * 100
    protocol, transport = _open()
    protocol.data_received(_head_of(size, body) + body)
    if started:
        assert protocol.started == ["/v1/dcc"]
        assert transport.written == b""
    else:
        assert protocol.started == []
        assert _answered(transport)[0] == 431


async def test_a_head_still_coming_at_exactly_the_limit_is_not_yet_refused():
    """Pin that a part-read head of `max_header_bytes` waits: 431 comes with the byte past it."""
    start = b"GET /v1/keys HTTP/1.1\r\nX-Pad: "
    protocol, transport = _open()
    protocol.data_received(start + b"p" * (LIMIT - len(start)))
    assert transport.written == b""
    protocol.data_received(b"p")
    assert _answered(transport)[0] == 431


async def test_each_request_on_a_connection_has_the_whole_limit():
    """The count starts afresh with each request: heads that add up past the limit are served."""
    protocol, transport = _open()
    for _ in range(3):
        protocol.data_received(b"GET /a HTTP/1.1\r\n" + _padding(LIMIT // 2) + b"\r\n")
        _answer(protocol)
    assert protocol.started == ["/a"] * 3
    assert transport.written == b""


async def test_body_bytes_are_never_counted_against_the_bounds():
    """A body streamed read by read is the app's to bound (413): the protocol lets it through."""
    protocol, transport = _open(max_body_bytes=8192)
    protocol.data_received(b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nContent-Length: 20000\r\n\r\n")
    for _ in range(20):  # 20,000 bytes: past 4,096 + 8,192 had they counted
        protocol.data_received(b"x" * 1000)
    assert not transport.closed
    assert transport.written == b""
    assert len(protocol.cycle.body) == 20000


async def test_chunk_framing_and_trailers_may_reach_head_plus_body_limit_exactly():
    """The count may reach `max_header_bytes + max_body_bytes`; one byte past, it is closed."""
    protocol, transport = _open(max_body_bytes=8192)
    start = (
        b"POST /v1/dcc HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
    )
    protocol.data_received(start)
    left = LIMIT + 8192 - (len(start) - 2)  # the chunk's two body bytes are not counted
    while left > 2000:
        protocol.data_received(_padding(1000))
        left -= 1000
    protocol.data_received(_padding(left))
    assert not transport.closed
    protocol.data_received(b"X")
    assert transport.closed


async def test_an_oversized_head_after_an_answered_request_is_answered_431():
    """Only a request still being answered defers the 431; one already answered does not."""
    protocol, transport = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    _answer(protocol)
    protocol.data_received(b"GET /b HTTP/1.1\r\n" + _padding(LIMIT + 100))
    assert _answered(transport)[0] == 431
    assert protocol.started == ["/a"]


async def test_a_refused_connection_is_closed_once_the_linger_ends(monkeypatch):
    """After the answer the gateway reads on for LINGER_SECONDS, then closes: no descriptor kept."""
    monkeypatch.setattr(http_protocol, "LINGER_SECONDS", 0.05)
    protocol, transport = _open()
    protocol.data_received(b"GARBAGE\r\n\r\n")
    assert _answered(transport)[0] == 400
    assert not transport.closed
    await until(lambda: transport.closed, limit=2)


async def test_a_head_is_due_header_timeout_seconds_after_its_first_byte():
    """The clock of a kept-alive connection's next head starts at that head's first byte."""
    loop = asyncio.get_running_loop()
    protocol, _ = _open(header_timeout_seconds=30)
    assert protocol._bound.timer is not None
    assert loop.time() + 29 < protocol._bound.timer.when() <= loop.time() + 30
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    _answer(protocol)
    before = loop.time()
    protocol.data_received(b"GET /b HTTP/1.1\r\n")
    assert before + 30 <= protocol._bound.head_deadline <= loop.time() + 30


async def test_a_half_head_after_a_slow_answer_is_answered_408():
    """The clock that rang while a request was answered is set again for the next head."""
    protocol, transport = _open(header_timeout_seconds=0.05)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    await asyncio.sleep(0.15)  # the clock rings (and finds no head due) while /a is answered
    _answer(protocol)
    protocol.data_received(b"GET /b HTTP/1.1\r\n")
    await until(lambda: transport.written, limit=2)
    assert _answered(transport)[0] == 408


async def test_a_pipelined_half_head_is_answered_408():
    """A head begun in the read of the request before it is a begun request: 408, not idle.

    Its bytes are not counted (the count restarts when a request ends), yet it was sent. Nor
    is it left to uvicorn's keep-alive (5 s), 100 times longer.
    """
    metrics = GatewayMetrics()
    protocol, transport = _open(metrics=metrics, header_timeout_seconds=0.05)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\nHost: g\r\n")
    _answer(protocol)
    await until(lambda: transport.written, limit=2)
    assert _answered(transport)[0] == 408
    assert _refusals(metrics)["header-timeout"] == 1
    assert protocol.started == ["/a"]


async def test_empty_lines_after_an_answered_request_are_no_request():
    """Line ends between requests begin none: at the header timeout the connection is idle."""
    metrics = GatewayMetrics()
    protocol, transport = _open(metrics=metrics, header_timeout_seconds=0.05)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    _answer(protocol)
    protocol.data_received(b"\r\n")
    await until(lambda: transport.closed, limit=2)
    assert transport.written == b""
    assert _refusals(metrics)["idle"] == 1


async def test_the_unsent_rest_of_an_answered_request_is_cut_off_unanswered():
    """The app answered before the body was all sent; a caller going on sending it is closed.

    At the header timeout after its first byte past the answer, and without another answer:
    one written now would be taken for the request's.
    """
    protocol, transport = _open(header_timeout_seconds=0.05)
    chunk = b"3e8\r\n" + b"x" * 1000 + b"\r\n"
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
    )
    _answer(protocol)
    protocol.data_received(chunk)
    await until(lambda: transport.closed, limit=2)
    assert transport.written == b""


def _refusals(metrics: GatewayMetrics) -> dict[str, float]:
    return {
        reason: metrics.registry.get_sample_value(
            "gateway_connections_refused_total", {"reason": reason}
        )
        or 0.0
        for reason in CONNECTION_REFUSALS
    }


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        ([b"GET /v1/keys HTTP/1.1\r\n" + _padding(LIMIT + 1000)], "header-too-large"),
        ([b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\n"], "header-timeout"),
        ([b"GARBAGE\r\n\r\n"], "malformed"),
        ([b"GARBAGE " + b"x" * (LIMIT + 1000)], "malformed"),
        ([], "idle"),
        (
            [
                b"POST /v1/dcc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n",
                _padding(LIMIT + 8192 + 1000),
            ],
            "header-too-large",
        ),
    ],
    ids=["431", "408", "400", "400-over-the-limit", "idle", "trailers"],
)
async def test_each_refusal_is_counted_once_under_its_reason(sent, reason):
    """`gateway_connections_refused_total` counts the refusal under its reason, and only it.

    An unparseable request past the size limit is one 400, not a 431 as well.
    """
    metrics = GatewayMetrics()
    protocol, transport = _open(metrics=metrics, header_timeout_seconds=0.05, max_body_bytes=8192)
    for data in sent:
        protocol.data_received(data)
    await until(lambda: transport.written or transport.closed, limit=2)
    await asyncio.sleep(0.1)  # past the header timeout: nothing counts twice
    assert _refusals(metrics) == {r: float(r == reason) for r in CONNECTION_REFUSALS}
    assert bytes(transport.written).count(b"HTTP/1.1 ") <= 1


async def test_a_connection_the_caller_closed_is_not_counted_idle():
    """The caller hung up before the header timeout: nothing is refused, nothing counted."""
    metrics = GatewayMetrics()
    protocol, transport = _open(metrics=metrics, header_timeout_seconds=0.05)
    protocol.connection_lost(None)
    await asyncio.sleep(0.15)
    assert set(_refusals(metrics).values()) == {0.0}
    assert transport.written == b""


async def test_a_new_connections_first_head_is_due_from_when_it_opened():
    """Pin that the first head's clock starts with the connection, not again at its first byte.

    A caller that waits most of the timeout before it starts its head gets no second one.
    """
    protocol, _ = _open(header_timeout_seconds=30)
    due = protocol._bound.head_deadline
    await asyncio.sleep(0.01)
    protocol.data_received(b"GET /a HTTP/1.1\r\n")
    assert protocol._bound.head_deadline == due


async def test_bytes_unread_when_a_head_is_due_put_it_off_by_the_grace_only(monkeypatch):
    """Pin that unread bytes give a head that is due `BEHIND_GRACE_SECONDS`, and no other.

    A later head's own deadline, noted while the clock was set for an earlier one, stands:
    the grace in its place would cut it off before it is due.
    """
    monkeypatch.setattr(http_protocol, "_unread_input", lambda _transport: True)
    loop = asyncio.get_running_loop()
    protocol, _ = _open(header_timeout_seconds=30)
    first = protocol._bound.head_deadline
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    _answer(protocol)
    await asyncio.sleep(0.01)
    protocol.data_received(b"GET /b HTTP/1.1\r\n")
    later = protocol._bound.head_deadline
    assert first is not None
    assert later is not None
    assert first < later
    protocol._bound.timer.cancel()
    protocol._head_clock_rang(first)  # the clock set for the first head rings
    assert protocol._bound.head_deadline == protocol._bound.timer.when() == later
    protocol._bound.timer.cancel()
    grace = http_protocol.BEHIND_GRACE_SECONDS
    before = loop.time()
    protocol._head_clock_rang(later)  # /b is due, its bytes wait unread
    assert before + grace <= protocol._bound.head_deadline <= loop.time() + grace
    protocol._bound.timer.cancel()


async def test_an_unanswered_close_is_counted_not_logged(caplog):
    """Pin that only a refusal with an answer is logged: a silent connection is just closed."""
    caplog.set_level(logging.INFO, logger="signing_gateway.security")
    _, transport = _open(header_timeout_seconds=0.05)
    await until(lambda: transport.closed)
    assert [r for r in caplog.records if r.name == "signing_gateway.security"] == []


async def test_a_refused_request_lets_go_of_its_head_at_once():
    """Pin that the refused head is dropped when it is answered, not when the linger ends."""
    protocol, transport = _open()
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\nHost: g\r\n" + _padding(LIMIT))
    assert _answered(transport)[0] == 431
    assert not transport.closed  # lingering
    assert (protocol.url, protocol.headers, protocol.parser) == (b"", [], None)


def _fields(count: int) -> bytes:
    return b"".join(b"X-%d: v\r\n" % n for n in range(count))


@pytest.mark.parametrize(("count", "started"), [(40, True), (41, False)])
async def test_a_head_of_more_fields_than_the_limit_is_answered_431(count, started):
    """Within the size bound: 40 fields are served, 41 refused with the count named."""
    protocol, transport = _open(max_header_fields=40)
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\n" + _fields(count) + b"\r\n")
    if started:
        assert protocol.started == ["/v1/keys"]
        assert len(protocol.received[0]) == count
        assert transport.written == b""
        return
    assert protocol.started == []
    status, problem = _answered(transport)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (431, "header-too-large")
    assert problem["detail"] == "a request may carry at most 40 header fields"
    assert problem["instance"] == "/v1/keys"
    assert protocol.headers == []  # let go of at once


async def test_fields_past_the_count_arriving_read_by_read_are_refused_at_once():
    """A head still coming is refused with the read that passes the count, not at its end."""
    metrics = GatewayMetrics()
    protocol, transport = _open(metrics=metrics, max_header_fields=32)
    protocol.data_received(b"GET /v1/keys HTTP/1.1\r\n" + _fields(32))
    assert transport.written == b""
    # The parser hands a field over once the next line shows it is not folded on.
    protocol.data_received(b"X-Last: v\r\nX-")
    assert _answered(transport)[0] == 431
    assert len(transport.written) < 1024  # tiny fields: far below the size bound
    refused = metrics.connections_refused.labels(reason="header-too-large")._value.get()
    assert refused == 1
    protocol.data_received(_fields(1000) + b"\r\n")
    assert protocol.started == []


async def test_the_field_count_starts_afresh_with_each_request():
    """Two requests of 30 fields each on one connection, under a limit of 32: both served."""
    protocol, transport = _open(max_header_fields=32)
    for _ in range(2):
        protocol.data_received(b"GET /v1/keys HTTP/1.1\r\n" + _fields(30) + b"\r\n")
        _answer(protocol)
    assert protocol.started == ["/v1/keys", "/v1/keys"]
    assert transport.written == b""


async def _send_answer(protocol: GatewayHttpProtocol, status: int, *, close: bool) -> None:
    """What the app sends: a whole answer, through uvicorn's own answer cycle."""
    headers = [(b"content-length", b"2")] + ([(b"connection", b"close")] if close else [])
    await protocol.cycle.send({"type": "http.response.start", "status": status, "headers": headers})
    await protocol.cycle.send({"type": "http.response.body", "body": b"{}"})


async def test_a_closing_answer_with_the_body_still_coming_lingers(monkeypatch):
    """The app's 413 before the body has arrived: sent, then read on until the linger ends.

    Closed at once, with the caller's bytes unread, the socket sent a reset, which can destroy
    the answer before the caller has read it.
    """
    monkeypatch.setattr(http_protocol, "LINGER_SECONDS", 0.05)
    protocol, transport = _open()
    protocol.data_received(POST_HEAD % 50_000_000 + b" " * 1000)
    await _send_answer(protocol, 413, close=True)
    assert bytes(transport.written).startswith(b"HTTP/1.1 413 ")
    assert transport.eof_written
    assert not transport.closed
    protocol.data_received(b" " * 100_000)  # the rest of the body, dropped unparsed
    assert protocol.timeout_keep_alive_task is None  # no keep-alive: the connection is ending
    assert protocol.server_state.total_requests == 1  # answered, as uvicorn counts one
    await until(lambda: transport.closed, limit=2)


async def test_a_refusal_waiting_its_turn_behind_a_closing_answer_lingers(monkeypatch):
    """/b's body is not HTTP/1.1, its 400 queued behind /a; /a's answer says close: lingers.

    The 400 is not sent (a caller reads nothing after an answer saying `Connection: close`),
    but /b's body may still be arriving: closed with it unread, the socket would reset the
    connection under /a's answer.
    """
    monkeypatch.setattr(http_protocol, "LINGER_SECONDS", 0.05)
    protocol, transport = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    first = protocol.cycle
    protocol.data_received(
        b"POST /b HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"
    )
    headers = [(b"content-length", b"2"), (b"connection", b"close")]
    await first.send({"type": "http.response.start", "status": 200, "headers": headers})
    await first.send({"type": "http.response.body", "body": b"{}"})
    assert bytes(transport.written).count(b"HTTP/1.1 ") == 1  # /a's 200 alone
    assert (transport.eof_written, transport.reading, transport.closed) == (True, True, False)
    protocol.data_received(b"more of /b" * 1000)  # dropped unparsed
    await until(lambda: transport.closed, limit=2)
    assert protocol.started == ["/a"]


async def test_a_lost_connection_shows_in_its_requests_scope():
    """The request-metrics layer counts an answer as dropped when its scope says so."""
    protocol, _ = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n")
    connection = protocol.cycle.scope[CONNECTION_KEY]  # type: ignore[literal-required]
    assert not connection.lost
    protocol.connection_lost(None)
    assert connection.lost


async def test_a_closing_answer_to_a_request_read_whole_closes_at_once():
    """Nothing of the caller's is unread: the connection closes when the answer is out."""
    protocol, transport = _open()
    protocol.data_received(POST_HEAD % 2 + b"{}")
    await _send_answer(protocol, 422, close=True)
    assert transport.closed
    assert not transport.eof_written


async def test_an_answer_keeping_the_connection_does_not_linger():
    """An answer without `Connection: close` leaves the connection open, as uvicorn does."""
    protocol, transport = _open()
    protocol.data_received(POST_HEAD % 10 + b"{")
    await _send_answer(protocol, 200, close=False)
    assert not transport.closed
    assert not transport.eof_written


async def test_a_linger_reads_on_where_a_buffered_body_had_paused_reading():
    """A body past uvicorn's buffer paused reading; the linger resumes it to drop what comes."""
    protocol, transport = _open(max_body_bytes=10_000_000)
    protocol.data_received(POST_HEAD % 50_000_000 + b" " * 100_000)
    assert not transport.reading  # uvicorn's buffer is full; the app has not read it
    await _send_answer(protocol, 413, close=True)
    assert transport.eof_written
    assert transport.reading


async def test_every_request_on_a_connection_answers_through_the_lingering_close():
    """Each new request's answer cycle closes through the protocol, not the bare transport."""
    protocol, transport = _open()
    for path in (b"/a", b"/b"):
        protocol.data_received(b"GET %s HTTP/1.1\r\nHost: g\r\n\r\n" % path)
        assert protocol.cycle.transport is not transport
        await _send_answer(protocol, 200, close=False)
    assert protocol.started == ["/a", "/b"]


async def test_a_body_that_is_not_http_ends_the_request_for_the_app_as_a_caller_gone():
    """Its request is answered 400; the app then reads a disconnect and writes nothing after.

    The connection lingers with its sending side closed: a write of the app's own answer
    there failed ("Cannot call write() after write_eof()"), an error logged with its
    traceback, at any caller's will.
    """
    protocol, transport = _open()
    protocol.data_received(
        b"GET /v1/keys HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"
    )
    assert protocol.started == ["/v1/keys"]
    assert _answered(transport)[0] == 400
    answered = bytes(transport.written)
    cycle = protocol.cycle
    async with asyncio.timeout(1):
        assert await cycle.receive() == {"type": "http.disconnect"}
    await cycle.send({"type": "http.response.start", "status": 200, "headers": []})
    assert transport.written == answered


async def test_a_body_that_is_not_http_after_the_answer_began_gets_no_second_answer():
    """Once the app has begun answering, a 400 would be read as part of that answer: closed."""
    protocol, transport = _open()
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"
    )
    await protocol.cycle.send({"type": "http.response.start", "status": 200, "headers": []})
    protocol.data_received(b"ZZ\r\n")
    assert bytes(transport.written).count(b"HTTP/1.1 ") == 1
    assert transport.closed


async def test_a_refused_connection_is_read_on_past_its_answer_not_closed_at_once():
    """Pin the linger: closed at once, unread input would reset the answer away."""
    protocol, transport = _open()
    protocol.data_received(b"GARBAGE\r\n\r\n")
    assert _answered(transport)[0] == 400
    await asyncio.sleep(0.1)
    protocol.data_received(b"the rest of what the caller sends")  # dropped unread
    assert not transport.closed
    assert bytes(transport.written).count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize("upgrade", [b"h2c", b"websocket"])
async def test_a_request_asking_for_another_protocol_is_served_without_a_warning(caplog, upgrade):
    """Its `Upgrade` is ignored (RFC 9110 7.8): the request is served as HTTP/1.1, unlogged.

    uvicorn warned twice for each, the second line advising a WebSocket library the gateway
    has no use for: `curl --http2` on plain http asks for h2c, at any caller's will.
    """
    caplog.set_level(logging.DEBUG)
    protocol, transport = _open()
    protocol.data_received(
        b"GET /v1/keys HTTP/1.1\r\nHost: g\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: " + upgrade + b"\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
    )
    assert protocol.started == ["/v1/keys"]
    assert transport.written == b""
    assert [(r.name, r.levelname) for r in caplog.records if r.levelno >= logging.INFO] == []


async def _answering_its_path(scope: dict[str, Any], _receive: Any, send: Any) -> None:
    """An app answering 200 with the request's path, after a signer's time."""
    await asyncio.sleep(0.05)  # the refusal of a request sent behind comes first
    body = scope["path"].encode()
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _served_on_one_connection(app: Any, sent: bytes) -> bytes:
    """What a real listener of `GatewayHttpProtocol` answers `sent` on one connection, to EOF.

    Raises:
        ConnectionResetError: the connection was reset, not closed.
    """
    config = Config(app, host="127.0.0.1", port=0, http=GatewayHttpProtocol, log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    server_state = ServerState()

    def protocol() -> asyncio.Protocol:
        return GatewayHttpProtocol(config, server_state, {}, loop)

    listener = await loop.create_server(protocol, host="127.0.0.1", port=0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(sent)
            async with asyncio.timeout(5):
                return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.mark.parametrize("padding", [40_000, 400_000], ids=["in-one-read", "over-reads"])
async def test_a_pipelined_oversized_head_is_answered_431_after_the_answer_before_it(padding):
    """A real connection: /a's 200, then /b's 431, then the end of the connection, in order.

    40 KB of head sent with /a was read with it, uncounted, and served; 400 KB was refused,
    but unanswered, and the close with its rest unread reset the connection.
    """
    big = b"GET /b HTTP/1.1\r\nHost: g\r\nX-Pad: " + b"p" * padding + b"\r\n\r\n"
    await _a_then_refused(big, 431)


async def _a_then_refused(behind: bytes, status: int) -> dict[str, Any]:
    """Serve /a with `behind` (/b) pipelined after it: /a's 200, then /b's `status`; its problem.

    /a's answer keeps the connection: after one saying `Connection: close` the refusal goes
    unread.
    """
    answer = await _served_on_one_connection(
        _answering_its_path, b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n" + behind
    )
    first, second = answer.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ")
    assert first.endswith(b"\r\n\r\n/a")
    assert b"\r\nconnection: close" not in first.lower()
    assert second.startswith(b"%d " % status)
    problem: dict[str, Any] = orjson.loads(second.partition(b"\r\n\r\n")[2])
    assert (problem["status"], problem["instance"]) == (status, "/b")
    return problem


async def test_pipelined_answers_keep_the_connection_until_the_refusal_behind_them():
    """/a's 200, /b's 200, then /c's 431, which alone says `Connection: close`.

    /b's answer said `Connection: close`, then the 431 followed it: a caller stops reading at
    such an answer (RFC 9112 9.6), so the 431 went unread, /c taken for unanswered.
    """
    small = b"GET /%s HTTP/1.1\r\nHost: g\r\n\r\n"
    big = b"GET /c HTTP/1.1\r\nHost: g\r\nX-Pad: " + b"p" * 40_000 + b"\r\n\r\n"
    answer = await _served_on_one_connection(_answering_its_path, small % b"a" + small % b"b" + big)
    answers = answer.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"200", b"431"]
    closing = [b"\r\nconnection: close\r\n" in a.lower() for a in answers]
    assert closing == [False, False, True]
    assert answers[1].endswith(b"\r\n\r\n/b")


async def test_an_answer_closing_the_connection_sends_no_refusal_put_off_behind_it(monkeypatch):
    """The app's own `Connection: close` on /a: /b's 431 is not written after it; it lingers.

    A caller reads nothing after such an answer; the 431 was written all the same.
    """
    monkeypatch.setattr(http_protocol, "LINGER_SECONDS", 0.05)
    protocol, transport = _open()
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\n")
    protocol.data_received(_padding(LIMIT + 100))
    await _send_answer(protocol, 503, close=True)
    written = bytes(transport.written)
    assert (written.startswith(b"HTTP/1.1 503 "), written.count(b"HTTP/1.1 ")) == (True, 1)
    assert (transport.eof_written, transport.reading, transport.closed) == (True, True, False)
    protocol.data_received(_padding(1000))  # the rest of /b's head, dropped
    await until(lambda: transport.closed, limit=2)


async def test_bytes_past_a_callers_own_close_end_in_a_linger_not_a_reset():
    """/a asks to close, then 400 KB follow: /a's 200, then the end of the stream, no reset.

    The parser drops what follows such a request, but the count refuses it once past the
    limit, behind /a's answer; that answer closes the connection, with those bytes unread.
    """
    sent = b"GET /a HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n" + b"p" * 400_000
    answer = await _served_on_one_connection(_answering_its_path, sent)
    assert answer.count(b"HTTP/1.1 ") == 1
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n/a")


async def test_a_body_that_is_not_http_behind_a_request_being_answered_is_answered_after_it(
    caplog,
):
    """Pipelined behind a request still being answered: that answer, then the 400, then EOF.

    A 400 written at once was read as the earlier request's answer, and that request's own
    answer then failed on the lingering connection, an error logged at the caller's will.
    Then the 400 was not sent at all: the connection closed after the earlier answer.
    """
    caplog.set_level(logging.INFO)
    problem = await _a_then_refused(
        b"POST /b HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    refusals = [r for r in caplog.records if r.getMessage() == "request refused unread"]
    assert [(r.__dict__["reason"], r.__dict__["request_id"]) for r in refusals] == [
        ("malformed", problem["requestId"])
    ]


async def test_an_app_reading_a_body_that_turns_out_not_http_reads_a_disconnect():
    """Pin that an app waiting for more of the body is woken: its caller is gone."""
    protocol, _ = _open()
    protocol.data_received(
        b"POST /v1/dcc HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"
    )
    cycle = protocol.cycle
    assert await cycle.receive() == {"type": "http.request", "body": b"{}", "more_body": True}
    waiting = asyncio.create_task(cycle.receive())
    await asyncio.sleep(0)
    protocol.data_received(b"ZZ\r\n")
    async with asyncio.timeout(1):
        assert await waiting == {"type": "http.disconnect"}


async def test_a_refusal_put_off_behind_an_answer_is_counted_at_once_logged_when_sent(caplog):
    """Behind a request still being answered the refusal is counted; logged once it is sent.

    A line logged before would name the request id of an answer perhaps never written (the
    connection lost first), one no caller could quote.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.security")
    metrics = GatewayMetrics()
    protocol, transport = _open(metrics=metrics)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\n")
    protocol.data_received(_padding(LIMIT + 100))
    assert transport.written == b""
    assert [r for r in caplog.records if r.name == "signing_gateway.security"] == []
    refused = metrics.registry.get_sample_value(
        "gateway_connections_refused_total", {"reason": "header-too-large"}
    )
    assert refused == 1
    await _send_answer(protocol, 200, close=False)
    _, problem = _answered_last(transport)
    logged = [r for r in caplog.records if r.name == "signing_gateway.security"]
    assert [(r.getMessage(), r.request_id) for r in logged] == [
        ("request refused unread", problem["requestId"])
    ]


async def test_a_pipelined_half_head_due_while_the_request_before_is_answered_gets_408_after():
    """The clock rings while /a is still being answered: its 408 follows /a's answer."""
    protocol, transport = _open(header_timeout_seconds=0.05)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\nHost: g\r\n")
    await until(lambda: protocol._bound.refused, limit=2)
    assert transport.written == b""
    await _send_answer(protocol, 200, close=False)
    _assert_answered_after(transport, b"HTTP/1.1 200 ", 408)


async def test_a_closed_connection_is_freed_without_the_cyclic_collector():
    """Each connection's protocol goes when its connection does, by reference count alone.

    The answer transport held the protocol that held it: every closed connection, its parser
    and buffers, waited for the cyclic collector.
    """

    async def app(scope: dict[str, Any], _receive: Any, send: Any) -> None:
        close = [(b"connection", b"close")] if scope["path"] == "/refuse" else []
        headers = [(b"content-length", b"2"), *close]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app, host="127.0.0.1", port=0, http=GatewayHttpProtocol, log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    server_state = ServerState()
    protocols: list[weakref.ref[GatewayHttpProtocol]] = []

    def protocol() -> asyncio.Protocol:
        made = GatewayHttpProtocol(config, server_state, {}, loop)
        protocols.append(weakref.ref(made))
        return made

    requests = [
        b"GET /a HTTP/1.1\r\nHost: g\r\n\r\n",  # kept alive, closed by the caller
        b"GET /a HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",  # closed by the gateway
        POST_HEAD.replace(b"/v1/dcc", b"/refuse") % 1000 + b"{",  # answered mid-body: lingers
        # A 431 put off behind /a's answer, sent after it.
        b"GET /a HTTP/1.1\r\nHost: g\r\n\r\nGET /b HTTP/1.1\r\n" + _padding(40_000) + b"\r\n",
    ]
    listener = await loop.create_server(protocol, host="127.0.0.1", port=0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        gc.collect()
        gc.disable()
        try:
            for request in requests:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                await reader.readuntil(b"ok")
                writer.close()
                await writer.wait_closed()
            await until(lambda: len(server_state.connections) == 0, limit=5)
            assert [made() for made in protocols] == [None, None, None, None]
        finally:
            gc.enable()
