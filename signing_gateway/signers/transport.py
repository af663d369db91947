"""The aiohttp transport under each signer's httpx client, holding less per call in flight.

`httpx_aiohttp.AiohttpTransport` does the work: its aiohttp session and connection pool, its
response stream and its map from aiohttp's exceptions to httpx's. `SignerTransport` changes
only how a request is handed to aiohttp, because what is handed over stays alive until the
signer answers, for every call in flight:

- Header names, and the values that are the same on every call (`Host`, `User-Agent`,
  `Accept`, `Accept-Encoding`, `Content-Type`), go to aiohttp as strings decoded once per
  transport; the library hands over httpx's `Headers`, whose items are freshly decoded strings
  on every call, and aiohttp keeps them in its own header dict.
- One `aiohttp.ClientTimeout` per distinct set of timeouts, not one per call.
- aiohttp's exceptions are mapped to httpx's when one is raised, not under a generator-based
  context manager alive for the whole call.

And its session keeps no cookies (`aiohttp.DummyCookieJar`), as the httpx client above it
keeps none (`signers.http.SignerHttpClient`): a cookie one signer answer set would otherwise
be sent on every later call, whoever it is made for.

A request with a streamed body (none of the gateway's) takes the library's own path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SignerTransport"]

#: Headers whose values do not change from call to call (lower-case, as httpx keeps them).
_SAME_ON_EVERY_CALL = frozenset(
    {b"host", b"user-agent", b"accept", b"accept-encoding", b"content-type"}
)
#: Decoded names and fixed values, and timeout objects, kept per transport: a handful in
#: practice; the bound only keeps an unexpected variety from growing either table.
_MAX_CACHED = 64

_TimeoutKey = tuple[float | None, float | None, float | None]


class SignerTransport(AiohttpTransport):
    """`AiohttpTransport` that shares what is the same on every call (see the module)."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - AiohttpTransport's options
        """Take `AiohttpTransport`'s options."""
        super().__init__(**kwargs)
        self._texts: dict[bytes, str] = {}
        self._timeouts: dict[_TimeoutKey, ClientTimeout] = {}

    def get_client(self) -> ClientSession:
        """The library's session (its connector, pool bound and TLS), without a cookie jar."""
        if self.client is not None:  # a session or factory given by the caller is theirs
            return super().get_client()
        default = super().get_client()
        connector = default.connector
        default.detach()  # closes that session without closing the connector
        return ClientSession(connector=connector, cookie_jar=DummyCookieJar())

    def _text(self, raw: bytes, encoding: str) -> str:
        text = self._texts.get(raw)
        if text is None:
            text = raw.decode(encoding)
            if len(self._texts) < _MAX_CACHED:
                self._texts[raw] = text
        return text

    def _headers(self, headers: httpx.Headers) -> list[tuple[str, str]]:
        encoding = headers.encoding
        text = self._text
        return [
            (
                text(name, encoding),
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
