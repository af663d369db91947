"""One use of a domestic issuance session: taken for an `/issue` call, put back if unsent.

`/v1/domestic/issue` and `/v1/credentials` take the session out of the stoken store before
the signer's `/issue` call, so two requests with one stoken can never both reach the signer.
If the request fails, what becomes of the session depends on whether the signer may have seen
the call, because the signer spends the session's nonce when it signs:

- certainly not: no attempt was started (breaker open, shed by the bulkhead, the deadline ran
  out first, a failing sibling part cancelled it first, or the request could not even be
  built, whatever the error), or every attempt ended before a byte was sent (connection
  refused, or a connect or pool timeout: `signers.errors.sent_nothing`) or throttled
  (429/503: the signer did not do the work, the same reason `issue` retries those). The
  session goes back to the store with its original expiry, and the retry the caller is
  advised works with the same stoken; unless the session expired while the request held it
  (a slow refusal, a long wait to retry): then nothing goes back, and the caller is told to
  start again. A 503 whose `Retry-After` ends when the session has expired tells the caller
  to start again after that wait, too: a retry as advised would only meet a 401.
- maybe: an attempt was under way when it timed out, lost its connection or was cancelled, or
  it ended in a 5xx, an unusable answer, a success (then verification or another part
  failed) or any other error once sending had begun. The nonce may be spent; the session
  stays used.

Either way, the problem's `detail` tells the caller which: retry with the same stoken, or
start again with prepare-issue. A shared store (Redis) that fails to take the session back
leaves it lost: the caller is told to start again.

Only the caller that opened a session can take it (`issuance/stoken.py`). Presented by
another, it is answered exactly as an unknown stoken is (the same 401 `stoken-invalid`, title
and detail: the answer never says that the session exists), reaches no signer, and stays
in the store for its owner. Only the audit record (`cause`), a security log line and
`gateway_stoken_refusals_total{cause}` tell the two refusals apart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

from signing_gateway.errors import (
    GatewayError,
    SessionStoreUnavailable,
    SignerUnavailable,
    StokenInvalid,
)
from signing_gateway.issuance.stoken import IssuanceSession, NotOwner, StokenStore
from signing_gateway.observability.telemetry import record_stoken_refusal
from signing_gateway.signers.errors import SignerError, SignerThrottledError, sent_nothing

T = TypeVar("T")

security_log = logging.getLogger("signing_gateway.security")

#: The one answer to a stoken that names no session this caller can take, whatever the cause.
STOKEN_REFUSED = "the issuance session is unknown, expired or already used"

SESSION_KEPT = "the issuance session was not used: retry with the same stoken before it expires"
SESSION_SPENT = "the issuance session is used up: start again with POST /v1/domestic/prepare-issue"
SESSION_EXPIRED = (
    "the issuance session was not used but has expired: start again with "
    "POST /v1/domestic/prepare-issue"
)
SESSION_LOST = (
    "the issuance session was not used but could not be kept: start again with "
    "POST /v1/domestic/prepare-issue"
)
SESSION_EXPIRES_FIRST = (
    "the issuance session was not used but expires before the Retry-After: after it, start "
    "again with POST /v1/domestic/prepare-issue"
)


class HeldSession:
    """``async with``: an issuance session out of its store for one request.

    Entering takes the session for its owner (401 `stoken-invalid` if it is unknown,
    expired, used or another caller's); leaving on a failure puts it back unless an attempt
    may have reached the signer or the session expired meanwhile.
    """

    __slots__ = ("_owner", "_reached", "_session", "_stoken", "_store")

    def __init__(self, store: StokenStore, stoken: str, *, owner: str) -> None:
        """Name the store, the token and the caller (subject) presenting it; nothing is taken."""
        self._store = store
        self._stoken = stoken
        self._owner = owner
        self._session: IssuanceSession | None = None
        self._reached = False

    async def __aenter__(self) -> Self:
        """Take the session (single use, its owner only)."""
        session = await self._store.take(self._stoken, owner=self._owner)
        if session is None:
            record_stoken_refusal(cause="stoken-unknown")
            raise StokenInvalid(STOKEN_REFUSED, cause="stoken-unknown")
        if isinstance(session, NotOwner):
            record_stoken_refusal(cause="stoken-not-owned")
            security_log.warning(
                "issuance session presented by another caller; refused as unknown",
                extra={
                    "security_event": "stoken-not-owned",
                    "subject": self._owner,
                    "owner": session.owner,
                },
            )
            raise StokenInvalid(STOKEN_REFUSED, cause="stoken-not-owned")
        self._session = session
        return self

    @property
    def prepare_issue_message(self) -> dict[str, Any]:
        """The signer's prepare_issue message the session was opened with."""
        assert self._session is not None  # noqa: S101 - entered
        return self._session.prepare_issue_message

    async def attempt(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run one signer attempt of `factory`, noting whether it may have reached the signer.

        Calling `factory` builds the request (the signer client encodes the body there), so an
        error it raises sent nothing; awaiting what it returns is what may send.
        """
        sending = factory()
        reached = True
        try:
            return await sending
        except SignerError as exc:
            # Ended before sending, or throttled: the nonce is unspent.
            reached = not (sent_nothing(exc) or isinstance(exc, SignerThrottledError))
            raise
        finally:
            self._reached = self._reached or reached

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        """On a failure: put the session back if the signer never saw it; say so either way."""
        if exc is None or self._session is None:
            return
        if self._reached:
            advice = SESSION_SPENT
        elif (left := await self._put_back(self._session)) is None:
            advice = SESSION_LOST
        elif not left:
            advice = SESSION_EXPIRED
        elif _advised_wait(exc) >= left:
            advice = SESSION_EXPIRES_FIRST
        else:
            advice = SESSION_KEPT
        if isinstance(exc, GatewayError):
            exc.add_advice(advice)

    async def _put_back(self, session: IssuanceSession) -> float | None:
        """Put the unused session back: its seconds left, or None if the store failed.

        The request's own failure is what its caller is answered; a shared store that fails
        now (logged and counted by the store) only changes the advice to "start again".
        """
        try:
            return await self._store.put_back(self._stoken, session)
        except SessionStoreUnavailable:
            return None


def _advised_wait(exc: BaseException) -> float:
    """The seconds the answer to `exc` tells the caller to wait (its `Retry-After`), else 0."""
    if not isinstance(exc, SignerUnavailable):
        return 0.0
    return float(exc.headers()["Retry-After"])
