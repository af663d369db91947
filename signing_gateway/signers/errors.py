"""Errors raised by the signer clients.

Every error names the signer (its configured name, e.g. ``"eu"``) and the endpoint (e.g.
``"get_credential"``), never a URL: these strings end up in logs and problem bodies.

The hierarchy splits on what the caller may do next::

    SignerError
    ├── SignerTransportError            no usable HTTP answer arrived
    │   ├── SignerConnectError          never reached the signer: safe to retry anywhere
    │   ├── SignerTimeoutError          a connect, pool, write or read deadline expired
    │   │                               (`before_sending` for connect and pool: see `sent_nothing`)
    │   └── SignerConnectionLostError   the connection broke after the request was sent,
    │                                   or its answer is framed in a way not read
    └── SignerResponseError             the signer answered, and the answer is unusable
        ├── SignerRejectedError         4xx other than 429: the request itself is wrong
        ├── SignerThrottledError        429 or 503: come back later (maybe after retry_after)
        ├── SignerServerError           other 5xx: the signer failed
        └── SignerMalformedResponseError  2xx whose body does not match the contract,
                                          or a status no call expects (1xx, 3xx)
"""

from __future__ import annotations

__all__ = [
    "SignerConnectError",
    "SignerConnectionLostError",
    "SignerError",
    "SignerMalformedResponseError",
    "SignerRejectedError",
    "SignerResponseError",
    "SignerServerError",
    "SignerThrottledError",
    "SignerTimeoutError",
    "SignerTransportError",
    "sent_nothing",
]


class SignerError(Exception):
    """Base class: a call to a signer did not produce a usable result.

    Never raised directly; catch it to handle every signer failure at once.
    """

    def __init__(self, message: str, *, signer: str, endpoint: str) -> None:
        """Keep the signer and endpoint names next to a human-readable message."""
        super().__init__(message)
        self.message = message
        self.signer = signer
        self.endpoint = endpoint

    def __str__(self) -> str:
        """Render as ``signer endpoint: message`` (no URL, no body)."""
        return f"{self.signer} {self.endpoint}: {self.message}"


class SignerTransportError(SignerError):
    """Raised when no complete HTTP response arrived from the signer."""


class SignerConnectError(SignerTransportError):
    """Raised when the connection could not be opened (refused, DNS, TLS handshake).

    The request never reached the signer, so nothing was signed.
    """


class SignerTimeoutError(SignerTransportError):
    """Raised when any deadline expired: connect, waiting for a pooled connection, write or read.

    A read timeout means the signer may still have signed the request. A connect or pool
    timeout (`before_sending`) means it cannot have: the request never went out.
    """

    def __init__(
        self, message: str, *, signer: str, endpoint: str, before_sending: bool = False
    ) -> None:
        """Also keep whether it ran out before the request was sent (None may have been)."""
        super().__init__(message, signer=signer, endpoint=endpoint)
        self.before_sending = before_sending


class SignerConnectionLostError(SignerTransportError):
    """Raised when the connection broke after the request went out (reset, truncated body).

    Or when the answer could not be read as HTTP: not a status line, or framed in a way this
    client does not read (see `signers.transport`). The signer may have signed the request;
    the result is lost.
    """


class SignerResponseError(SignerError):
    """Raised when the signer answered with a status or body the client cannot use."""

    def __init__(self, message: str, *, signer: str, endpoint: str, status_code: int) -> None:
        """Also keep the HTTP status code of the answer."""
        super().__init__(message, signer=signer, endpoint=endpoint)
        self.status_code = status_code


class SignerRejectedError(SignerResponseError):
    """Raised on a 4xx other than 429: the signer refused this request as it stands."""


class SignerThrottledError(SignerResponseError):
    """Raised on 429 or 503: the signer is overloaded or unavailable for now.

    ``retry_after`` holds the delay in seconds from the ``Retry-After`` header, or ``None``
    when the header was absent or unreadable.
    """

    def __init__(
        self,
        message: str,
        *,
        signer: str,
        endpoint: str,
        status_code: int,
        retry_after: float | None,
    ) -> None:
        """Also keep the delay the signer asked for."""
        super().__init__(message, signer=signer, endpoint=endpoint, status_code=status_code)
        self.retry_after = retry_after


class SignerServerError(SignerResponseError):
    """Raised on a 5xx other than 503: the signer failed while handling the request."""


class SignerMalformedResponseError(SignerResponseError):
    """Raised on a 2xx whose body is too large, not JSON, or not the shape the contract names.

    And on a status outside 2xx, 4xx and 5xx: a redirect, or a 101 that no request asks for.
    """


def sent_nothing(exc: BaseException) -> bool:
    """Whether `exc` ended a signer call before any of its request went out.

    A refused connection, or a timeout while connecting or waiting for a pooled connection:
    the signer cannot have acted, so the call may be sent again, whatever the endpoint.
    """
    if isinstance(exc, SignerConnectError):
        return True
    return isinstance(exc, SignerTimeoutError) and exc.before_sending
