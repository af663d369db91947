"""The request id of the inbound request being served, visible to logs and signer calls.

Also the caching rule every answer carries, beside its request id.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import Protocol

REQUEST_ID_HEADER = "X-Request-ID"
#: The header's name as it appears in an ASGI scope's raw headers.
REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
#: A caller's request id kept as it is (else one is minted): short, and safe in a log line.
SAFE_REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
_SAFE_REQUEST_ID = re.compile(SAFE_REQUEST_ID_PATTERN)

#: Every answer's caching rule, unless the app set one: an answer holds personal data (a
#: credential, a problem naming a request) or the state of this instance (`/readyz`,
#: `/metrics`), so no browser or intermediary may keep a copy (RFC 9111 §5.2.2.5).
CACHE_CONTROL = "cache-control"
NO_STORE_VALUE = "no-store"
NO_STORE = (CACHE_CONTROL.encode("latin-1"), NO_STORE_VALUE.encode("latin-1"))

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

#: With tracing on, the `trace_id` (32 hex digits) and `span_id` (16) of the request span of
#: the request being served, for its log lines; None otherwise. Set and reset by the tracer
#: (`tracing.GatewayTracer`) alone: with tracing off, nothing sets it and a log line only reads
#: it.
trace_ids_var: ContextVar[tuple[str, str] | None] = ContextVar("trace_ids", default=None)

#: The scope key under which the gateway's HTTP protocol (`runtime.http_protocol`) gives each
#: request its connection's `Connection`. uvicorn drops an answer written after the caller
#: has gone, without a word to the app: this is how the request metrics learn that nobody
#: received it, and how a request the protocol cancelled for it (its caller gone) is told
#: from one cancelled otherwise. A request served otherwise (another server, a test's
#: transport) has none.
CONNECTION_KEY = "signing_gateway.connection"


class Connection:
    """Whether a caller's connection is lost; one per connection, shared by its requests."""

    __slots__ = ("lost",)

    def __init__(self) -> None:
        """A connection open now."""
        self.lost = False


def is_lost(connection: object) -> bool:
    """Whether `connection` (a scope's `CONNECTION_KEY`, or None) is known to be lost.

    False when unknown: a request served otherwise than by the gateway's HTTP protocol.
    """
    return isinstance(connection, Connection) and connection.lost


def caller_gone(scope: Mapping[str, object]) -> bool:
    """Whether the connection of the request of `scope` is known to be lost (`is_lost`)."""
    return is_lost(scope.get(CONNECTION_KEY))


#: The scope key under which the app may leave an `AnswerWatcher`: what wants to learn whether
#: the request's answer got to its connection (an issuance's audit record). The outermost
#: middleware, which alone sees the whole answer go out, tells it once the request ended.
ANSWER_WATCHER_KEY = "signing_gateway.answer_watcher"


class AnswerWatcher(Protocol):
    """Told how a request's answer ended (`ANSWER_WATCHER_KEY`)."""

    def answered(self, status: int | None) -> None:
        """The request ended: `status` of the app's answer handed whole to the connection.

        None: no answer of the app's was (the caller gone before or during the send, the
        request cancelled with its answer under way, the app raising). Called on the event
        loop from the request's end; it must neither wait nor raise.
        """


def accept_or_generate(candidate: str | None) -> str:
    """Keep a caller's request id when it is short and safe to log, else mint a new one."""
    if candidate is not None and _SAFE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request id for an ASGI request's raw headers: the caller's if safe, else a new one.

    `X-Request-ID` given twice is no id of the caller's either: two fields of a name stand for
    one value listing both (RFC 9110 5.3, `a, b`), which the format refuses. Taking one of them
    would tie the answer, the logs and the signer calls to an id that a proxy in front, taking
    the other, never logged.
    """
    given: bytes | None = None
    for key, value in headers:
        if key == REQUEST_ID_KEY:
            if given is not None:
                return accept_or_generate(None)
            given = value
    return accept_or_generate(None if given is None else given.decode("latin-1"))


def current_request_id() -> str:
    """The id of the request this task serves ("-" outside a request)."""
    return request_id_var.get()
