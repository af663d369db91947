"""Where audit records go: the `signing_gateway.audit` logger and an append-only JSON-lines file.

Every record goes to the logger, and, when `audit.file` is set, is appended as one JSON line
to that file by a single writer thread (the event loop never touches the file). At most
`max_pending_writes` writes wait; beyond that a write fails at once instead of queueing
without bound. A failed write counts in `gateway_audit_write_failures`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import orjson

from signing_gateway.observability.metrics import GatewayMetrics

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
