"""Where audit records go: the `signing_gateway.audit` logger and an append-only JSON-lines file.

Every record goes to the logger, and, when `audit.file` is set, is appended as one JSON line
to that file (`security/audit_file.py`) by a single writer thread (the event loop never
touches the file). At most
`max_pending_writes` writes wait; beyond that a write fails at once instead of queueing
without bound. A failed write counts in `gateway_audit_write_failures`.

A request waits for its record's write without its CPU permit (`io_wait`: the wait is I/O)
and for at most `write_timeout_seconds`: a stalled disk then costs each request one bounded
wait, never the whole gateway, and the records of the requests it holds up fill
`max_pending_writes` until new ones fail at once. A write that outlasts the wait counts as
failed; it is not dropped, it stays queued (and is still written if the disk recovers).

A record whose answer changed while it waited (the drain cancelled the request, or the
write timed out and the credential was withheld) is superseded: while still queued, the new
record takes its place; once the writer has it, the new record is queued after it, under the
same `auditId`. The last record of an attempt (its `auditId`, which the trail mints; the
request id is the caller's and may repeat) in the file is always what its caller was answered.

At shutdown (`close`) the queued records get `write_timeout_seconds` too; past that they are
logged as left, and the writer thread, a daemon (`audit_writer`), ends with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from signing_gateway.observability.context import current_request_id
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime.cpu_gate import io_wait
from signing_gateway.security.audit_file import AuditFile
from signing_gateway.security.audit_writer import AuditWriter

audit_logger = logging.getLogger("signing_gateway.audit")
logger = logging.getLogger("signing_gateway.security")

_TOO_MANY_PENDING = "too many audit writes pending"


class AuditRecordsFailed(Exception):
    """The readiness probe's word for records that failed since its last look.

    Named for `/readyz`, which shows the class of what failed a probe as its `error`.
    """


class QueuedRecord:
    """One record on its way to the file, as `AuditTrail.queue` handed it to the writer.

    Its fields change under the trail's lock: the writer thread takes `line` (after which it
    cannot be replaced), then says whether it was written (`done`, `ok`) and wakes `waiter`;
    the loop may replace the line before it is taken, or give up waiting (`abandoned`: the
    failure is counted then, not again by the writer). `request_id` is the id of the request
    that queued it, for the writer thread's log (the thread does not run in its context).
    """

    __slots__ = ("abandoned", "done", "line", "ok", "request_id", "taken", "waiter")

    def __init__(
        self, line: bytes, waiter: asyncio.Future[None] | None, *, request_id: str = "-"
    ) -> None:
        """A record to write as `line`; `waiter` (None: never queued) is woken once done."""
        self.line = line
        self.waiter = waiter
        self.request_id = request_id
        self.taken = False
        self.done = False
        self.ok = False
        self.abandoned = False

    @classmethod
    def settled(cls, *, ok: bool) -> QueuedRecord:
        """A record never queued, with nothing to wait for: written (`ok`) or refused."""
        record = cls(b"", None)
        record.taken = record.done = True
        record.ok = ok
        return record


def _os_cause(exc: BaseException) -> dict[str, str]:
    """What the OS said of a failed write: `errno` by name (ENOSPC, EACCES, EIO), `strerror`.

    Neither holds a path or the record. An OSError without an errno is one of the trail's own,
    whose message says which (too many pending writes, no bytes accepted).
    """
    if not isinstance(exc, OSError):
        return {}
    if exc.errno is None:
        return {"strerror": str(exc)}
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return {"errno": name, "strerror": exc.strerror or os.strerror(exc.errno)}


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # woken already (the timer, the writer) or cancelled
        waiter.set_result(None)


#: Nothing to wait for: no audit file is configured (the logger has the record).
_NO_FILE = QueuedRecord.settled(ok=True)
#: Nothing to wait for: the record could not be queued (counted and logged already).
_REFUSED = QueuedRecord.settled(ok=False)


class AuditTrail:
    """Writes audit records to the audit logger and (optionally) an `AuditFile`."""

    def __init__(
        self,
        *,
        sink: AuditFile | None,
        metrics: GatewayMetrics,
        fail_closed: bool,
        max_pending: int,
        write_timeout: float,
        cancellations_answered: bool = False,
    ) -> None:
        """Write to `sink` through one worker thread, at most `max_pending` queued.

        A request waits `write_timeout` seconds at most for its record to be written.
        `cancellations_answered`: the requests are served behind `DrainMiddleware`, which
        answers one cancelled before its response started 503 `shutting-down`.
        """
        self._sink = sink
        self._metrics = metrics
        self.fail_closed = fail_closed
        self.cancellations_answered = cancellations_answered
        self.write_timeout = write_timeout
        self._max_pending = max_pending
        self._pending = 0
        self._timed_out = 0
        # Records not written (failed, refused or timed out), and that count at the last probe.
        self._failures = 0
        self._failures_probed = 0
        self._writing_since: float | None = None
        self._lock = threading.Lock()
        self._writer = AuditWriter(name="audit-writer") if sink is not None else None
        # Attempt ids: a random part per trail (a gateway start, a worker) and a count in it.
        self._id_prefix = secrets.token_hex(8)
        self._id_numbers = itertools.count(1)

    @classmethod
    async def open(
        cls,
        path: Path | None,
        *,
        metrics: GatewayMetrics,
        fail_closed: bool,
        max_pending: int,
        write_timeout: float,
        cancellations_answered: bool = False,
    ) -> AuditTrail:
        """Open the trail; the file (if any) is opened in a thread and must be writable."""
        sink = None if path is None else await asyncio.to_thread(AuditFile, path)
        return cls(
            sink=sink,
            metrics=metrics,
            fail_closed=fail_closed,
            max_pending=max_pending,
            write_timeout=write_timeout,
            cancellations_answered=cancellations_answered,
        )

    def new_audit_id(self) -> str:
        """A new attempt's `auditId`: unique across trails, processes and restarts.

        Sixteen random hex digits (64 bits) per trail, then the trail's count of attempts: a
        count costs a twentieth of the microseconds `uuid4` does, and orders one trail's ids.
        """
        return f"{self._id_prefix}-{next(self._id_numbers)}"

    def log(self, record: dict[str, Any]) -> None:
        """Emit `record` on the audit logger, under its request id.

        The id is the record's own: one logged once its request has ended (an `undelivered`
        one, `IssuanceAudit.answered`) is no longer in that request's context.
        """
        extra: dict[str, Any] = {"audit": record}
        request_id = record.get("requestId")
        if request_id is not None:
            extra["request_id"] = request_id
        audit_logger.info("issuance attempt", extra=extra)

    def _failed(self, exc: BaseException, request_id: str) -> None:
        """Count and log a record of `request_id` that was not written (loop or writer thread)."""
        with self._lock:
            self._failures += 1
        self._metrics.audit_write_failures.inc()
        fields = {"security_event": "audit-write-failed", "error": type(exc).__name__}
        if request_id != "-":
            fields["request_id"] = request_id
        logger.error("audit record not written", extra={**fields, **_os_cause(exc)})

    def _write(self, queued: QueuedRecord) -> None:
        """Writer thread: append `queued`'s line as it stands now, then wake its waiter."""
        with self._lock:
            queued.taken = True
            line = queued.line
            self._writing_since = time.monotonic()
        failure: Exception | None = None
        try:
            assert self._sink is not None  # noqa: S101 - only queued when there is one
            self._sink.append(line)
        except Exception as exc:  # noqa: BLE001 - whatever stops a record is a failed write
            failure = exc
        with self._lock:
            self._pending -= 1
            self._writing_since = None
            queued.done, queued.ok = True, failure is None
            uncounted = not queued.abandoned
        if failure is not None and uncounted:
            self._failed(failure, queued.request_id)
        waiter = queued.waiter
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    def _queue_line(
        self, line: bytes, *, correction: bool = False, request_id: str | None = None
    ) -> QueuedRecord:
        """Queue `line`; a `correction` (see `supersede`) is queued past `max_pending` too.

        `request_id`: of the request it is of (default: the one being served).
        """
        if self._writer is None:
            return _NO_FILE
        with self._lock:
            full = not correction and self._pending >= self._max_pending
            if not full:
                self._pending += 1
        if request_id is None:
            request_id = current_request_id()
        if full:
            self._failed(OSError(_TOO_MANY_PENDING), request_id)
            return _REFUSED
        waiter = asyncio.get_running_loop().create_future()
        queued = QueuedRecord(line, waiter, request_id=request_id)
        try:
            self._writer.submit(functools.partial(self._write, queued))
        except RuntimeError as exc:  # the writer is stopped: the trail is closing
            with self._lock:
                self._pending -= 1
            self._failed(exc, request_id)
            return _REFUSED
        return queued

    def queue(self, record: dict[str, Any]) -> QueuedRecord:
        """Hand `record` to the writer thread; never waits, never raises.

        One that cannot be queued (too many pending, or the trail already closed) is counted
        and logged like any failed write.
        """
        if self._writer is None:
            return _NO_FILE
        return self._queue_line(orjson.dumps(record) + b"\n")

    async def written(self, queued: QueuedRecord) -> bool:
        """Wait for `queued`'s write, without the CPU permit and `write_timeout` at most.

        False (counted, logged) when it failed or did not finish in time; it then stays
        queued. Cancelled, the wait ends and the write goes on (`supersede` can correct it).
        """
        waiter = queued.waiter
        if waiter is None:
            return queued.ok
        # One timer and the waiter: `asyncio.wait` or `timeout` around a wrapped future
        # cost each audited request ~10 µs more of the loop's CPU.
        timer = waiter.get_loop().call_later(self.write_timeout, _wake, waiter)
        try:
            async with io_wait():  # the disk, not the CPU: other requests go on meanwhile
                await waiter
        finally:
            timer.cancel()
        if queued.done:  # set before the writer woke the waiter
            return queued.ok
        with self._lock:
            if queued.done:  # finished as the timer fired; a failure was counted then
                return queued.ok
            queued.abandoned = True
            self._failures += 1
        self._timed_out += 1
        self._metrics.audit_write_failures.inc()
        logger.error(
            "audit record not written in time",
            extra={
                "security_event": "audit-write-timed-out",
                "timeout_seconds": self.write_timeout,
            },
        )
        return False

    async def append(self, record: dict[str, Any]) -> bool:
        """Queue `record` and wait for it (`written`); False (counted) when it was not written."""
        return await self.written(self.queue(record))

    async def write(self, record: dict[str, Any]) -> bool:
        """Append `record` to the file and log it; False (counted) when the append failed."""
        written = await self.append(record)
        self.log(record)
        return written

    def submit(self, record: dict[str, Any]) -> None:
        """Log `record` and queue its file append without waiting for it; never raises."""
        self.log(record)
        self.queue(record)

    def supersede(
        self, queued: QueuedRecord, record: dict[str, Any], *, keep: bool = False
    ) -> None:
        """Have `record` replace `queued` in the file: the answer changed while it waited.

        Still queued, `queued` is written as `record` instead, unless `keep`: it then stands,
        and `record` follows it; taken by the writer already, `record` is queued after it
        (unless that write failed: nothing stands to correct),
        even past `max_pending`: a stalled disk fills the queue, and refusing the correction
        then would leave the file saying what the caller was not answered. Each queued record
        has at most one correction, so the queue stays within twice `max_pending`.
        Logging `record` is the caller's part. Never waits, never raises.
        """
        if queued.waiter is None:  # never queued: the file holds nothing of it
            return
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            if not queued.taken and not keep:
                queued.line = line
                return
            stands = not queued.done or queued.ok
        if stands:  # maybe after its request (`IssuanceAudit.answered`): its id, then
            self._queue_line(line, correction=True, request_id=queued.request_id)

    async def probe(self) -> None:
        """Readiness: raise when the file cannot take records, or some failed since the last look.

        The check (`AuditFile.check`) runs on the writer thread, behind the records queued
        before it: a disk that stalls them holds it past the probe's timeout. Records that
        failed or timed out since the previous probe make this one fail even when the check
        passes (the disk errs, or a quota is reached), and only this one: with no records
        coming, the next probe that passes the check says the file can take them again.
        """
        if self._writer is None or self._sink is None:
            return
        with self._lock:
            failed = self._failures - self._failures_probed
            self._failures_probed = self._failures
        await asyncio.wrap_future(self._writer.submit(self._sink.check))
        if failed:
            raise AuditRecordsFailed(f"{failed} audit records not written since the last probe")

    def snapshot(self) -> dict[str, Any]:
        """The /readyz view: queued writes, and how long the one in progress has taken."""
        since = self._writing_since
        return {
            "file": self._sink is not None,
            "failClosed": self.fail_closed,
            "pendingWrites": self._pending,
            "maxPendingWrites": self._max_pending,
            "writeTimeoutSeconds": self.write_timeout,
            "writeInProgressSeconds": None if since is None else round(time.monotonic() - since, 3),
            "timedOut": self._timed_out,
        }

    async def close(self) -> None:
        """Let the queued writes finish, for `write_timeout` at most, then close the file.

        Records queued from now on are refused (counted and logged). The file is closed on the
        writer thread, after the records queued before. A disk that stalls them past
        `write_timeout` (a hung NFS mount, a FIFO whose reader has gone) is given up on, so
        that shutdown ends: the records still queued or being written then are logged at ERROR
        with their number, as they are when this wait is cancelled; the writer goes on with
        them while the process lives, then closes the file. Closing again does nothing.
        """
        writer, sink = self._writer, self._sink
        if writer is None or sink is None:
            return
        try:
            closed = writer.submit(sink.close)
        except RuntimeError:  # stopped: closed before
            return
        writer.stop()
        # Woken from the writer thread; not `wrap_future`, whose cancellation (the timeout's,
        # or the caller's) would cancel the file's close queued behind the records.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_wake, done)

        closed.add_done_callback(wake)
        try:
            async with asyncio.timeout(self.write_timeout):
                await done
        except TimeoutError:
            pass
        finally:
            if not closed.done():  # given up on: timed out, or cancelled
                self._log_left()
        if closed.done():
            closed.result()  # what closing the file raised, if anything

    def _log_left(self) -> None:
        """Say how many records `close` gave up on: queued, or the one being written."""
        with self._lock:
            left = self._pending
        logger.error(
            "audit records not written at shutdown",
            extra={
                "security_event": "audit-records-left",
                "records": left,
                "timeout_seconds": self.write_timeout,
            },
        )
