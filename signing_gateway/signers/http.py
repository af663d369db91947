"""HTTP plumbing shared by the signer clients: building the client and translating failures.

``build_signer_client`` makes one ``httpx.AsyncClient`` per signer with every timeout and the
pool size stated explicitly. ``request_json`` sends one request and turns every way it can go
wrong (transport exceptions, error statuses, oversized or non-JSON bodies) into the
``SignerError`` tree (named in ``signers.failures``), for both transports:

- ``"httpx"``: httpx's own transport (httpcore), as ``signers.transport.HttpcoreSignerTransport``.
- ``"aiohttp"``: ``httpx_aiohttp.AiohttpTransport`` (as ``signers.transport.SignerTransport``,
  which holds less per call in flight). Its exception mapping is coarse (a refused
  connection and a dropped one both surface as ``httpx.ConnectTimeout``), so
  ``signers.failures.transport_error`` looks at the original aiohttp exception kept in
  ``__cause__``.
  aiohttp has no write timeout; request bodies here are a few KiB and fit in the socket
  buffer, and the caller's per-request deadline bounds the rest.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiohttp
import httpx
import orjson
from pydantic import ValidationError

from signing_gateway.observability.signer_calls import observe_signer_call
from signing_gateway.security.tls_contexts import client_tls_context
from signing_gateway.signers.answers import (
    MAX_RESPONSE_BYTES,
    raise_for_answer,
    read_bounded,
    release_response,
)
from signing_gateway.signers.errors import (
    SignerMalformedResponseError,
)
from signing_gateway.signers.failures import transport_error
from signing_gateway.signers.transport import (
    HttpcoreSignerTransport,
    SignerTransport,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "ClientCert",
    "SignerHttpClient",
    "build_signer_client",
    "exact_json",
    "malformed",
    "probe_signer",
    "request_json",
]

T = TypeVar("T")

#: A client certificate: a PEM file holding both, or (certfile, keyfile[, password]).
ClientCert = str | tuple[str, str] | tuple[str, str, str]

_DEFAULT_HEADERS = {
    "User-Agent": "signing-gateway",
    "Accept": "application/json",
    # Answers are small: no compression asked for. A signer may still send it (see
    # `read_bounded`, which inflates it within the body's limit).
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
                    await raise_for_answer(response, signer=signer, endpoint=endpoint)
                raw = await read_bounded(
                    response, MAX_RESPONSE_BYTES, signer=signer, endpoint=endpoint
                )
            finally:
                await response.aclose()
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, signer=signer, endpoint=endpoint) from exc
        finally:
            if response is not None:
                release_response(response)
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
                await raise_for_answer(response, signer=signer, endpoint="probe")
    except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(exc, signer=signer, endpoint="probe") from exc
    finally:
        if response is not None:
            release_response(response)
