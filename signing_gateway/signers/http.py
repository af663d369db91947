"""HTTP plumbing shared by the signer clients: building the client and translating failures.

``build_signer_client`` makes one ``httpx.AsyncClient`` per signer with every timeout and the
pool size stated explicitly. ``request_json`` sends one request and turns every way it can go
wrong (transport exceptions, error statuses, oversized or non-JSON bodies) into the
``SignerError`` tree, for both transports:

- ``"httpx"``: httpx's own transport (httpcore), as ``signers.transport.HttpcoreSignerTransport``.
- ``"aiohttp"``: ``httpx_aiohttp.AiohttpTransport`` (as ``signers.transport.SignerTransport``,
  which holds less per call in flight). Its exception mapping is coarse (a refused
  connection and a dropped one both surface as ``httpx.ConnectTimeout``), so
  ``transport_error`` looks at the original aiohttp exception kept in ``__cause__``.
  aiohttp has no write timeout; request bodies here are a few KiB and fit in the socket
  buffer, and the caller's per-request deadline bounds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import ssl
import zlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp
import httpx
import orjson
from pydantic import ValidationError

from signing_gateway.observability.signer_calls import observe_signer_call
from signing_gateway.security.tls_contexts import client_tls_context
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerConnectionLostError,
    SignerMalformedResponseError,
    SignerRejectedError,
    SignerResponseError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
    SignerTransportError,
)
from signing_gateway.signers.transport import (
    HttpcoreSignerTransport,
    SignerTransport,
    coding_list,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_RETRY_AFTER_SECONDS",
    "ClientCert",
    "SignerHttpClient",
    "build_signer_client",
    "exact_json",
    "malformed",
    "parse_retry_after",
    "probe_signer",
    "request_json",
    "response_error",
    "transport_error",
]

T = TypeVar("T")

#: Largest signer response body accepted. A real answer is a few KiB; anything bigger is
#: treated as malformed rather than buffered.
MAX_RESPONSE_BYTES = 64 * 1024

#: Longest ``Retry-After`` taken from a signer; a longer delay (or a date further off) is read
#: as this. A pause of an hour is an outage for operators, not advice a caller can use, and
#: an absurd header must not reach arithmetic that overflows (309 digits make a float ``inf``).
MAX_RETRY_AFTER_SECONDS = 3600.0

#: A client certificate: a PEM file holding both, or (certfile, keyfile[, password]).
ClientCert = str | tuple[str, str] | tuple[str, str, str]

_DEFAULT_HEADERS = {
    "User-Agent": "signing-gateway",
    "Accept": "application/json",
    # Answers are small: no compression asked for. A signer may still send it (see
    # `_read_bounded`, which inflates it within the body's limit).
    "Accept-Encoding": "identity",
}


class _NoCookies(httpx.Cookies):
    """A signer client's cookie jar: it never takes what an answer's ``Set-Cookie`` says.

    httpx files every answer's cookies into the client's jar (building urllib request and
    response stand-ins per call, ~20 µs, 2 % of a ``/v1/dcc``), and sends them on every later
    call. A signer is called on behalf of many callers over one client: a cookie one answer
    set would ride along on everyone's next request. The signer contracts use none.
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        """Ignore the answer's cookies."""


#: Distinct paths whose absolute URL a client keeps (a signer has a handful of endpoints).
_MAX_CACHED_URLS = 64


class SignerHttpClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` of one signer: no cookie jar, endpoint URLs resolved once.

    Everything else is httpx's. A path given as a string is joined to ``base_url`` once and
    the absolute URL reused: httpx parses and merges the path again on every call otherwise
    (~20 µs of ``build_request``'s ~35 µs per signer call, measured).
    """

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - httpx.AsyncClient's options
        """Take `httpx.AsyncClient`'s options; ``cookies`` are refused (see `_NoCookies`)."""
        if kwargs.get("cookies"):
            raise ValueError("signer clients keep no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()
        self._urls: dict[str, httpx.URL] = {}
        self._urls_base = self.base_url

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty: answers' cookies are dropped and none are sent."""
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        if cookies:
            raise ValueError("signer clients keep no cookies")

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        **kwargs: Any,  # noqa: ANN401 - httpx.AsyncClient.build_request's options
    ) -> httpx.Request:
        """Build as httpx does, taking a string path's absolute URL from a cache."""
        if isinstance(url, str):
            if self._urls_base is not self.base_url:  # the base was changed: start over
                self._urls.clear()
                self._urls_base = self.base_url
            absolute = self._urls.get(url)
            if absolute is None:
                absolute = super().build_request("GET", url).url
                if len(self._urls) < _MAX_CACHED_URLS:
                    self._urls[url] = absolute
            url = absolute
        return super().build_request(method, url, **kwargs)


def _ssl_context(*, verify: ssl.SSLContext | bool | str, cert: ClientCert | None) -> ssl.SSLContext:
    """Turn the verify/cert options into one context (httpx 0.28 deprecates str and cert)."""
    if isinstance(verify, ssl.SSLContext):
        if cert is not None:
            raise ValueError("load the client certificate into the SSLContext passed as verify")
        return verify
    cert_file: str | None = None
    key_file = password = None
    if isinstance(cert, str):  # the certificate's file holds its key too
        cert_file = cert
    elif cert is not None:
        cert_file, key_file, *rest = cert
        password = rest[0] if rest else None
    return client_tls_context(
        ca_bundle=verify if isinstance(verify, str) else None,
        client_cert=cert_file,
        client_key=key_file,
        key_password=password,
        verify_server=verify is not False,
    )


def build_signer_client(
    base_url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    write_timeout: float,
    pool_timeout: float,
    max_connections: int,
    keepalive_expiry: float = 5.0,
    transport: Literal["httpx", "aiohttp"] = "httpx",
    verify: ssl.SSLContext | bool | str = True,
    cert: ClientCert | None = None,
) -> SignerHttpClient:
    """Build the one HTTP client for one signer; open it at startup, close it on shutdown.

    Args:
        base_url: The signer's base URL; paths are joined to it.
        connect_timeout: Seconds to open a TCP (and TLS) connection.
        read_timeout: Seconds to wait for each chunk of the answer.
        write_timeout: Seconds to wait for each chunk of the request to go out (httpx only).
        pool_timeout: Seconds to wait for a free connection when ``max_connections`` are busy.
        max_connections: Connections open to this signer at most (all kept alive when idle).
        keepalive_expiry: Seconds an idle connection is kept.
        transport: ``"httpx"`` (httpcore) or ``"aiohttp"`` (httpx_aiohttp).
        verify: ``True`` for the system CAs, ``False`` to skip checks, a CA bundle path, or a
            ready ``ssl.SSLContext``.
        cert: Client certificate for mutual TLS (not combined with an ``SSLContext``): a PEM
            file holding it and its key, or (certfile, keyfile[, password]). An encrypted key
            without its password is refused, never asked for.

    This reads CA files when TLS options are given: call it from startup code, not from a
    running request (the gateway builds the context in a thread and passes it as ``verify``).

    Raises:
        EncryptedKeyError: (a ValueError) the key is encrypted and no password was given.
        OSError: a TLS file that cannot be read or does not load (``ssl.SSLError``).
    """
    # aiohttp's `connect` timeout covers waiting for a pooled connection *and* opening a new
    # one, and httpx_aiohttp fills it with the pool timeout alone: giving it the sum keeps a
    # short pool timeout from cutting a connect that httpx would still allow. (Set once here:
    # widening each request's copy held two more dicts per call.)
    pool = pool_timeout + connect_timeout if transport == "aiohttp" else pool_timeout
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=write_timeout, pool=pool
    )
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry,
    )
    context = _ssl_context(verify=verify, cert=cert)
    # trust_env=False: where the signers are and how to reach them comes from settings only,
    # not from proxy variables a host happens to export.
    if transport == "aiohttp":
        client = SignerHttpClient(
            base_url=base_url,
            timeout=timeout,
            headers=_DEFAULT_HEADERS,
            trust_env=False,
            transport=SignerTransport(verify=context, limits=limits, trust_env=False),
        )
    else:
        client = SignerHttpClient(
            base_url=base_url,
            timeout=timeout,
            headers=_DEFAULT_HEADERS,
            trust_env=False,
            transport=HttpcoreSignerTransport(verify=context, limits=limits, trust_env=False),
        )
    # httpx adds `Connection: keep-alive`, which HTTP/1.1 means without it; each call's
    # headers are held three times while the signer works (httpx's, their decoded copy and
    # aiohttp's), so a header that says nothing costs ~390 B per call in flight.
    del client.headers["Connection"]
    return client


def _aiohttp_cause(exc: BaseException) -> BaseException | None:
    """Return the aiohttp (or bare asyncio timeout) exception ``exc`` was raised from, if any."""
    return next(
        (seen for seen in _chain(exc) if isinstance(seen, aiohttp.ClientError | TimeoutError)), None
    )


def _chain(exc: BaseException, *, implicit: bool = False) -> Iterator[BaseException]:
    """`exc`, then the exception it was raised from, and so on (`implicit`: or during), each once.

    An exception set as its own cause, directly or further down (a mocking library can build
    one), ends the walk instead of looping forever.
    """
    visited: set[int] = set()
    seen: BaseException | None = exc
    while seen is not None and id(seen) not in visited:
        yield seen
        visited.add(id(seen))
        seen = seen.__cause__ or (seen.__context__ if implicit else None)


def _classify_aiohttp(cause: BaseException) -> type[SignerTransportError]:
    """Pick the transport error class for an aiohttp exception."""
    if isinstance(cause, TimeoutError):
        # ServerTimeoutError, ConnectionTimeoutError and SocketTimeoutError all derive from it.
        return SignerTimeoutError
    if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return SignerConnectError
    # ServerDisconnectedError, ClientOSError (reset), ClientPayloadError (truncated body), ...
    return SignerConnectionLostError


def _classify_httpx(exc: httpx.TransportError) -> type[SignerTransportError]:
    """Pick the transport error class for an httpx exception."""
    if isinstance(exc, httpx.TimeoutException):
        return SignerTimeoutError
    if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol | httpx.ProxyError):
        return SignerConnectError
    # RemoteProtocolError, ReadError, WriteError, CloseError: the request may have landed.
    return SignerConnectionLostError


def transport_error(
    exc: httpx.TransportError | aiohttp.ClientError | TimeoutError,
    *,
    signer: str,
    endpoint: str,
) -> SignerTransportError:
    """Translate a transport failure from either transport into a ``SignerTransportError``.

    The caller raises the result ``from exc``.
    """
    cause = _aiohttp_cause(exc)
    if cause is not None:
        error_class = _classify_aiohttp(cause)
        # aiohttp's `connect` timeout covers the wait for a pooled connection too.
        before_sending = isinstance(cause, aiohttp.ConnectionTimeoutError)
    elif isinstance(exc, httpx.TransportError):
        error_class = _classify_httpx(exc)
        before_sending = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
    else:  # pragma: no cover - _aiohttp_cause already matched every other accepted type
        error_class = SignerConnectionLostError
        before_sending = False
    message = _described(cause or exc)
    if error_class is SignerTimeoutError:
        return SignerTimeoutError(
            message, signer=signer, endpoint=endpoint, before_sending=before_sending
        )
    return error_class(message, signer=signer, endpoint=endpoint)


def _described(exc: BaseException) -> str:
    """`exc`'s class, and why the signer's certificate was refused if that was the failure.

    The TLS library's reason ("Missing Authority Key Identifier", "unable to get local issuer
    certificate", a host name mismatch) is what an operator needs to mend the signer's
    certificate or the CA bundle; the class alone ("ConnectError") does not tell it.
    """
    refusal = _certificate_refusal(exc)
    name = type(exc).__name__
    return name if refusal is None else f"{name}: certificate refused: {refusal}"


def _certificate_refusal(exc: BaseException) -> str | None:
    """Why the certificate check under `exc` failed: the TLS library's error, chained under it.

    aiohttp's ClientConnectorCertificateError comes first, an `ssl.CertificateError` itself
    but without the reason: the one it was raised during has it.
    """
    for seen in _chain(exc, implicit=True):
        reason = getattr(seen, "verify_message", None)
        if isinstance(seen, ssl.SSLCertVerificationError) and isinstance(reason, str):
            return reason
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header: delay-seconds or an HTTP date; ``None`` if unreadable.

    Delay-seconds are ASCII digits only (RFC 9110 ``1*DIGIT``: ``str.isdigit`` alone would
    take "²" or "٣"). A date in the past gives 0; anything beyond `MAX_RETRY_AFTER_SECONDS`
    gives that. Never raises.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)  # float: no int digit limit
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive result means "-0000".
        when = when.replace(tzinfo=UTC)
    delay = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, delay), MAX_RETRY_AFTER_SECONDS) if math.isfinite(delay) else None


def response_error(
    response: httpx.Response, *, signer: str, endpoint: str
) -> SignerResponseError | None:
    """Translate a non-2xx status into a ``SignerResponseError``; ``None`` for a 2xx."""
    status = response.status_code
    message = f"HTTP {status}"
    if 200 <= status < 300:  # noqa: PLR2004 - the 2xx class
        return None
    if status in {429, 503}:
        return SignerThrottledError(
            message,
            signer=signer,
            endpoint=endpoint,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if 400 <= status < 500:  # noqa: PLR2004 - the 4xx class
        return SignerRejectedError(message, signer=signer, endpoint=endpoint, status_code=status)
    if status >= 500:  # noqa: PLR2004 - the 5xx class
        return SignerServerError(message, signer=signer, endpoint=endpoint, status_code=status)
    # 1xx/3xx: the signers never redirect; following one could leak a request elsewhere.
    return SignerMalformedResponseError(
        f"unexpected {message}", signer=signer, endpoint=endpoint, status_code=status
    )


#: What a finished response's ``stream`` is replaced with (see ``_release``): empty, immutable.
_SPENT_STREAM = httpx.ByteStream(b"")


def _release(response: httpx.Response) -> None:
    """Break httpx's ``Response`` <-> ``BoundAsyncStream`` reference cycle once it is closed.

    ``AsyncClient`` wraps every response's stream in a ``BoundAsyncStream`` that points back at
    the response, so reference counting never frees a finished signer answer: the response,
    the transport's response, its headers and buffers (~50 objects per call) wait for the
    cyclic garbage collector, which then frees them on the event loop, thousands at a time
    under load. Replacing the closed stream lets them go the moment the call is done.
    """
    response.stream = _SPENT_STREAM


def _declared_length(response: httpx.Response) -> int | None:
    """The answer's ``Content-Length`` when it is one (ASCII digits: ``isdigit`` takes "²")."""
    declared = response.headers.get("Content-Length", "")
    return int(declared) if declared.isascii() and declared.isdigit() else None


#: zlib's window bits for each content coding a signer's answer may carry, as httpx reads
#: them: gzip, and deflate (zlib-wrapped; raw deflate too, tried when the wrapped read fails).
#: And x-gzip, which RFC 9110 (8.4.1.3) asks a recipient to take as gzip.
_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class _Inflater:
    """Undoes an answer's content coding a chunk at a time, never past a limit.

    httpx inflates each chunk whole, before a size check can see it: a signer answering 16 KB
    of gzip (within `MAX_RESPONSE_BYTES` on the wire) made the gateway allocate 48 MB, and 58
    KB held the event loop ~0.25 s. Here no call to zlib makes more than the room left under
    the limit. Only signers that compress although asked not to come here.
    """

    __slots__ = ("_coding", "_zlib")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib = zlib.decompressobj(_WBITS[coding])

    def inflate(self, chunk: bytes, room: int, *, first: bool) -> bytes:
        """At most `room` (> 0) bytes of what `chunk` inflates to; zlib.error if it cannot."""
        try:
            return self._zlib.decompress(chunk, room)
        except zlib.error:
            if not (first and self._coding == "deflate"):
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(chunk, room)

    def held_back(self) -> bool:
        """Whether input is left that did not fit in the room given."""
        return bool(self._zlib.unconsumed_tail)

    def whole(self) -> bool:
        """Whether the stream came to its end, and nothing after it (a second gzip member too).

        A gzip or zlib stream ends with a checksum of what it holds (and gzip with its length):
        a body cut before them inflates as far as it goes, without a word from zlib.
        """
        return self._zlib.eof and not self._zlib.unused_data


def _inflater(response: httpx.Response, *, signer: str, endpoint: str) -> _Inflater | None:
    """The inflater for the answer's ``Content-Encoding`` (None: none), or malformed."""
    header = response.headers.get("Content-Encoding")
    if header is None:  # the usual case: nothing to look at
        return None
    codings = [coding for coding in coding_list([header]) if coding != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in _WBITS:
        return _Inflater(codings[0])
    raise _undecodable(response, signer=signer, endpoint=endpoint)


def _undecodable(
    response: httpx.Response, *, signer: str, endpoint: str
) -> SignerMalformedResponseError:
    return SignerMalformedResponseError(
        "undecodable body", signer=signer, endpoint=endpoint, status_code=response.status_code
    )


async def _read_bounded(
    response: httpx.Response, limit: int, *, signer: str, endpoint: str
) -> bytes:
    """Read the body, refusing (as malformed) anything longer than ``limit`` bytes.

    Compressed or not: a compressed body is refused once its bytes on the wire, or what they
    inflate to, pass ``limit``, and is inflated no further than that (`_Inflater`). And as
    undecodable unless it holds one whole stream, no more: cut short of its end (its
    checksum), or with anything after it, a second gzip member too.
    """
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        raise _too_big(response, limit, signer=signer, endpoint=endpoint)
    if response.is_stream_consumed:  # built with its content, decoded already (a mock's)
        chunks, inflater = response.aiter_bytes(), None
    else:
        chunks = response.aiter_raw()
        inflater = _inflater(response, signer=signer, endpoint=endpoint)
    body = bytearray()
    received = 0
    async for chunk in chunks:
        first = not received
        received += len(chunk)
        if inflater is None:
            body += chunk
        elif received > limit:  # more on the wire than any answer inflates from
            raise _too_big(response, limit, signer=signer, endpoint=endpoint)
        else:
            try:
                body += inflater.inflate(chunk, limit + 1 - len(body), first=first)
            except zlib.error as exc:
                raise _undecodable(response, signer=signer, endpoint=endpoint) from exc
        if len(body) > limit or (inflater is not None and inflater.held_back()):
            raise _too_big(response, limit, signer=signer, endpoint=endpoint)
    if inflater is not None and not inflater.whole():
        raise _undecodable(response, signer=signer, endpoint=endpoint)
    return bytes(body)


def _too_big(
    response: httpx.Response, limit: int, *, signer: str, endpoint: str
) -> SignerMalformedResponseError:
    return SignerMalformedResponseError(
        f"body over {limit} bytes",
        signer=signer,
        endpoint=endpoint,
        status_code=response.status_code,
    )


#: Largest refusal body read to the end so its connection can be reused (see _raise_for_answer).
_DRAINED_ERROR_BYTES = 4096
#: Longest wait for the rest of such a body (seconds). Its status and headers are in: a body of
#: a few KiB follows at once or the signer has stalled, and the answer is known either way.
_DRAIN_ERROR_SECONDS = 0.1


async def _raise_for_answer(response: httpx.Response, *, signer: str, endpoint: str) -> None:
    """Raise `response_error`'s SignerError for the answer, if any, leaving no cycle behind.

    A small refusal body (declared at most `_DRAINED_ERROR_BYTES`) is read first: a response
    closed with its body unread closes its connection, so a throttling signer would see a new
    connection (and TLS handshake) for every call it refuses, just when it is overloaded.
    Measured on a kept-alive 503: httpcore reconnected for every refused call before. That
    read gets `_DRAIN_ERROR_SECONDS` of its own: bounded only by the attempt, a body that
    stalled after its status turned a 429 with `Retry-After` into an attempt timeout (a 504,
    and a failure for the breaker). Cut short, the read leaves the body unfinished, so the
    connection is closed rather than pooled, and the status raises as it would have.

    A raised exception's traceback holds the frames it passed through, and a frame holds its
    locals: raising an exception that a local of a frame on its way still names makes a
    reference cycle (exception -> traceback -> frame -> exception). Every failed signer call
    then left its response, request and headers (29 objects per call, measured) to the
    cyclic garbage collector instead of freeing them at once, and under a signer outage that
    is every call. Here the only such local is dropped on the way out.
    """
    failure = response_error(response, signer=signer, endpoint=endpoint)
    if failure is None:
        return
    declared = _declared_length(response)
    if (
        declared is not None
        and declared <= _DRAINED_ERROR_BYTES
        and not response.is_stream_consumed
    ):
        # If reading fails or stalls the refusal stands; its connection is closed, not reused.
        # Read as it came (compressed or not): only its end matters, not its content.
        with contextlib.suppress(httpx.HTTPError, aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout(_DRAIN_ERROR_SECONDS):
                async for _ in response.aiter_raw():
                    pass
    try:
        raise failure
    finally:
        del failure


def exact_json(value: object) -> bytes:
    """``value`` as JSON (orjson), in bytes of exactly its length.

    orjson's result keeps the 4 KiB buffer it was written into, and a request body is held
    for the whole signer call: an exact-size copy saves ~3.7 KB per in-flight call.
    """
    return bytes(memoryview(orjson.dumps(value)))


def malformed(
    exc: Exception, *, signer: str, endpoint: str, status_code: int = 200
) -> SignerMalformedResponseError:
    """A malformed-response error for a 2xx body that failed its wire model (or key material)."""
    kind = "wire model" if isinstance(exc, ValidationError) else "key material"
    return SignerMalformedResponseError(
        f"2xx body does not match the {kind}",
        signer=signer,
        endpoint=endpoint,
        status_code=status_code,
    )


def _parsed_json(data: Any) -> Any:  # noqa: ANN401 - the JSON as parsed
    return data


async def request_json(
    http: httpx.AsyncClient,
    method: Literal["GET", "POST"],
    path: str,
    *,
    signer: str,
    endpoint: str,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    decode: Callable[[Any], T] = _parsed_json,
) -> T:
    """Send one request and return the parsed JSON of a 2xx answer, or ``decode(json)``.

    The JSON body is ``content`` (encoded by ``exact_json``), if any, sent as
    ``application/json`` exactly; ``headers`` (e.g. ``X-Request-ID``) are added. Every
    signer call passes here, whatever the transport, so this is the one place that records
    signer-call metrics (see ``observability.signer_calls``). ``decode`` (a wire model's
    validation) runs here rather than in a coroutine of the client awaiting this one: each
    frame on this path is held for the whole signer wait. Its ``ValidationError`` is a
    malformed answer; the call itself is still counted "ok".

    Raises:
        SignerTransportError: no complete answer (connect, timeout, connection lost).
        SignerResponseError: a non-2xx status, or a 2xx body that is too large or not JSON
            or, with ``decode``, not of the wire model.
    """
    request_headers = dict(headers or {})
    if content is not None:
        request_headers["Content-Type"] = "application/json"
    with observe_signer_call(signer=signer, endpoint=endpoint, headers=request_headers):
        response: httpx.Response | None = None
        # What ``http.stream()`` does, without its generator-based context manager: it was
        # held for every call's whole round trip (a generator, its frame and a wrapper).
        request = http.build_request(method, path, content=content, headers=request_headers)
        # The request holds its own copies now; these would be held through the signer wait.
        del headers, request_headers
        try:
            response = await http.send(request, stream=True)
            try:
                status = response.status_code
                if not 200 <= status < 300:  # noqa: PLR2004 - only a refusal needs the await
                    await _raise_for_answer(response, signer=signer, endpoint=endpoint)
                raw = await _read_bounded(
                    response, MAX_RESPONSE_BYTES, signer=signer, endpoint=endpoint
                )
            finally:
                await response.aclose()
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, signer=signer, endpoint=endpoint) from exc
        finally:
            if response is not None:
                _release(response)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SignerMalformedResponseError(
                "body is not JSON", signer=signer, endpoint=endpoint, status_code=status
            ) from exc
    try:
        return decode(data)
    except ValidationError as exc:
        raise malformed(exc, signer=signer, endpoint=endpoint, status_code=status) from exc


async def probe_signer(http: httpx.AsyncClient, path: str, *, signer: str) -> None:
    """GET ``path`` cheaply; any answer below 500 means the signer is up.

    The real signers have no health endpoint and answer 404/405, which still proves the
    process is there and serving.

    Raises:
        SignerTransportError: the signer cannot be reached or does not answer in time.
        SignerResponseError: the signer answered 5xx (503 as ``SignerThrottledError``).
    """
    response: httpx.Response | None = None
    try:
        async with http.stream("GET", path) as response:
            if response.status_code >= 500:  # noqa: PLR2004 - the 5xx class
                await _raise_for_answer(response, signer=signer, endpoint="probe")
    except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(exc, signer=signer, endpoint="probe") from exc
    finally:
        if response is not None:
            _release(response)
