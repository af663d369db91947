"""The transports under each signer's httpx client: one answer whichever is configured.

The two transports read a few malformed answers differently, by themselves: what they hand
on is made the same here, so `signers.failures` classifies one way whichever is configured.

- A `101 Switching Protocols` to a request that asked for no upgrade: aiohttp hands the
  status on, httpcore (h11) refuses it as a protocol error. Both hand on the status (an
  unexpected one, `signers.failures.response_error`), the connection closed.
- A `Transfer-Encoding` naming a coding besides `chunked` (`gzip, chunked`): httpcore refuses
  it, aiohttp de-chunked it and read the rest as the body (taking a `bogus, chunked` answer).
  `chunked` alongside a `Content-Length` (which RFC 9112 6.3 says ought to be an error):
  aiohttp refuses it, httpcore read it. `chunked` in a list with an empty element
  (`,chunked`, `chunked,`), beside an empty field, or an empty `Transfer-Encoding` alone:
  httpcore refuses it, aiohttp read it (`chunked,` as no chunking at all). Both refuse all
  of these as a protocol error (a connection lost: its answer cannot be read), the
  connection closed (`framing_problem`).
- Bytes a signer sent beyond the answer it owed (more than its `Content-Length`, say, or an
  answer no request asked for): the next call on that connection took them as its own answer,
  on httpcore when they came with the answer, on aiohttp when they came while the connection
  was idle. Neither transport reuses such a connection now (`_NoTrailingBytesStream`,
  `_CleanReuseConnector`), even when all that came is the start of one (a status line) in the
  same read as the end of the one owed, which aiohttp's parser keeps out of sight and the
  next call on the connection failed on (a connection lost). Bytes that come only after the
  next request went out cannot be told from its answer by any client; a signer sending them
  answers wrongly.
- Bytes that are no HTTP at all, in the same read as the end of the answer owed (`GARBAGE`
  after a whole answer, or the rest of a body longer than its `Content-Length`): httpcore
  hands on the answer, while aiohttp's parser refused them and dropped the answer it had
  read with them (a connection lost, retried: the signer's work thrown away). The answer
  stands on both now, and its connection is closed (`_PooledProtocol`): a body longer than
  its `Content-Length` is an answer of that length, malformed unless that is the whole JSON.

`HttpcoreSignerTransport` is httpx's own transport with those changes.

`SignerTransport`, the aiohttp transport, holds less per call in flight besides.

`httpx_aiohttp.AiohttpTransport` does the work: its aiohttp session and connection pool, its
response stream and its map from aiohttp's exceptions to httpx's. `SignerTransport` changes
only how a request is handed to aiohttp, because what is handed over stays alive until the
signer answers, for every call in flight:

- Header names, and the values that are the same on every call (`Host`, `User-Agent`,
  `Accept`, `Accept-Encoding`, `Content-Type`), go to aiohttp as strings decoded once per
  transport; the library hands over httpx's `Headers`, whose items are freshly decoded strings
  on every call, and aiohttp keeps them in its own header dict.
- The names go as `multidict.istr`: aiohttp keeps a call's headers in two case-insensitive
  dicts (its merge with the session's defaults, and the request's own), and each keeps a
  lower-cased copy of every plain `str` name it is given, while an `istr` carries its own,
  made once (~1.6 KB less per call in flight, measured with `tracemalloc`). The names on the
  wire are the same: an `istr` is the string as given.
- One `aiohttp.ClientTimeout` per distinct set of timeouts, not one per call.
- aiohttp's exceptions are mapped to httpx's when one is raised, not under a generator-based
  context manager alive for the whole call.

And its session keeps no cookies (`aiohttp.DummyCookieJar`), as the httpx client above it
keeps none (`signers.http.SignerHttpClient`): a cookie one signer answer set would otherwise
be sent on every later call, whoever it is made for.

A request with a streamed body (none of the gateway's) takes the library's own path.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, cast

import httpx
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import _EXC_SENTINEL, EMPTY_BODY_STATUS_CODES
from aiohttp.streams import EMPTY_PAYLOAD
from httpx._transports.default import AsyncResponseStream
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions
from multidict import istr

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from aiohttp.client_reqrep import ConnectionKey
    from aiohttp.connector import Connection
    from aiohttp.http_parser import HttpParser, RawResponseMessage
    from aiohttp.streams import StreamReader
    from aiohttp.tracing import Trace

__all__ = ["HttpcoreSignerTransport", "SignerTransport", "coding_list", "framing_problem"]

#: What h11 says of a 101 that no Upgrade asked for (h11's `_state.py`; pinned by the tests
#: that send one to both transports).
_UNASKED_SWITCH = "_SWITCH_UPGRADE"


def coding_list(values: Iterable[str]) -> list[str]:
    """The codings a `Transfer-Encoding` or `Content-Encoding` header's values name, in order.

    Lower-cased, without the empty elements RFC 9110 5.6.1 lets a list hold.
    """
    codings = [coding.strip().lower() for value in values for coding in value.split(",")]
    return [coding for coding in codings if coding]


def framing_problem(transfer_encodings: Iterable[str], *, with_length: bool) -> str | None:
    """Why an answer's framing is refused, given its `Transfer-Encoding` values (None: it is not).

    Only `chunked` is read, and never beside a `Content-Length`: a transfer coding the request
    did not offer (it sends no `TE`) leaves a body this client cannot read, and two lengths
    are how a response is split or smuggled (RFC 9112 6.3). And only as one field holding
    that one word, as h11 reads it: an empty element (`,chunked`, `chunked,`), an empty
    field or a second one are lists parsers read differently (aiohttp took `chunked,` as
    no chunking at all, and the chunks as the body).
    """
    values = [value.strip().lower() for value in transfer_encodings]
    if not values:
        return None
    if coding_list(values) not in ([], ["chunked"]):
        return "a transfer coding other than chunked"
    if values != ["chunked"]:
        return "a Transfer-Encoding other than one field saying chunked"
    if with_length:
        return "Transfer-Encoding beside Content-Length"
    return None


class _NoTrailingBytesStream(AsyncResponseStream):
    """httpx's answer stream, which closes its connection if bytes past the answer came with it.

    httpcore pools a connection once its answer is read, and h11 keeps whatever came past
    that answer for the connection's next one: a signer sending more than its Content-Length
    in one write had the next call, someone else's, read the surplus as its answer. (Bytes
    arriving once the connection is idle httpcore finds itself: the socket is readable.)
    """

    async def aclose(self) -> None:
        await super().aclose()
        # httpcore's pool stream -> the HTTP/1.1 connection's stream -> that connection.
        connection: Any = getattr(
            getattr(self._httpcore_stream, "_stream", None), "_connection", None
        )
        h11_state = getattr(connection, "_h11_state", None)
        if h11_state is not None and connection.is_idle() and h11_state.trailing_data[0]:
            # A request the pool gave it meanwhile finds it closed and takes another.
            await connection.aclose()


class HttpcoreSignerTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, handing on what the aiohttp one does (see the module)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` as httpx does; an unasked 101 is handed on, bad framing refused."""
        try:
            response = await super().handle_async_request(request)
        except httpx.RemoteProtocolError as exc:
            if _UNASKED_SWITCH not in str(exc):
                raise
            # The signer did answer, with a status no request here asks for; h11 has closed
            # the connection already. Handed on as aiohttp hands it on: an unexpected status.
            return httpx.Response(101, request=request)
        headers = response.headers
        if "Transfer-Encoding" in headers:  # h11 let only `chunked` through
            problem = framing_problem(
                headers.get_list("Transfer-Encoding"), with_length="Content-Length" in headers
            )
            if problem is not None:
                await response.aclose()  # its body unread: the connection is closed, not pooled
                raise httpx.RemoteProtocolError(problem, request=request)
        stream = response.stream
        if isinstance(stream, AsyncResponseStream):
            response.stream = _NoTrailingBytesStream(stream._httpcore_stream)  # noqa: SLF001
        return response


#: Headers whose values do not change from call to call (lower-case, as httpx keeps them).
_SAME_ON_EVERY_CALL = frozenset(
    {b"host", b"user-agent", b"accept", b"accept-encoding", b"content-type"}
)
#: Decoded names and fixed values, and timeout objects, kept per transport: a handful in
#: practice; the bound only keeps an unexpected variety from growing either table.
_MAX_CACHED = 64

_TimeoutKey = tuple[float | None, float | None, float | None]


#: aiohttp's own bound on a connector's connections, which the library leaves when httpx's
#: limits set none.
_AIOHTTP_LIMIT = 100
#: The informational statuses (1xx), which come before an answer, bar the 101 that ends one.
_INFORMATIONAL, _FINAL, _SWITCHING = 100, 200, 101
#: The most bytes `_answer_before` reads again. A signer's answer is a head of a few KiB and a
#: body of at most 64 KiB (`signers.answers.MAX_RESPONSE_BYTES`, a longer one is malformed).
_REREAD_LIMIT = 128 * 1024
#: What an empty line, the end of a head, holds: CRLF CRLF, or a bare LF (which aiohttp's
#: parsers take for CRLF) in either place.
_HEAD_END_PARTS = (b"\n\r\n", b"\n\n")


class _PooledProtocol(ResponseHandler):
    """aiohttp's protocol, which notes whether anything arrived past the answer it owed.

    A whole answer arriving then is queued and shows in `should_close`; the start of one
    (a status line, part of a head) stays inside aiohttp's parser, where nothing shows it.
    So does one that came in the same read as the end of the answer owed: a read is fed
    to the parser in two, all but its last byte and then that byte, and an answer complete
    before the last byte had bytes after it. A read whose first part the parser refuses
    ends there, refused once, for what it refused, unless the answer owed was whole before
    the bytes refused: that answer stands, as httpcore reads it (`_answer_before`).
    """

    pooled = False
    #: Bytes arrived while `pooled`, or past the answer owed.
    heard = False
    #: The body of the answer owed, once its head is in (None before).
    _answer: StreamReader | None = None
    #: The reads fed to the parser since it was made, while the answer owed's head is not in.
    _unparsed: tuple[bytes, ...] = ()
    #: `set_response_params`' options but the call's timer, which made the parser (shared).
    _params: Mapping[str, Any] | None = None
    #: While a read's first part is fed: the parser's refusal of it, held (see `set_exception`).
    _holding = False
    _refusal: tuple[BaseException, BaseException] | None = None

    def set_response_params(self, **kwargs: Any) -> None:  # noqa: ANN401 - aiohttp's options
        """Set up the parser for the next answer, which is now the one owed."""
        self._answer = None
        self._unparsed = ()
        timer = kwargs.pop("timer", None)
        # Kept for `_answer_before`, one copy for every call that gives the same options: each
        # call's own (~270 B) was held as long as its connection, every call in flight.
        self._params = _shared_options(kwargs)
        super().set_response_params(timer=timer, **kwargs)

    def feed_data(self, data: tuple[RawResponseMessage, StreamReader], size: int = 0) -> None:
        """Queue a parsed answer as aiohttp does; a final one is the answer owed."""
        if _is_final(data[0].code):
            self._answer = data[1]
            self._unparsed = ()
        super().feed_data(data, size)

    def set_exception(
        self,
        exc: BaseException,
        exc_cause: BaseException = _EXC_SENTINEL,
    ) -> None:
        """Fail the calls waiting on this connection, as aiohttp does (or hold a refusal)."""
        if self._holding:
            self._refusal = (exc, exc_cause)
        else:
            super().set_exception(exc, exc_cause)

    def _answered(self) -> bool:
        return self._answer is not None and self._answer.is_eof()

    def data_received(self, data: bytes) -> None:
        """Take `data` as aiohttp does, noting bytes that no answer owed accounts for."""
        read = data
        if self.pooled or self._answered():
            if data:
                self.heard = True
        elif len(data) > 1:
            self._holding = True
            try:
                super().data_received(data[:-1])
            finally:
                self._holding = False
            if self._refusal is not None:
                # The parser refused the read and aiohttp closed the connection: fed the last
                # byte, the failed parser would refuse it too, in place of what it refused.
                self._refused(data[:-1], *self._refusal)
                return
            if self._answered():
                self.heard = True
            data = data[-1:]
        if self._answer is None:  # kept for `_answer_before` until the answer's head is in
            self._unparsed += (read,)
        super().data_received(data)

    def _refused(self, fed: bytes, exc: BaseException, cause: BaseException) -> None:
        """The parser refused `fed`: keep the answer owed if it was whole before, then fail."""
        self._refusal = None
        if self._answer is None:
            answer = self._answer_before(b"".join(self._unparsed), fed)
            if answer is not None:
                self.feed_data(answer)
        if self._answered():
            self.heard = True
        super().set_exception(exc, cause)

    def _answer_before(
        self, before: bytes, fed: bytes
    ) -> tuple[RawResponseMessage, StreamReader] | None:
        """The answer owed, whole, before the bytes its parser refused in `fed`, if it is.

        The refused parser kept no answer it read before the bytes it refused: what it was
        fed (the reads `before`, then `fed`) is read again by fresh ones, made as aiohttp makes
        them, to find the shortest part of it that either ends the answer owed or is refused.
        Its head had not ended before `fed` (it would have been parsed then), so it ends in
        `fed`, and so does the answer: nothing is read again unless `fed` ends a head, nor if
        there is more than a signer's answer to read (`_REREAD_LIMIT`); then as many reads as
        halve `fed` down to a byte (17 for a read of 64 KiB).
        """
        params = self._params
        if params is None:  # pragma: no cover - aiohttp sets the parser up before a call
            return None
        ends_a_head = before[-2:] + fed
        if len(before) + len(fed) > _REREAD_LIMIT or not any(
            part in ends_a_head for part in _HEAD_END_PARTS
        ):
            return None
        unparsed = before + fed

        def read(size: int) -> tuple[RawResponseMessage, StreamReader] | BaseException | None:
            # The parser aiohttp makes, here left in place of the refused one.
            ResponseHandler.set_response_params(self, **params)
            parser = cast("HttpParser[Any]", self._parser)  # made just now
            try:
                messages, _, _ = parser.feed_data(unparsed[:size])
            except Exception as exc:  # noqa: BLE001 - whatever the parser refuses with
                return exc
            finals = [message for message in messages if _is_final(message[0].code)]
            if not finals:
                return None
            message, body = finals[0]
            if self._skip_payload or message.code in EMPTY_BODY_STATUS_CODES:
                body = EMPTY_PAYLOAD
            return (message, body) if body.is_eof() else None

        low, high = len(before) + 1, len(unparsed)
        while low < high:
            middle = (low + high) // 2
            if read(middle) is None:
                low = middle + 1
            else:
                high = middle
        found = read(low)
        return found if isinstance(found, tuple) else None


#: `set_response_params`' options (the timer aside) as calls gave them, shared (`_shared_options`).
_OPTIONS_SEEN: dict[tuple[object, ...], Mapping[str, Any]] = {}
#: Distinct option sets kept at most; aiohttp gives a handful (a method with or without a body).
_OPTIONS_KEPT: Final = 32


def _shared_options(options: dict[str, Any]) -> Mapping[str, Any]:
    """The one kept mapping equal to `options` (hashable values): `options` if it is new."""
    key = (*options, *options.values())  # one tuple: names, then values
    seen = _OPTIONS_SEEN.get(key)
    if seen is None:
        if len(_OPTIONS_SEEN) >= _OPTIONS_KEPT:
            _OPTIONS_SEEN.clear()
        seen = _OPTIONS_SEEN[key] = options
    return seen


def _is_final(status: int) -> bool:
    """Whether an answer with `status` is the one a request is owed (no interim 1xx but 101)."""
    return not _INFORMATIONAL <= status < _FINAL or status == _SWITCHING


class _CleanReuseConnector(TCPConnector):
    """aiohttp's connector, reusing no connection with bytes past its answer, the last used first.

    aiohttp reads what arrives on an idle pooled connection as the start of its next answer,
    and hands it to the next call: a signer sending bytes past its answer had that call,
    someone else's, read them as its own answer (or fail on the rest of one). Such a
    connection is closed instead (aiohttp already closes one holding a whole answer).

    aiohttp hands a call the connection idle longest (first in, first out). Once a burst has
    opened hundreds of connections, every later call takes the one that has waited for all the
    others: none is ever idle long enough to expire, so the pool stays at the burst's size for
    as long as calls keep coming, and each call goes on the connection a signer is likeliest
    to be closing as idle (its call then fails without an answer; a domestic issue, which may
    not be sent twice, is answered 502). Here a released connection goes to the front, so a
    call takes the one used last (last in, first out), as httpx's own transport and urllib3's
    pool do: the calls keep to the connections they need, and the rest are closed once idle
    for the keep-alive expiry (`keepalive_timeout`, by aiohttp's clean-up).
    """

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - TCPConnector's options
        """Take `TCPConnector`'s options; connections get a `_PooledProtocol`."""
        super().__init__(**kwargs)
        # aiohttp types its factory as making its own class (a partial is invariant).
        self._factory = functools.partial(_PooledProtocol, loop=self._loop)  # type: ignore[assignment]

    def _release(
        self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False
    ) -> None:
        super()._release(key, protocol, should_close=should_close)
        if isinstance(protocol, _PooledProtocol) and protocol.is_connected():
            protocol.pooled = True  # kept for a next call (a closed one is not connected)
            # aiohttp appended it to the key's idle connections, and takes the next from the
            # left: to the front with it, the next call takes it (see the class).
            idle = self._conns.get(key)
            if idle and idle[-1][0] is protocol:
                idle.rotate(1)

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while (connection := await super()._get(key, traces)) is not None:
            protocol = connection.protocol  # a _PooledProtocol: this connector makes them
            if isinstance(protocol, _PooledProtocol) and not (
                protocol.heard or protocol.should_close
            ):
                protocol.pooled = False
                return connection
            connection.close()
        return None


class SignerTransport(AiohttpTransport):
    """`AiohttpTransport` that shares what is the same on every call (see the module)."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - AiohttpTransport's options
        """Take `AiohttpTransport`'s options."""
        super().__init__(**kwargs)
        self._texts: dict[bytes, str] = {}
        self._names: dict[bytes, istr] = {}
        self._timeouts: dict[_TimeoutKey, ClientTimeout] = {}

    def get_client(self) -> ClientSession:
        """The library's session (pool bound, keep-alive and TLS as it sets them), cleaner.

        Without a cookie jar, and over `_CleanReuseConnector`.
        """
        if self.client is not None or self.uds:  # a session given by the caller is theirs
            return super().get_client()
        limit = self.limits.max_connections
        connector = _CleanReuseConnector(
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            local_addr=(self.local_address, 0) if self.local_address else None,
            limit=_AIOHTTP_LIMIT if limit is None else limit,  # the library leaves None so
        )
        return ClientSession(connector=connector, cookie_jar=DummyCookieJar())

    def _text(self, raw: bytes, encoding: str) -> str:
        text = self._texts.get(raw)
        if text is None:
            text = raw.decode(encoding)
            if len(self._texts) < _MAX_CACHED:
                self._texts[raw] = text
        return text

    def _name(self, raw: bytes, encoding: str) -> istr:
        name = self._names.get(raw)
        if name is None:
            name = istr(raw.decode(encoding))
            if len(self._names) < _MAX_CACHED:
                self._names[raw] = name
        return name

    def _headers(self, headers: httpx.Headers) -> list[tuple[str, str]]:
        encoding = headers.encoding
        text = self._text
        name_of = self._name
        return [
            (
                name_of(name, encoding),
                text(value, encoding)
                if name.lower() in _SAME_ON_EVERY_CALL
                else value.decode(encoding),
            )
            for name, value in headers.raw
        ]

    def _timeout(self, timeout: Mapping[str, float | None]) -> ClientTimeout:
        # What the library passes: aiohttp's `connect` covers the wait for a pooled connection.
        key = (timeout.get("connect"), timeout.get("read"), timeout.get("pool"))
        client_timeout = self._timeouts.get(key)
        if client_timeout is None:
            client_timeout = ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
            if len(self._timeouts) < _MAX_CACHED:
                self._timeouts[key] = client_timeout
        return client_timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the aiohttp session; the answer's body streams."""
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            return await super().handle_async_request(request)
        if not isinstance(self.client, ClientSession):
            self.client = self.get_client()
        try:
            response = await self.client.request(
                request.method,
                str(request.url),
                headers=self._headers(request.headers),
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._timeout(request.extensions.get("timeout", {})),
            ).__aenter__()
        except Exception:
            with map_aiohttp_exceptions():
                raise
        transfer_encodings = response.headers.getall("Transfer-Encoding", None)
        if transfer_encodings is not None:  # aiohttp refused it beside a Content-Length
            problem = framing_problem(transfer_encodings, with_length=False)
            if problem is not None:
                # aiohttp releases a connection once its answer is in: a short body had
                # put it back in the pool already, where `close` no longer reaches it.
                protocol = response._protocol  # noqa: SLF001
                response.close()  # the connection with it, if still held
                if protocol is not None:
                    protocol.force_close()  # pooled: closed when next taken, not reused
                raise httpx.RemoteProtocolError(problem, request=request)
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            # aiohttp decodes the phrase as UTF-8 with surrogate escapes: a Latin-1 one (obs-text,
            # which RFC 9110 allows) goes back to its own bytes, where a strict encode raised.
            extensions["reason_phrase"] = response.reason.encode("utf-8", "surrogateescape")
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=AiohttpResponseStream(response),
            request=request,
            extensions=extensions,
        )
