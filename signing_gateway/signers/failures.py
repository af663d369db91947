"""How a failed signer call is named: transport failures and error statuses as `SignerError`s.

`transport_error` reads an exception of either transport (httpx's own, or aiohttp's under
`httpx_aiohttp`, whose own mapping is coarse: a refused connection and a dropped one both
surface as ``httpx.ConnectTimeout``, so the aiohttp exception kept in ``__cause__`` decides)
and says whether the request can have reached the signer. `response_error` reads a non-2xx
status, with the signer's ``Retry-After`` for a throttling answer (`parse_retry_after`).
`signers.http.request_json` raises what they return.
"""

from __future__ import annotations

import email.utils
import math
import ssl
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
import httpx

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

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MAX_RETRY_AFTER_SECONDS", "parse_retry_after", "response_error", "transport_error"]

#: Longest ``Retry-After`` taken from a signer; a longer delay (or a date further off) is read
#: as this. A pause of an hour is an outage for operators, not advice a caller can use, and
#: an absurd header must not reach arithmetic that overflows (309 digits make a float ``inf``).
MAX_RETRY_AFTER_SECONDS = 3600.0


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
