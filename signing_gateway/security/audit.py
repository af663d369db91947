"""The audit trail: one record per issuance attempt, written before the answer leaves.

A record says who (caller subject and client), when, through which endpoint, with which
request id, what was (to be) issued (per part: key usage, kid, UVCI, proofIdentifier) and
how it ended (outcome, HTTP status, problem type). It never holds a name, a birth date or
a domestic attribute.

Every record goes to the `signing_gateway.audit` logger, and, when `audit.file` is set, is
appended as one JSON line to that file by a single writer thread (the event loop never
touches the file). At most `max_pending_writes` writes wait; beyond that a write fails at once
instead of queueing without bound. A failed write counts in `gateway_audit_write_failures`;
with `fail_closed` a successful issuance whose record failed is answered 503 and its
credential is not released.

An issuance cancelled mid-way (the drain's timeout at shutdown) is recorded too: the signer
may have signed. Its record is queued for the writer thread without waiting, so neither the
cancellation nor the drain's answer waits on the disk; `AuditTrail.close` lets it finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, Self

import orjson
from fastapi import Depends, Request

from signing_gateway.domain.dcc import EuRequest
from signing_gateway.domain.errors import DomainValidationError
from signing_gateway.errors import PROBLEM_BASE, GatewayError
from signing_gateway.issuance.eu import IssuedEuCredential
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.resilience.shutdown import SHUTTING_DOWN
from signing_gateway.runtime.cpu_gate import checkpoint
from signing_gateway.security.auth import Caller, CallerDep
from signing_gateway.security.errors import AuditUnavailable

audit_logger = logging.getLogger("signing_gateway.audit")
logger = logging.getLogger("signing_gateway.security")


def _never() -> bool:
    return False


class AuditFile:
    """An append-only JSON-lines file, written by one thread at a time."""

    def __init__(self, path: Path) -> None:
        """Open `path` for appending (sync: call from start-up code, in a thread)."""
        self.path = path
        # Unbuffered: a failed write must not leave half a record behind to be flushed later.
        self._file: IO[bytes] = path.open("ab", buffering=0)

    def append(self, line: bytes) -> None:
        """Hand one whole line to the OS; raise OSError when it cannot take it."""
        view = memoryview(line)
        while view:
            written = self._file.write(view)
            if not written:
                raise OSError("the audit file accepted no bytes")
            view = view[written:]

    def close(self) -> None:
        """Close the file."""
        self._file.close()


_TOO_MANY_PENDING = "too many audit writes pending"


class AuditTrail:
    """Writes audit records to the audit logger and (optionally) an `AuditFile`."""

    def __init__(
        self,
        *,
        sink: AuditFile | None,
        metrics: GatewayMetrics,
        fail_closed: bool,
        max_pending: int,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        """Write to `sink` through one worker thread, at most `max_pending` queued.

        `draining()` says whether the gateway is shutting down (the drain controller's flag):
        an attempt cancelled then was answered 503 `shutting-down` by the drain.
        """
        self._sink = sink
        self._metrics = metrics
        self.fail_closed = fail_closed
        self.draining = draining or _never
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
            if sink is not None
            else None
        )

    @classmethod
    async def open(
        cls,
        path: Path | None,
        *,
        metrics: GatewayMetrics,
        fail_closed: bool,
        max_pending: int,
        draining: Callable[[], bool] | None = None,
    ) -> AuditTrail:
        """Open the trail; the file (if any) is opened in a thread and must be writable."""
        sink = None if path is None else await asyncio.to_thread(AuditFile, path)
        return cls(
            sink=sink,
            metrics=metrics,
            fail_closed=fail_closed,
            max_pending=max_pending,
            draining=draining,
        )

    def _append(self, line: bytes) -> None:
        try:
            assert self._sink is not None  # noqa: S101 - only submitted when there is one
            self._sink.append(line)
        finally:
            with self._lock:
                self._pending -= 1

    async def write(self, record: dict[str, Any]) -> bool:
        """Append `record` to the file and log it; False (counted) when the append failed."""
        written = await self.append(record)
        self.log(record)
        return written

    def log(self, record: dict[str, Any]) -> None:
        """Emit `record` on the audit logger."""
        audit_logger.info("issuance attempt", extra={"audit": record})

    def _reserve(self) -> bool:
        """Take a place among the pending writes; False when `max_pending` are taken."""
        with self._lock:
            if self._pending >= self._max_pending:
                return False
            self._pending += 1
            return True

    def _failed(self, exc: BaseException) -> None:
        """Count and log a record that was not written (from the loop or the writer thread)."""
        self._metrics.audit_write_failures.inc()
        logger.error(
            "audit record not written",
            extra={"event": "audit-write-failed", "error": type(exc).__name__},
        )

    async def append(self, record: dict[str, Any]) -> bool:
        """Append `record` to the file; False (counted, logged) when that failed."""
        if self._sink is None or self._executor is None:
            return True
        if not self._reserve():
            self._failed(OSError(_TOO_MANY_PENDING))
            return False
        try:
            line = orjson.dumps(record) + b"\n"
            await asyncio.get_running_loop().run_in_executor(self._executor, self._append, line)
        except OSError as exc:
            self._failed(exc)
            return False
        return True

    def _append_or_count(self, line: bytes) -> None:
        try:
            self._append(line)
        except OSError as exc:
            self._failed(exc)

    def submit(self, record: dict[str, Any]) -> None:
        """Log `record` and queue its file append without waiting for it; never raises.

        For an attempt being cancelled: awaiting the append would hold its cancellation (and
        the drain's answer) on the disk. `close` lets a queued append finish before the file
        closes; one that cannot be queued (too many pending, or the trail already closed) or
        that fails is counted and logged like any failed write.
        """
        self.log(record)
        if self._sink is None or self._executor is None:
            return
        if not self._reserve():
            self._failed(OSError(_TOO_MANY_PENDING))
            return
        try:
            self._executor.submit(self._append_or_count, orjson.dumps(record) + b"\n")
        except RuntimeError as exc:  # the executor is shut down: the trail is closing
            with self._lock:
                self._pending -= 1
            self._failed(exc)

    async def close(self) -> None:
        """Let queued writes finish, then close the file."""
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
        if self._sink is not None:
            await asyncio.to_thread(self._sink.close)


class IssuanceAudit:
    """The audit record of one issuance attempt, filled in by the route as it goes."""

    def __init__(
        self, trail: AuditTrail, *, request_id: str, caller: Caller, endpoint: str
    ) -> None:
        """Start a record for `caller` calling `endpoint`."""
        self._trail = trail
        self._record: dict[str, Any] = {
            "requestId": request_id,
            "caller": caller.subject,
            "clientId": caller.client_id,
            "authenticated": caller.authenticated,
            "endpoint": endpoint,
            "items": [],
        }
        self._items: dict[str, dict[str, Any]] = {}
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

    def _final(self, *, outcome: str, status: int | None, problem: str | None) -> dict[str, Any]:
        return {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            **self._record,
            "outcome": outcome,
            "status": status,
            "problemType": problem,
        }

    def _cancelled(self) -> dict[str, Any]:
        """The record of an attempt cancelled mid-way: what its caller was answered, if known.

        At shutdown the drain answers it 503 `shutting-down`. Otherwise the gateway sends
        nothing of its own (the process is being stopped without a drain): no status.
        """
        if self._trail.draining():
            return self._final(
                outcome="cancelled", status=503, problem=PROBLEM_BASE + SHUTTING_DOWN
            )
        return self._final(outcome="cancelled", status=None, problem=None)

    async def _finish(self, *, outcome: str, status: int, problem: str | None) -> None:
        await self._trail.write(self._final(outcome=outcome, status=status, problem=problem))

    def attempt(self) -> Self:
        """``async with``: write the record when the enclosed issuance ends, however it ends.

        On success the record is written before the caller gets the credential; if that
        fails and the trail fails closed, AuditUnavailable (503) replaces the answer. The
        record is its own context manager, not an ``asynccontextmanager``: it is held for the
        request's whole signer wait, and a generator-based one costs each request in flight a
        generator, its frame and a wrapper.
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
            await self._finish(outcome="failed", status=exc.status, problem=exc.type)
            return
        if isinstance(exc, DomainValidationError):
            await self._finish(
                outcome="refused", status=422, problem=PROBLEM_BASE + "validation-failed"
            )
            return
        if isinstance(exc, Exception):
            await self._finish(outcome="error", status=500, problem=PROBLEM_BASE + "internal")
            return
        if exc is not None:  # cancelled mid-issuance: the signer may have signed
            self._trail.submit(self._cancelled())
            return
        record = self._final(outcome="issued", status=200, problem=None)
        written = await self._trail.append(record)
        if not written and self._trail.fail_closed:
            # Nothing was released: the log (the file is failing) records it as withheld.
            self._trail.log(
                {
                    **record,
                    "outcome": "withheld",
                    "status": AuditUnavailable.status,
                    "problemType": PROBLEM_BASE + AuditUnavailable.slug,
                }
            )
            withheld = AuditUnavailable(
                "the audit record could not be written; the credential was not released"
            )
            if self.advice_if_withheld is not None:
                withheld.add_advice(self.advice_if_withheld)
            raise withheld
        self._trail.log(record)


# `async def` although it awaits nothing: FastAPI runs a plain `def` dependency in a worker
# thread, a thread hop per request (a third of /v1/dcc CPU in the S3 bench). It only builds
# the record; the file write stays on the audit writer thread.
async def _issuance_audit(request: Request, caller: CallerDep) -> IssuanceAudit:
    await checkpoint()  # one step per stretch of CPU work: see runtime/cpu_gate.checkpoint
    return issuance_audit(request, caller)


def issuance_audit(request: Request, caller: Caller) -> IssuanceAudit:
    """The audit record of the issuance `caller` asks for with `request` (for bundled deps)."""
    # `request.url` only without a route's path: building it costs ~3 µs a request.
    path = getattr(request.scope.get("route"), "path", None)
    return IssuanceAudit(
        request.state.audit,
        request_id=request.state.request_id,
        caller=caller,
        endpoint=path if path is not None else request.url.path,
    )


AuditDep = Annotated[IssuanceAudit, Depends(_issuance_audit)]
"""The audit record of the issuance a route performs (the caller is authenticated first)."""
