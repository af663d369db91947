"""uvicorn's httptools protocol, bounding what a caller sends before its request is handled.

uvicorn's own protocol keeps every byte of a request head it is sent and waits for it for
ever: one connection sending header lines without end grew the gateway by ~100 MB per 100 MB
sent, with no answer, and connections that sent nothing, or half a head, stayed open until
the descriptor limit locked other callers out. (`h11_max_incomplete_event_size` bounds only
uvicorn's h11 protocol; its keep-alive timeout runs only once an answer has been sent.)

`GatewayHttpProtocol` adds three bounds per connection, from the app's `limits` settings:

- **Size.** The bytes of a request that are not body are counted as they arrive, before the
  parser keeps them: request line and header fields, then chunk framing and trailer fields
  (which uvicorn would add to the request's headers; they are dropped). A head over
  `max_header_bytes` is answered 431 problem+json and the connection is closed; after the
  head, the count may reach
  `max_header_bytes + max_body_bytes`, past which the connection is closed.
- **Count.** A head of more than `max_header_fields` header fields is answered 431 too, and
  the fields past the count are not kept. The parser hands each field over as objects of its
  own, so within the size bound 6,400 fields `a:b` held 415 KiB per request and 5,333 fields
  `a:bc` 533 KiB (tracemalloc), against 16-19 KiB at the default count of 100.
- **Time.** A new connection has `header_timeout_seconds` to complete its first head, and each
  later request as much from its first byte. Past it, a connection that had begun a request
  is answered 408 problem+json and closed; one that sent nothing is closed. Between requests
  uvicorn's keep-alive timer applies, set to the settings' `keep_alive_seconds`. When the
  clock rings while the caller's bytes wait unread in the kernel (the loop is behind, as in a
  burst of thousands of connections), it looks again a second later instead: only a caller
  that does not send is cut off.

The body is the app's to bound (`security.limits`: size while it streams, and the time it may
take). A request before the refused one that is still being answered (pipelining) is answered
first, then the refused one, and the connection closes: an answer written at once would be
taken for the earlier request's. The earlier answer keeps the connection, since a caller reads
nothing after one saying `Connection: close`; when it says so all the same (the app's or the
caller's choice), the refusal is not sent and the close lingers.
A body that is not HTTP/1.1 (chunk framing the parser refuses) ends its request for the app
as a caller gone; it is answered 400 unless the app's answer has begun. Pipelined behind a
request still being answered, its 400 waits for its turn: the answers before it are written,
then the 400, and the connection lingers as after any refusal.

**Closing after an answer with the body unread.** When the app answers before the request's
body has all arrived (its 413 for a body over the limit, its 408 for one too slow) and says
`Connection: close`, uvicorn closed the socket with the caller's bytes unread. The kernel then
resets the connection and drops what it has not yet sent: on loopback the answer had left
already (20 of 20 callers that sent 1.5 MB of an announced 50 MB read their 413, then a reset),
but over a network an answer still unsent or being resent is lost, and a caller still sending
sees only the reset. Such a close lingers as the gateway's own refusals do (LINGER_SECONDS);
an answer to a request read whole still closes at once.

Counted per read in `data_received`, not per header callback: httptools holds a header line
until it ends, so a single endless line never reaches a callback, and one addition per read
costs less than one per header. The count restarts when a request ends, so the bytes that
follow it in the same read are not counted: a pipelined request's head may take up to one
read more before it is refused (asyncio and uvloop read at most 256 KiB at a time), which
still bounds what a connection holds. Such a head is measured whole once it has arrived, so
it is refused all the same (a 40 KB head sent in one write behind a small request was served).
So is a head that came whole in a read that went on into its body. Measured whole, a head is
its request line and each field as `name:value` and its line end: the spaces around a value,
which the parser does not keep, are not counted. A whole head is thus over the limit, or not,
alike alone or pipelined, `Name: value` or `Name:value`; only one still arriving is refused by
the bytes counted so far.

**A caller that leaves.** When the connection is lost (closed or reset by the caller, or
half-closed: asyncio closes the transport at the end of its input) while a request's answer
is under way, that request's task is cancelled, its signer call with it
(`_start_asgi_task`). uvicorn only marks it disconnected, and drops its answer once written;
and with a request pipelined behind it, uvicorn marks that one instead, so the cancelled
request's own cycle is marked here, or uvicorn would log it as an app that returned without
answering (an error at any caller's will) and write a 500 into the closed connection. The
cancellations are paced, `CANCELS_PER_TURN` a loop turn (`_Canceller`): callers that leave
together (a load balancer or a client pool closing its connections at once) would otherwise
have every request's unwinding (its signer call closed, its audit record and access line
written) run in one loop turn, ~0.2 ms each, holding `/healthz` for as long.

The head's clock is one timer per connection, moved lazily: a request that starts while the
timer is set only notes its deadline, and the timer, when it rings early, sets itself again
for that deadline. A busy kept-alive connection thus creates a timer about once per timeout,
not one per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import functools
import logging
import sys
import termios
import urllib.parse
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import httptools
import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from signing_gateway.errors import PROBLEM_BASE, PROBLEM_CONTENT_TYPE, problem_body
from signing_gateway.observability.context import (
    CONNECTION_KEY,
    NO_STORE,
    REQUEST_ID_KEY,
    Connection,
    accept_or_generate,
)
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime.header_fields import REPEATING, SharedFields
from signing_gateway.security.settings import LimitsSettings

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application  # uvicorn's own type of the app it runs

logger = logging.getLogger("signing_gateway.security")

#: Why a connection is closed before its request is handled: the 431, the 408, the 400 of
#: bytes that are not HTTP/1.1, and a connection that sent nothing in time.
ConnectionRefusal = Literal["header-too-large", "header-timeout", "malformed", "idle"]
#: The reasons as values: the labels of `gateway_connections_refused_total`.
CONNECTION_REFUSALS: tuple[str, ...] = get_args(ConnectionRefusal)

#: The versions a request line may name (httptools also takes 0.9 and 2.0).
HTTP_VERSIONS: Final = frozenset({"1.0", "1.1"})

#: After a refusal, how long the gateway reads on (discarding) before it closes. Closing a
#: socket with unread input sends a reset, which can destroy the answer before the caller has
#: read it; a caller still sending its head would then never learn why.
LINGER_SECONDS = 2.0
#: Requests whose callers left cancelled in one loop turn at most (`_Canceller`); the rest
#: wait for the next turns, in which everything else ready (a probe, other requests) runs too.
CANCELS_PER_TURN: Final = 16
#: A request line's bytes besides method and target: " HTTP/1.1\r\n", the space before the
#: target, and the empty line ending the head.
_LINE_OVERHEAD = 14


#: uvicorn's warning for a request httptools cannot parse: `GatewayHttpProtocol` logs the
#: refusal itself (INFO, with the request id of its 400). Any caller can send such requests,
#: so at WARNING they were noise at its will.
_UNPARSEABLE_WARNING = "Invalid HTTP request received."


class _ConnectionLogger:
    """`uvicorn.error` as a connection's logger, less the warning for unparseable requests."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the logger has
        return getattr(self._logger, name)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:  # noqa: ANN401
        """Log as `uvicorn.error` does, unless it is the unparseable-request warning."""
        if msg != _UNPARSEABLE_WARNING:
            self._logger.warning(msg, *args, **kwargs)


@functools.cache
def _connection_logger() -> _ConnectionLogger:
    return _ConnectionLogger(logging.getLogger("uvicorn.error"))


#: When the head's clock rings with the caller's bytes still unread in the kernel, how long
#: until it looks again.
BEHIND_GRACE_SECONDS = 1.0


def _unread_input(transport: asyncio.BaseTransport) -> bool:
    """Whether bytes wait unread on the transport's socket (FIONREAD; False if unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return False
    return int.from_bytes(raw, sys.byteorder) > 0


@functools.cache
def _shared_fields(*, tokens: bool) -> SharedFields:
    return SharedFields(REPEATING if tokens else REPEATING - {b"authorization"})


def _shares_tokens(app_state: dict[str, Any]) -> bool:
    """Whether `authorization` values may be kept past their requests.

    Only while the app remembers tokens itself (`auth.token_cache_size` > 0), so that 0 keeps
    no token anywhere once its request is answered.
    """
    auth = getattr(app_state.get("settings"), "auth", None)
    return getattr(auth, "token_cache_size", 0) > 0


@functools.cache
def _default_limits() -> LimitsSettings:
    return LimitsSettings()


def _limits_of(app_state: dict[str, Any]) -> LimitsSettings:
    """The app's `limits` settings (from its lifespan state), or the defaults."""
    limits = getattr(app_state.get("settings"), "limits", None)
    return limits if isinstance(limits, LimitsSettings) else _default_limits()


def problem_answer(
    status: int,
    slug: str,
    title: str,
    detail: str,
    default_headers: list[tuple[bytes, bytes]],
    *,
    request_id: str,
    instance: str = "",
) -> bytes:
    """A whole HTTP/1.1 answer: problem+json naming `request_id`, and `Connection: close`.

    For answers given below the app, where no middleware adds the request id. `instance`: the
    refused request's path, as the app's problems give it; "" when it is not known (an
    empty reference, which stands for the request's own URI).
    """
    body = orjson.dumps(
        problem_body(
            type_=PROBLEM_BASE + slug,
            title=title,
            status=status,
            detail=detail,
            instance=instance,
            request_id=request_id,
        )
    )
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [
        b"content-type: %s\r\ncontent-length: %d\r\n" % (PROBLEM_CONTENT_TYPE.encode(), len(body)),
        NO_STORE[0] + b": " + NO_STORE[1] + b"\r\n",
        REQUEST_ID_KEY + b": " + request_id.encode() + b"\r\nconnection: close\r\n\r\n",
        body,
    ]
    return b"".join(head)


class _HeadBound:
    """One connection's head bound: its limits and where its current request stands."""

    __slots__ = (
        "answer_transport",
        "begun",
        "connection",
        "cycle",
        "fields",
        "head_complete",
        "head_deadline",
        "head_timeout",
        "lingering",
        "max_fields",
        "max_head_bytes",
        "max_unbodied_bytes",
        "metrics",
        "put_off",
        "refused",
        "task",
        "timer",
        "too_many_fields",
        "unbodied",
        "uncounted",
    )

    def __init__(self, limits: LimitsSettings, metrics: object, *, tokens: bool) -> None:
        self.max_head_bytes = limits.max_header_bytes
        self.max_fields = limits.max_header_fields
        self.max_unbodied_bytes = limits.max_header_bytes + limits.max_body_bytes
        self.head_timeout = limits.header_timeout_seconds
        self.metrics = metrics if isinstance(metrics, GatewayMetrics) else None
        #: The process's shared header fields (`runtime.header_fields`).
        self.fields = _shared_fields(tokens=tokens)
        #: Bytes of the current request that are not body (see the module doc).
        self.unbodied = 0
        #: Whether a request has begun and not ended: its bytes may not have been counted
        #: (a pipelined one begun in the read of the request before it).
        self.begun = False
        #: The current head began in the read that ended the request before it: the count
        #: missed its start, so the whole head is measured once it has arrived.
        self.uncounted = False
        self.head_complete = False
        #: When the head being waited for is due (None: no head is being waited for).
        self.head_deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        #: Set once the connection is refused: whatever arrives after is dropped unparsed.
        self.refused = False
        #: Set once its sending side is closed, until the linger ends.
        self.lingering = False
        #: The current head has more header fields than `max_fields` (those past it not kept).
        self.too_many_fields = False
        #: The transport as each request's answer cycle is given it (`_AnswerTransport`).
        self.answer_transport: _AnswerTransport | None = None
        #: Lost or not, as each request's scope carries it (`CONNECTION_KEY`).
        self.connection = Connection()
        #: A refusal put off behind the answer to an earlier request: its answer (None: a
        #: close unanswered), reason and request id, to be sent once that answer is complete.
        self.put_off: tuple[bytes | None, ConnectionRefusal, str | None] | None = None
        #: The app's task for the request whose answer is under way (None: none is), to be
        #: cancelled if the connection is lost before that answer is complete.
        self.task: asyncio.Task[None] | None = None
        #: That request's answer cycle. Not always uvicorn's `cycle`: that is the last request
        #: read, which may be one pipelined behind it, waiting its turn.
        self.cycle: RequestResponseCycle | None = None


class _AnswerTransport:
    """The connection's transport as uvicorn's answer cycle sees it: its close may linger.

    The cycle writes the answer and closes the connection after it when the answer says
    `Connection: close`; that close goes to `GatewayHttpProtocol.close_after_answer`.
    """

    __slots__ = ("_protocol", "_transport")

    def __init__(self, protocol: GatewayHttpProtocol, transport: asyncio.Transport) -> None:
        self._protocol: GatewayHttpProtocol | None = protocol
        self._transport = transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write as the transport does."""
        self._transport.write(data)

    def is_closing(self) -> bool:
        """Whether the transport is closing."""
        return self._transport.is_closing()

    def close(self) -> None:
        """Close after the answer: at once, or once a linger ends (module doc)."""
        if self._protocol is None:  # the connection is lost: nothing left to linger for
            self._transport.close()
        else:
            self._protocol.close_after_answer()

    def release(self) -> None:
        """Let go of the protocol, once the connection is lost."""
        self._protocol = None

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - whatever the transport has
        return getattr(self._transport, name)


class GatewayHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with a size and a time bound on each request head (module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Set up a connection as uvicorn does, bounded by the app's `limits` settings."""
        super().__init__(config, server_state, app_state, _loop)
        self.logger = _connection_logger()  # type: ignore[assignment]  # delegates to uvicorn's
        # One attribute, not nine: past 30 instance attributes CPython gives up sharing the
        # class's key table and each connection pays for a dict of its own (~1.3 KB more, at
        # S4's 10,000 connections 13 MB).
        limits = _limits_of(app_state)
        self._bound = _HeadBound(limits, app_state.get("metrics"), tokens=_shares_tokens(app_state))
        # The settings' keep-alive, not the server's (uvicorn's `--timeout-keep-alive`): one
        # place to set it for `serve`, its workers, `demo` and a uvicorn command line alike.
        self.timeout_keep_alive = limits.keep_alive_seconds  # type: ignore[assignment]

    # Connection events.

    def connection_made(  # type: ignore[override]  # uvicorn's own narrows it so
        self, transport: asyncio.Transport
    ) -> None:
        """Set up as uvicorn does; the first head is due `header_timeout_seconds` from now."""
        super().connection_made(transport)
        self._bound.answer_transport = _AnswerTransport(self, transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        """Let go of the timer and the answer transport; cancel the request being answered.

        Both hold this protocol: kept, each closed connection, its parser and buffers, would
        be a reference cycle left to the cyclic collector. The request whose answer is under
        way has nobody left to answer: its task is cancelled (see `_start_asgi_task`).
        """
        if self._bound.timer is not None:
            self._bound.timer.cancel()
            self._bound.timer = None
        if self._bound.answer_transport is not None:
            self._bound.answer_transport.release()  # the last cycle may still hold it
            self._bound.answer_transport = None
        # Before uvicorn marks the request being served as disconnected: from now on it drops
        # that request's answer, and the request metrics count it as such.
        self._bound.connection.lost = True
        super().connection_lost(exc)
        # Nobody is left to answer: the request's work stops now (see `_start_asgi_task`).
        task, self._bound.task = self._bound.task, None
        cycle, self._bound.cycle = self._bound.cycle, None
        if task is not None and cycle is not None:
            # uvicorn marked only its last cycle disconnected: one pipelined behind this one
            # when there is such. Unmarked, this request, ended by the cancellation with
            # nothing sent, would be taken for an app that returned without answering: an
            # error logged, and a 500 written into the closed connection.
            self._end_for_app(cycle)
            _canceller(self.loop).cancel(task)

    def data_received(self, data: bytes) -> None:
        """Count what is not body, parse as uvicorn does, and refuse what passes the bound."""
        if self._bound.refused:
            return
        if self.timeout_keep_alive_task is not None:
            # The first bytes after an answer (uvicorn stops its keep-alive timer for them):
            # the next request's head, or the unsent rest of the last request.
            self._start_head_clock()
        if not self._bound.begun:
            self._bound.uncounted = False  # a head that begins in this read is counted whole
        self._bound.unbodied += len(data)
        super().data_received(data)
        if self._bound.too_many_fields:
            if not self._bound.refused and not self.transport.is_closing():
                self._refuse_too_many_fields()
        elif self._bound.unbodied > self._bound.max_head_bytes:
            self._check_size()

    # Parser callbacks.

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep a field of the head as uvicorn does, sharing what repeats; drop trailer fields.

        (`runtime.header_fields`: one tuple per distinct field for the names that repeat, such
        as a client's bearer token.) The parser drops the whitespace before a value, not the
        whitespace after it, which is no part of the value either (RFC 9110 5.5): it is
        stripped, as uvicorn's own protocol does.
        """
        if self._bound.head_complete:
            # A trailer field of a chunked body. uvicorn would add it to the request's headers
            # after the app has started, where it would read as any header field (a bearer
            # token in a trailer authenticated the request). The gateway reads no trailer, and
            # RFC 9110 (6.5.1) lets a recipient merge one only where that is known to be safe:
            # it is dropped (its bytes were counted against the bound).
            return
        if len(self.headers) >= self._bound.max_fields:
            self._bound.too_many_fields = True  # refused once this read is parsed
            return
        value = value.rstrip(b" \t")
        field = self._bound.fields.field(name.lower(), value)
        if field[0] == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append(field)

    def on_message_begin(self) -> None:
        """Start the request as uvicorn does; its head is due, unless already (see module doc).

        Its scope carries the connection (`CONNECTION_KEY`): whether its answer can still
        reach the caller.
        """
        super().on_message_begin()
        self.scope[CONNECTION_KEY] = self._bound.connection  # type: ignore[literal-required]
        self._bound.begun = True
        if self._bound.head_deadline is None and not self._bound.refused:
            self._start_head_clock()  # pipelined: it began right after the last request

    def on_headers_complete(self) -> None:
        """Stop the head's clock; refuse a head over the limit, else start the request."""
        self._bound.head_deadline = None
        # The count includes all of this read, body bytes after the head too: only when it is
        # over the limit is the head itself measured, or when the count missed the head's
        # start (begun in the read that ended the request before it: pipelined).
        if not self._bound.refused:
            if self._bound.too_many_fields:
                self._refuse_too_many_fields(head_read=True)
            elif (
                self._bound.unbodied > self._bound.max_head_bytes or self._bound.uncounted
            ) and self._head_bytes() > self._bound.max_head_bytes:
                self._refuse_head_too_large(head_read=True)
            elif (version := self.parser.get_http_version()) not in HTTP_VERSIONS:
                self._refuse_version(version)
        self._bound.head_complete = True
        self._bound.uncounted = False
        if not self._bound.refused:
            cycle = self.cycle
            super().on_headers_complete()
            if self.cycle is not cycle:  # a new request: its answer closes through ours
                self.cycle.transport = self._bound.answer_transport  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        """Uncount the body's bytes; hand them on as uvicorn does."""
        self._bound.unbodied -= len(body)
        if not self._bound.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The next request's count and head start afresh, missing what is left of this read."""
        self._bound.unbodied = 0
        self._bound.begun = self._bound.head_complete = False
        self._bound.uncounted = True
        if not self._bound.refused:
            super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """Start the request's task as uvicorn does, and keep it until its answer is complete.

        A caller that leaves while its request is served (it closes or resets the connection;
        a half-close too, as asyncio closes the transport on end of input) is told by
        `connection_lost`, which cancels this task: its signer call stops at once, freeing its
        bulkhead slot, its CPU permit and its in-flight count, and no retry is sent for it.
        uvicorn alone only marks the request disconnected and drops its answer once written:
        the work went on for nobody, up to the request's deadline. Kept in the connection's
        `_HeadBound` slots with its answer cycle, as uvicorn keeps nothing per request that
        names the task: two attributes set per request, no object.
        """
        if self.config.reset_contextvars:
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._bound.task = task
        self._bound.cycle = cycle

    def on_response_complete(self) -> None:
        """Go on as uvicorn does, unless lingering: then no keep-alive and no next request.

        The answer is complete: the task that wrote it is no longer cancelled should the
        connection be lost (what it does after, its accounting, is its own to finish).
        A refusal put off behind the answers being written is sent once the last of them is
        whole (see `_refuse`); those answers kept the connection, as the refusal closes it.
        """
        self._bound.task = self._bound.cycle = None
        if self._bound.lingering:
            self.server_state.total_requests += 1  # as uvicorn counts an answered request
            return
        put_off = self._bound.put_off
        if put_off is None or not self.cycle.response_complete or self.transport.is_closing():
            super().on_response_complete()  # the next request's turn, or the keep-alive's
            return
        self.server_state.total_requests += 1
        self._bound.put_off = None
        self.flow.resume_reading()  # paused behind the answer: read on to drop it
        self._answer_refusal(*put_off)

    def close_after_answer(self) -> None:
        """Close after an answer that says so; linger if the request's body is still coming.

        `begun` says a request's bytes are still arriving: the answered one's body, or the
        head of one sent after it, refused or not. Closing with them unread would reset the
        connection. A refusal put off behind it (see `_refuse`), or waiting its turn in the
        pipeline (`_refuse_in_turn_of`), is not sent: a caller reads nothing after an answer
        saying `Connection: close` (RFC 9112 9.6). What it refused may still be arriving (a
        head, a body that is not HTTP/1.1, or bytes sent after the caller's own `Connection:
        close`, which the parser drops unparsed), so the close lingers.
        """
        transport = self.transport
        put_off, self._bound.put_off = self._bound.put_off, None
        coming = put_off is not None or self._bound.begun
        if not coming or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        self._read_no_more()
        self.flow.resume_reading()  # paused for a body buffered unread: read on to drop it
        self._linger()

    # The bounds.

    def _head_bytes(self) -> int:
        """The current head's size: request line, and header fields each as `name:value` CRLF.

        The spaces around a value are not counted, as the parser keeps none: counted as `: `,
        a pipelined head written `name:value` was refused within a byte per field of the
        limit, while the same head sent alone, counted as it came, was served. So the head's
        size is the same whichever way it is measured (see the module doc).
        """
        fields = sum(len(name) + len(value) + 3 for name, value in self.headers)
        return len(self.parser.get_method()) + len(self.url) + _LINE_OVERHEAD + fields

    def _check_size(self) -> None:
        """After a read that took the count past the head limit: refuse if it is over a bound."""
        if self._bound.refused or self.transport.is_closing():
            return
        if not self._bound.head_complete:
            self._refuse_head_too_large()
        elif self._bound.unbodied > self._bound.max_unbodied_bytes:
            # Chunk framing and trailer fields without end, the request being read: nothing is
            # answered (the app is reading its body), the connection is closed.
            self._refuse("header-too-large", None)

    def _start_head_clock(self) -> None:
        self._bound.head_deadline = deadline = self.loop.time() + self._bound.head_timeout
        if self._bound.timer is None:
            self._bound.timer = self.loop.call_at(deadline, self._head_clock_rang, deadline)

    def _head_clock_rang(self, deadline: float) -> None:
        self._bound.timer = None
        due = self._bound.head_deadline
        if due is None or self._bound.refused:  # no head is being waited for
            return
        if due == deadline and _unread_input(self.transport):
            # The caller's bytes are here, unread: the loop is behind (an overload's burst of
            # connections), not the caller. Look again shortly rather than drop a request.
            self._bound.head_deadline = due = self.loop.time() + BEHIND_GRACE_SECONDS
        if due != deadline:  # a later head's, or the grace above: wait for that
            self._bound.timer = self.loop.call_at(due, self._head_clock_rang, due)
            return
        if self._bound.head_complete or not self._bound.begun:
            # Nothing of a new request came: a connection that sent nothing, or went on
            # sending the unread rest of a request that has had its answer.
            self._refuse("idle", None)
            return
        timeout = self._bound.head_timeout
        self._refuse_answering(
            "header-timeout",
            status=408,
            slug="header-timeout",
            title="Request header timed out",
            detail=f"the request line and header fields did not arrive within {timeout:g} s",
        )

    def send_400_response(self, msg: str) -> None:
        """Answer a request httptools cannot parse: 400 problem+json, as the other refusals.

        uvicorn's own answer is plain text without a request id, and it closes at once.
        """
        del msg  # uvicorn's text, `_UNPARSEABLE_WARNING`: the refusal's own line says it
        self._refuse_answering(
            "malformed",
            status=400,
            slug="bad-request",
            title="Bad request",
            detail="the request is not valid HTTP/1.1",
        )

    def _refuse_version(self, version: str) -> None:
        """Answer 400 for a request line naming a version besides HTTP/1.0 and HTTP/1.1.

        httptools takes `HTTP/0.9` and `HTTP/2.0` on a request line too; served, such a
        request skipped the `Host` that only HTTP/1.1 is held to (`security.limits`), though
        neither version has a request line of that form (HTTP/0.9 has no version or header
        fields, HTTP/2 frames its requests in binary and names the host in `:authority`).
        """
        self._refuse_answering(
            "malformed",
            status=400,
            slug="bad-request",
            title="Bad request",
            detail=f"the request line names HTTP/{version}: the gateway speaks HTTP/1.1",
            head_read=True,
        )

    def _unsupported_upgrade_warning(self) -> None:
        """Serve a request asking for another protocol (`Upgrade`) as HTTP/1.1, unlogged.

        The gateway speaks no other (RFC 9110 7.8 lets a server ignore the field). uvicorn
        warned twice for each such request, advising a WebSocket library: `curl --http2` on
        plain http asks for h2c, so any caller could fill the log with that advice.
        """

    def _refuse_head_too_large(self, *, head_read: bool = False) -> None:
        """Answer 431 for a head over the size limit; `head_read`: parsed whole (its path too)."""
        limit = self._bound.max_head_bytes
        self._refuse_431(
            f"the request line and header fields are limited to {limit} bytes", head_read=head_read
        )

    def _refuse_too_many_fields(self, *, head_read: bool = False) -> None:
        """Answer 431 for a head of more than `max_header_fields` fields."""
        self._refuse_431(
            f"a request may carry at most {self._bound.max_fields} header fields",
            head_read=head_read,
        )

    def _refuse_431(self, detail: str, *, head_read: bool) -> None:
        self._refuse_answering(
            "header-too-large",
            status=431,
            slug="header-too-large",
            title="Request header fields too large",
            detail=detail,
            head_read=head_read,
        )

    def _refuse_answering(
        self,
        reason: ConnectionRefusal,
        *,
        status: int,
        slug: str,
        title: str,
        detail: str,
        head_read: bool = False,
    ) -> None:
        """Refuse for `reason`, answering a `status` problem+json under a new request id."""
        request_id = accept_or_generate(None)
        headers = self.server_state.default_headers
        answer = problem_answer(
            status,
            slug,
            title,
            detail,
            headers,
            request_id=request_id,
            instance=self._refused_path(head_read=head_read),
        )
        self._refuse(reason, answer, request_id)

    def _refused_path(self, *, head_read: bool) -> str:
        """The refused request's path, as the app would have had it (`scope["path"]`), or "".

        Only once its request line has arrived whole, which shows when a header field or the
        end of the head followed it: before that `self.url` may hold part of the target. ""
        too for a target that is no URL.
        """
        if not (head_read or self._bound.head_complete or self.headers):
            return ""
        try:
            raw_path = httptools.parse_url(self.url).path
            path = raw_path.decode("ascii") if raw_path else ""
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            return ""
        if not path:
            return ""
        if "%" in path:
            path = urllib.parse.unquote(path)
        return self.root_path + path

    def _refuse(
        self, reason: ConnectionRefusal, answer: bytes | None, request_id: str | None = None
    ) -> None:
        """Read nothing more; send `answer` (if any, and if nothing is being answered); close.

        `request_id`: the one `answer` gives the caller, for the refusal's log line.
        """
        self._read_no_more()
        cycle = self.cycle
        if cycle is not None and self._bound.head_complete and not self._end_for_app(cycle):
            answer = None
        if self._bound.metrics is not None:
            self._bound.metrics.connections_refused.labels(reason=reason).inc()
        if cycle is not None and not cycle.response_complete and not self._bound.head_complete:
            # An earlier request is still being answered: finish that, then answer this one
            # and close (`on_response_complete`). Written now, the answer would be read as that
            # request's. The connection is kept for it: an earlier answer saying
            # `Connection: close` tells the caller to read no further, the refusal unread.
            self.flow.pause_reading()
            self._bound.put_off = (answer, reason, request_id)
            return
        if cycle is not None and self._refuse_in_turn_of(cycle, answer, reason, request_id):
            return
        self._answer_refusal(answer, reason, request_id)

    def _answer_refusal(
        self, answer: bytes | None, reason: ConnectionRefusal, request_id: str | None
    ) -> None:
        """Send a refusal's `answer` and linger; with none, close at once."""
        if answer is None:
            self.transport.close()
            return
        # Logged only as it is sent: the request id of an answer never sent (its connection
        # lost first) would be one no caller can quote.
        logger.info(
            "request refused unread",
            extra={"security_event": "refused", "reason": reason, "request_id": request_id},
        )
        self.transport.write(answer)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._linger()

    def _read_no_more(self) -> None:
        """Drop whatever arrives from now on unparsed, and no head is due any more.

        What the request being read holds (the parser's part-read header line among it) goes
        now rather than when the connection closes. Nothing parses on this connection again.
        """
        self._bound.refused = True
        self._bound.head_deadline = None
        self.parser = None  # type: ignore[assignment]  # as uvicorn's connection_lost does
        self.url, self.headers = b"", []

    def _linger(self) -> None:
        """Close the sending side; read on, dropping it, until the caller or LINGER_SECONDS ends."""
        self.transport.write_eof()
        self._bound.lingering = True
        if self._bound.timer is not None:
            self._bound.timer.cancel()
        self._bound.timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    @staticmethod
    def _end_for_app(cycle: RequestResponseCycle) -> bool:
        """End a request the app has, or will have; may it be answered?

        For a connection lost, or a body that is not HTTP/1.1.

        For the app its caller is gone, as when the connection is lost: it reads no more and
        writes nothing. Once its answer has begun, another would be read as part of it.
        """
        if not cycle.response_complete:
            cycle.disconnected = True
        cycle.message_event.set()
        return not cycle.response_started

    def _refuse_in_turn_of(
        self,
        cycle: RequestResponseCycle,
        answer: bytes | None,
        reason: ConnectionRefusal,
        request_id: str | None,
    ) -> bool:
        """Whether `cycle` waits behind a request being answered; if so, refuse it in its turn.

        An answer written now would be taken for that request's, and the write of that
        answer would then fail on the lingering connection (an error logged at the
        caller's will). In its turn the refusal's `answer` is sent, after the answers before
        it, as a refused head's is (`on_response_complete`); the connection then lingers.
        """
        for index, (queued, _app) in enumerate(self.pipeline):
            if queued is cycle:
                turn = functools.partial(self._refusal_turn, answer, reason, request_id)
                self.pipeline[index] = (cycle, turn)
                return True  # reading paused since it was queued, until its turn
        return False

    async def _refusal_turn(
        self,
        answer: bytes | None,
        reason: ConnectionRefusal,
        request_id: str | None,
        _scope: object,
        _receive: object,
        _send: object,
    ) -> None:
        """A refused request's turn: its answer is sent and the connection lingers, or it ends."""
        self._answer_refusal(answer, reason, request_id)


class _Canceller:
    """Cancels the tasks of requests whose callers left, `CANCELS_PER_TURN` a loop turn.

    One per event loop (`_canceller`), holding no reference to it: the loop is the key of a
    weak mapping, which a value holding it would keep alive.
    """

    __slots__ = ("_scheduled", "_tasks")

    def __init__(self) -> None:
        """Nothing to cancel yet."""
        self._tasks: deque[asyncio.Task[None]] = deque()
        self._scheduled = False

    def cancel(self, task: asyncio.Task[None]) -> None:
        """Cancel `task` in this loop turn's share, or a later one's."""
        self._tasks.append(task)
        if not self._scheduled:
            self._scheduled = True
            task.get_loop().call_soon(self._turn)

    def _turn(self) -> None:
        tasks = self._tasks
        for _ in range(min(len(tasks), CANCELS_PER_TURN)):
            tasks.popleft().cancel()  # one that ended meanwhile is left as it is
        if tasks:
            tasks[0].get_loop().call_soon(self._turn)
        else:
            self._scheduled = False


#: One `_Canceller` per event loop (a test suite runs many loops, one after another).
_CANCELLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Canceller] = (
    weakref.WeakKeyDictionary()
)


def _canceller(loop: asyncio.AbstractEventLoop) -> _Canceller:
    canceller = _CANCELLERS.get(loop)
    if canceller is None:
        canceller = _CANCELLERS[loop] = _Canceller()
    return canceller
