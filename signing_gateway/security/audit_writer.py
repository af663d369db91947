"""The audit file's writer: one daemon thread running the calls handed to it, in order.

Not a `ThreadPoolExecutor`: the interpreter joins that pool's threads as it exits, so a write
stalled on the disk (a hung NFS mount, a FIFO whose reader has gone) would keep the process
from ever ending, whatever the gateway's shutdown had given up on. This thread is a daemon:
`AuditTrail.close` waits for the queued records for a bounded time, says how many it left,
and the process then ends with the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Future[Any], Callable[[], Any]]


class AuditWriter:
    """Runs each call `submit` is given on one daemon thread, in the order given."""

    def __init__(self, *, name: str) -> None:
        """Start the thread, called `name`."""
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Queue `call`; its future has its result or exception once it has run.

        Raises:
            RuntimeError: the writer was stopped; `call` is not queued.
        """
        future: Future[T] = Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError("the audit writer is stopped")
            self._calls.put((future, call))
        return future

    def stop(self) -> None:
        """Take no more calls; the thread ends once those queued have run. Never waits."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._calls.put(None)

    def _run(self) -> None:
        while (queued := self._calls.get()) is not None:
            future, call = queued
            if not future.set_running_or_notify_cancel():  # cancelled while queued
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - the caller's to see, through the future
                future.set_exception(exc)
            else:
                future.set_result(result)
