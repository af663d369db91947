"""The audit record of one issuance attempt, written before the answer leaves.

A record says which attempt (`auditId`, the gateway's own), who (caller subject and client),
when, through which endpoint, with which request id (the caller's), what was (to be) issued
(per part: key usage, kid, UVCI, proofIdentifier) and how it ended (outcome, HTTP status,
problem type, and for a refused stoken its `cause`: `GatewayError.cause`). It never holds a
name, a birth date or a domestic attribute. `audit_trail`
writes it (the audit logger, and the file if any).

With `fail_closed` a successful issuance whose record failed, or was not written within
`write_timeout_seconds`, is answered 503 and its credential is not released; its record then
says `withheld` (in the log, and in the file when it can still get there).

An issuance cancelled mid-way (at shutdown: the drain's timeout, a second signal, uvicorn's
backstop; or its caller gone, the server cancelling its request) is recorded too: the signer
may have signed. Its record is queued for the writer thread without waiting, so neither the
cancellation nor its answer waits on the disk; `AuditTrail.close` lets it finish (for
`write_timeout_seconds` at most). Cancelled while its record was already on its way, the
attempt's record is superseded by the `cancelled` one (the caller never got what the first
one says); unless its caller left while its `issued` record was on its way: that stands,
and an `undelivered` one follows, as below.

An issued attempt whose answer did not get to its connection (the caller hung up while its
`issued` record was written or while the answer was sent, or the answer was replaced after
the record was written) gets an `undelivered` record after the `issued` one, once the
request has ended: the request metrics, which alone see the whole answer go out, tell the
record (`answered`). It is queued without waiting, like a correction. Handed to the
connection is not received: an answer the kernel took and the network then lost leaves
`issued` standing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from fastapi import Depends, Request

from signing_gateway.domain.dcc import EuRequest
from signing_gateway.domain.errors import DomainValidationError
from signing_gateway.errors import PROBLEM_BASE, GatewayError, RequestInvalid
from signing_gateway.issuance.eu import IssuedEuCredential
from signing_gateway.observability.context import (
    ANSWER_WATCHER_KEY,
    CONNECTION_KEY,
    Connection,
    is_lost,
)
from signing_gateway.resilience.drain import CANCELLED_STATUS, SHUTTING_DOWN
from signing_gateway.runtime.cpu_gate import checkpoint
from signing_gateway.security.audit_trail import AuditTrail, QueuedRecord
from signing_gateway.security.auth import Caller, CallerDep
from signing_gateway.security.errors import AuditUnavailable

#: The outcome of an issued attempt whose answer did not get to its connection (`answered`).
UNDELIVERED = "undelivered"


class IssuanceAudit:
    """The audit record of one issuance attempt, filled in by the route as it goes."""

    def __init__(
        self,
        trail: AuditTrail,
        *,
        request_id: str,
        caller: Caller,
        endpoint: str,
        connection: Connection | None = None,
    ) -> None:
        """Start a record for `caller` calling `endpoint` on `connection` (None: not known)."""
        self._trail = trail
        self._connection = connection
        self._record: dict[str, Any] = {
            # The gateway's own id of this attempt: the key of its records (a correction
            # repeats it). The request id is the caller's, for correlation: it may repeat.
            "auditId": trail.new_audit_id(),
            "requestId": request_id,
            "caller": caller.subject,
            "clientId": caller.client_id,
            "authenticated": caller.authenticated,
            "endpoint": endpoint,
            "items": [],
        }
        self._items: dict[str, dict[str, Any]] = {}
        #: A released issuance: its record, that record's write, and whether the record
        #: stands even while still queued (see `answered`).
        self._released: tuple[dict[str, Any], QueuedRecord, bool] | None = None
        #: What the caller should do if the issued credentials are withheld for want of an
        #: audit record (set by a route whose success used something up, such as a session).
        self.advice_if_withheld: str | None = None

    def _item(self, part: str) -> dict[str, Any]:
        item = self._items.get(part)
        if item is None:
            item = self._items[part] = {"part": part}
            self._record["items"].append(item)
        return item

    def eu_request(self, part: str, request: EuRequest) -> None:
        """Note an EU part before signing: its key usage and UVCI."""
        self._item(part).update(
            kind="eu", keyUsage=request.effective_key_usage().value, uvci=request.dcc.uvci()
        )

    def eu_issued(self, part: str, issued: IssuedEuCredential) -> None:
        """Note what an EU part produced: kid and proof identifier."""
        self._item(part).update(
            kind="eu",
            keyUsage=issued.key_usage.value,
            uvci=issued.uvci,
            kid=issued.kid,
            proofIdentifier=issued.proof_identifier,
        )

    def domestic(
        self, part: str, *, kind: str, count: int = 1, proof_identifier: str | None = None
    ) -> None:
        """Note a domestic part: static QR or issuance session, how many, proof id if any."""
        item = self._item(part)
        item.update(kind=kind, count=count)
        if proof_identifier is not None:
            item["proofIdentifier"] = proof_identifier

    def _final(
        self, *, outcome: str, status: int | None, problem: str | None, cause: str | None = None
    ) -> dict[str, Any]:
        final = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            **self._record,
            "outcome": outcome,
            "status": status,
            "problemType": problem,
        }
        if cause is not None:  # only a failure that an answer alike could hide has one
            final["cause"] = cause
        return final

    def _caller_gone(self) -> bool:
        return is_lost(self._connection)

    def _cancelled(self, exc: BaseException) -> dict[str, Any]:
        """The record of an attempt ended mid-way by `exc`, with what its caller was answered.

        A cancelled request is answered 503 `shutting-down` by `DrainMiddleware`, whatever
        cancelled it (the drain, a second signal, uvicorn's backstop): its response has not
        started while its record is made. A caller gone (the server cancels the request of a
        lost connection), anything else ending it (the process exiting), or a trail whose
        requests no such middleware answers, leaves no answer of the gateway's own: no status.
        """
        if (
            isinstance(exc, asyncio.CancelledError)
            and self._trail.cancellations_answered
            and not self._caller_gone()
        ):
            return self._final(
                outcome="cancelled",
                status=CANCELLED_STATUS,
                problem=PROBLEM_BASE + SHUTTING_DOWN,
            )
        return self._final(outcome="cancelled", status=None, problem=None)

    async def _written(self, queued: QueuedRecord) -> bool:
        """Wait for `queued` (see `AuditTrail.written`); cancelled, record that instead.

        The request was cancelled while its record was on its way: the caller gets the 503 of
        a cancelled request, not the answer that record holds, so a `cancelled` one supersedes it.
        """
        try:
            return await self._trail.written(queued)
        except asyncio.CancelledError as exc:
            self._supersede_cancelled(queued, exc)
            raise

    def _supersede_cancelled(self, queued: QueuedRecord, exc: asyncio.CancelledError) -> None:
        cancelled = self._cancelled(exc)
        self._trail.log(cancelled)
        self._trail.supersede(queued, cancelled)

    async def _finish(
        self, *, outcome: str, status: int, problem: str | None, cause: str | None = None
    ) -> None:
        """Record a failed attempt; its answer stands whether or not the write succeeds."""
        record = self._final(outcome=outcome, status=status, problem=problem, cause=cause)
        await self._written(self._trail.queue(record))
        self._trail.log(record)

    def attempt(self) -> Self:
        """``async with``: write the record when the enclosed issuance ends, however it ends.

        On success the record is written before the caller gets the credential; if that
        fails, or does not finish within the trail's write timeout, and the trail fails
        closed, AuditUnavailable (503) replaces the answer. The record is its own context
        manager, not an ``asynccontextmanager``: it is held for the request's whole signer
        wait, and a generator-based one costs each request in flight a generator, its frame
        and a wrapper.
        """
        return self

    async def __aenter__(self) -> Self:
        """The record, for the block to fill in."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        """`attempt`'s end: the outcome `exc` (None: issued) says, written."""
        if isinstance(exc, GatewayError):
            # A request refused for its content (a proof of U that fails) is refused as a
            # validation error is, though found only once its session was taken.
            outcome = "refused" if isinstance(exc, RequestInvalid) else "failed"
            await self._finish(
                outcome=outcome, status=exc.status, problem=exc.type, cause=exc.cause
            )
            return
        if isinstance(exc, DomainValidationError):  # answered as a RequestInvalid (api/problems)
            await self._finish(
                outcome="refused",
                status=RequestInvalid.status,
                problem=PROBLEM_BASE + RequestInvalid.slug,
            )
            return
        if isinstance(exc, Exception):
            await self._finish(outcome="error", status=500, problem=PROBLEM_BASE + "internal")
            return
        if exc is not None:  # cancelled mid-issuance: the signer may have signed
            self._trail.submit(self._cancelled(exc))
            return
        record = self._final(outcome="issued", status=200, problem=None)
        trail = self._trail
        queued = trail.queue(record)
        try:
            written = await trail.written(queued)
        except asyncio.CancelledError as cancelled:
            if not self._caller_gone():
                self._supersede_cancelled(queued, cancelled)
                raise
            # Its caller left while the record was on its way: issued, and delivered to
            # nobody, as when the caller leaves once it is written (`answered`, told None).
            # The `issued` record stands, queued or not: the signer signed, the gateway
            # verified, and only the delivery failed.
            trail.log(record)
            self._released = (record, queued, True)
            raise
        if written or not trail.fail_closed:
            trail.log(record)  # written, or failing open: released (a failure was counted)
            self._released = (record, queued, False)
            return
        # Nothing is released: the record says so, in the file if it can still get there.
        withheld = {
            **record,
            "outcome": "withheld",
            "status": AuditUnavailable.status,
            "problemType": PROBLEM_BASE + AuditUnavailable.slug,
        }
        trail.supersede(queued, withheld)
        trail.log(withheld)
        refusal = AuditUnavailable(
            "the audit record could not be written; the credential was not released"
        )
        if self.advice_if_withheld is not None:
            refusal.add_advice(self.advice_if_withheld)
        raise refusal

    def answered(self, status: int | None) -> None:
        """The request ended (`AnswerWatcher`): an issued answer not handed over is recorded.

        `status`: that of the answer handed whole to the connection (None: none was). When the
        attempt released its credentials and that answer is not their 200 (the caller hung up
        before or while it was sent, or the drain or an error replaced it), an `undelivered`
        record follows the `issued` one, as a `withheld` one would (`AuditTrail.supersede`): it
        is logged, and queued for the writer thread without waiting, so the answer, sent
        already, waits on nothing. Nothing is recorded for an answer that went out, nor for an
        attempt that released nothing (its record says what was answered). An `issued` record
        still queued (failing open, its write timed out) is replaced, as by any correction;
        not one whose caller left while it was on its way (`__aexit__`): that one stands.
        """
        released = self._released
        if released is None or status == released[0]["status"]:
            return
        self._released = None  # one correction per record
        record, queued, stands = released
        undelivered = {**record, "outcome": UNDELIVERED, "status": None, "problemType": None}
        self._trail.log(undelivered)
        self._trail.supersede(queued, undelivered, keep=stands)


# `async def` although it awaits nothing: FastAPI runs a plain `def` dependency in a worker
# thread, a thread hop per request (a third of /v1/dcc CPU in the S3 bench). It only builds
# the record; the file write stays on the audit writer thread.
async def _issuance_audit(request: Request, caller: CallerDep) -> IssuanceAudit:
    await checkpoint()  # one step per stretch of CPU work: see runtime/cpu_gate.checkpoint
    return issuance_audit(request, caller)


def issuance_audit(request: Request, caller: Caller) -> IssuanceAudit:
    """The audit record of the issuance `caller` asks for with `request` (for bundled deps)."""
    # `request.url` only without a route's path: building it costs ~3 µs a request.
    scope = request.scope
    path = getattr(scope.get("route"), "path", None)
    audit = IssuanceAudit(
        request.state.audit,
        request_id=request.state.request_id,
        caller=caller,
        endpoint=path if path is not None else request.url.path,
        connection=scope.get(CONNECTION_KEY),
    )
    scope[ANSWER_WATCHER_KEY] = audit  # told by the request metrics whether its answer went out
    return audit


AuditDep = Annotated[IssuanceAudit, Depends(_issuance_audit)]
"""The audit record of the issuance a route performs (the caller is authenticated first)."""
