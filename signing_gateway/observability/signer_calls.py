"""Metrics (and spans) for signer calls, recorded at the one place every call passes through.

`signers.http.request_json` wraps each call in `observe_signer_call(...)`. That covers both
transports alike ("httpx" and "aiohttp" sit under the same httpx client) and every endpoint.
Recorded per call: in flight per signer while it runs, then one count by signer, endpoint and
outcome and one duration sample. Outcomes are bounded slugs:

    ok, connect_error, timeout, connection_lost, throttled, rejected, server_error,
    malformed, deadline, cancelled, error

A cancelled call is told apart by the signer policy's attempt in flight (`attempt_var`): cut
by its own timer, or by the caller's deadline at a time the breaker counts it, it is a
"timeout"; cut by the caller's deadline while the signer was answering others, "deadline";
cancelled otherwise (a failing sibling, shutdown), "cancelled". So the label always says what
the breaker made of the call (see docs/resilience.md).

"ok" means a 2xx JSON answer; a body that then fails its wire model is counted "ok" here and
surfaces in the gateway's 502s. Readiness probes are not signer calls and are not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from signing_gateway.observability.telemetry import Telemetry, telemetry_var
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerConnectionLostError,
    SignerError,
    SignerMalformedResponseError,
    SignerRejectedError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span


#: What one signer call came to: the `outcome` label (see the module docstring).
SignerCallOutcome = Literal[
    "ok", "connect_error", "timeout", "connection_lost", "throttled", "rejected",
    "server_error", "malformed", "deadline", "cancelled", "error",
]  # fmt: skip
SIGNER_CALL_OUTCOMES: tuple[SignerCallOutcome, ...] = get_args(SignerCallOutcome)


class CutAttempt(Protocol):
    """The signer policy's attempt in flight, which knows what cancelling it means."""

    #: The call's attempts sent before this one (0 for the first).
    resend_count: int

    def cut_outcome(self) -> SignerCallOutcome:
        """The outcome slug of the attempt, now that it was cancelled."""
        ...


#: The attempt the current task is making, set by the signer policy around its factory call.
attempt_var: ContextVar[CutAttempt | None] = ContextVar("signer_attempt", default=None)

# Most specific first: SignerThrottledError is also a SignerResponseError.
_OUTCOMES: tuple[tuple[type[SignerError], SignerCallOutcome], ...] = (
    (SignerConnectError, "connect_error"),
    (SignerTimeoutError, "timeout"),
    (SignerConnectionLostError, "connection_lost"),
    (SignerThrottledError, "throttled"),
    (SignerRejectedError, "rejected"),
    (SignerServerError, "server_error"),
    (SignerMalformedResponseError, "malformed"),
)


def outcome_of(exc: BaseException | None) -> SignerCallOutcome:
    """The outcome slug for a call that ended with `exc` (None: success)."""
    if exc is None:
        return "ok"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    for error_class, slug in _OUTCOMES:
        if isinstance(exc, error_class):
            return slug
    return "error"


class observe_signer_call:  # noqa: N801 - used like a function: `with observe_signer_call(...)`
    """Context manager timing one signer call; adds `traceparent` to `headers` when tracing."""

    __slots__ = ("_endpoint", "_headers", "_signer", "_span", "_start", "_telemetry")

    def __init__(self, *, signer: str, endpoint: str, headers: MutableMapping[str, str]) -> None:
        """Describe the call; `headers` are the outgoing request headers (may gain traceparent)."""
        self._signer = signer
        self._endpoint = endpoint
        self._headers: MutableMapping[str, str] | None = headers
        self._telemetry: Telemetry | None = None
        self._span: Span | None = None
        self._start = 0.0

    def __enter__(self) -> None:
        """Count the call in flight and open its span."""
        # The headers are needed only here: not kept for the rest of the call.
        headers, self._headers = self._headers, None
        telemetry = self._telemetry = telemetry_var.get()
        if telemetry is None:
            return
        if telemetry.tracer is not None and headers is not None:
            attempt = attempt_var.get()
            self._span = telemetry.tracer.start_signer_call(
                self._signer,
                self._endpoint,
                headers,
                resend_count=0 if attempt is None else attempt.resend_count,
            )
        # After the span: `__exit__` does not run when `__enter__` raises, and a tracer that
        # raised after this would leave the call in flight for ever.
        telemetry.metrics.signer_in_flight_for(self._signer).inc()
        self._start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the outcome and duration; never swallows the exception."""
        telemetry = self._telemetry
        if telemetry is None:
            return
        elapsed = time.perf_counter() - self._start
        outcome = outcome_of(exc)
        if outcome == "cancelled":
            attempt = attempt_var.get()
            if attempt is not None:
                outcome = attempt.cut_outcome()
        metrics = telemetry.metrics
        metrics.signer_in_flight_for(self._signer).dec()
        metrics.signer_calls_for(self._signer, self._endpoint, outcome).inc()
        metrics.signer_call_duration_for(self._signer, self._endpoint, outcome).observe(elapsed)
        if self._span is not None and telemetry.tracer is not None:
            telemetry.tracer.end_signer_call(self._span, outcome)
