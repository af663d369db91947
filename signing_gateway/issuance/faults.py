"""Turn signer and verification failures into the gateway's answers, and log them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from signing_gateway.errors import (
    CredentialRejected,
    GatewayError,
    SignerBadResponse,
    SignerTimedOut,
    SignerUnavailable,
)
from signing_gateway.issuance.deadline import current_request_deadline
from signing_gateway.observability.telemetry import record_credential_rejection
from signing_gateway.resilience.breaker import BreakerOpen
from signing_gateway.resilience.bulkhead import BulkheadFull
from signing_gateway.resilience.policy import NoTimeLeft, SignerPolicy
from signing_gateway.runtime.cpu_gate import io_wait
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerError,
    SignerRejectedError,
    SignerThrottledError,
    SignerTimeoutError,
)
from signing_gateway.verification.errors import CredentialVerificationError

T = TypeVar("T")

logger = logging.getLogger("signing_gateway.signers")
security_log = logging.getLogger("signing_gateway.security")


def problem_for_signer_error(exc: SignerError, *, part: str) -> GatewayError:
    """The caller-facing answer for a signer failure (no signer text, no URL)."""
    if isinstance(exc, SignerThrottledError):
        return SignerUnavailable(
            f"{part}: the signer is at capacity; try again later",
            part=part,
            retry_after=exc.retry_after or 1.0,
        )
    if isinstance(exc, SignerConnectError):
        return SignerUnavailable(f"{part}: the signer cannot be reached", part=part)
    if isinstance(exc, SignerTimeoutError):
        return SignerTimedOut(f"{part}: the signer did not answer in time", part=part)
    if isinstance(exc, SignerRejectedError):
        # A 4xx from the signer after our own validation passed is a contract mismatch.
        logger.error(
            "signer rejected a validated request",
            extra={"signer": exc.signer, "endpoint": exc.endpoint, "status": exc.status_code},
        )
        return SignerBadResponse(f"{part}: the signer refused the request", part=part)
    return SignerBadResponse(f"{part}: the signer failed", part=part)


def rejected_credential(
    exc: CredentialVerificationError, *, part: str, signer: str, signed: bool = True
) -> GatewayError:
    """Log a security event for an unverifiable credential and return the 502 to answer.

    `signed` False: found before the signer was asked to sign (the session it prepared names
    a key, or a nonce, the gateway cannot verify with), so nothing was signed at all.
    """
    record_credential_rejection(signer=signer, reason=exc.reason)
    security_log.warning(
        "signer returned a credential that failed verification; not released"
        if signed
        else "signer's session cannot be verified; nothing signed",
        extra={
            "security_event": "credential-verification-failed",
            "reason": exc.reason,
            "signer": signer,
        },
    )
    return CredentialRejected(
        f"{part}: the signed credential failed verification and was not released"
        if signed
        else f"{part}: the signer's session names a key or nonce the gateway cannot verify "
        "with; nothing was signed",
        part=part,
    )


async def call_signer(
    part: str,
    factory: Callable[[], Awaitable[T]],
    *,
    policy: SignerPolicy,
    endpoint: str,
    replay_safe: bool,
) -> T:
    """Call a signer under its policy, translating every failure into the part's gateway error.

    `factory` makes one fresh attempt each time it is called (so the policy can retry);
    `replay_safe` says whether the endpoint may be sent again after a request that may have
    reached the signer (a timeout or a lost connection), see docs/resilience.md.

    A call the request's deadline cut gets the deadline's 504 (`RequestDeadline.exceeded`):
    when the deadline left no time to send an attempt, and whenever a call fails after the
    deadline ran out. The attempt's timer is armed for the deadline's instant when that is
    the nearer; both fire in one loop turn, and a part running in a task of its own (/v1/print,
    /v1/credentials) may see its attempt time out before the deadline cancels it. The answer
    must not depend on that order: it is the deadline's, as asyncio decides for two timeouts
    nested in one task.
    """
    deadline = current_request_deadline()
    try:
        # The request's CPU permit goes to the next request while this one waits on the
        # signer (bulkhead queue, round trip, retry backoff): see runtime/cpu_gate.py.
        async with io_wait():
            return await policy.call(
                endpoint,
                factory,
                replay_safe=replay_safe,
                deadline=None if deadline is None else deadline.at,
            )
    except NoTimeLeft as exc:
        assert deadline is not None  # noqa: S101 - raised only for a call under a deadline
        raise deadline.exceeded() from exc
    except (BreakerOpen, BulkheadFull, SignerError) as exc:
        if deadline is not None and deadline.expired():
            raise deadline.exceeded() from exc
        raise _problem_for(exc, part=part) from exc


def _problem_for(exc: BreakerOpen | BulkheadFull | SignerError, *, part: str) -> GatewayError:
    """The part's answer for a call that failed before the request's deadline ran out."""
    if isinstance(exc, BreakerOpen):
        return SignerUnavailable(
            f"{part}: the signer is failing; calls are paused",
            part=part,
            retry_after=max(1.0, exc.retry_after),
        )
    if isinstance(exc, BulkheadFull):
        return SignerUnavailable(
            f"{part}: the signer is at capacity; try again later",
            part=part,
            retry_after=exc.retry_after,
        )
    logger.warning(
        "signer call failed",
        extra={
            "signer": exc.signer,
            "endpoint": exc.endpoint,
            "error": type(exc).__name__,
            "reason": exc.message,
        },
    )
    return problem_for_signer_error(exc, part=part)
