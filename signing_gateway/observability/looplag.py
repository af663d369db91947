"""Event-loop lag: how late the loop wakes a timer, measured all the time in the background.

A task sleeps ``interval`` seconds, again and again, and records by how much each wake-up came
late. On an idle loop that is well under a millisecond; anything that holds the loop (a blocking
call, a long CPU burst, a C extension that does not release it) shows up as lag, in production,
where no test can see it. Lag goes to ``GatewayMetrics.event_loop_lag`` (histogram) and
``event_loop_lag_max`` (gauge), to ``/readyz`` details, and to a warning log when it passes a
threshold (at most one warning per ``warn_every`` seconds, so a stalled loop is not made worse
by its own log storm).

Lag has two causes an operator must tell apart: work in the process holding the loop (a CPU
burst, a collection, a blocking call: a bug to find), and the loop's thread ready to run with no
CPU to run on (other processes on its cores, or a container's CPU quota spent: a matter of
limits and placement). Linux counts the second per thread, so on Linux each sample also reads
how long the loop's thread waited for a CPU in its period (`ThreadCoreWait`). That time goes to
``event_loop_core_wait`` (a counter: its rate is the share of time the loop waited for a CPU),
to the warning, and to ``/readyz`` with the worst lag left once it is taken off
(``maxHeldLagSeconds``: what the process itself held the loop for).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

__all__ = ["LoopLagMonitor", "LoopLagStats", "ThreadCoreWait"]


@dataclass(slots=True)
class LoopLagStats:
    """What the monitor has seen since it started."""

    samples: int = 0
    last: float = 0.0
    max: float = 0.0
    over_threshold: int = 0
    #: Seconds the loop's thread waited for a CPU, and the worst lag less that wait in its
    #: sample; None where the wait is not counted (not Linux).
    core_wait: float | None = None
    max_held: float | None = None

    def to_json(self, threshold: float) -> dict[str, Any]:
        """The /readyz view, in seconds."""
        return {
            "lagSeconds": round(self.last, 6),
            "maxLagSeconds": round(self.max, 6),
            "maxHeldLagSeconds": _rounded(self.max_held),
            "coreWaitSeconds": _rounded(self.core_wait),
            "warnThresholdSeconds": threshold,
            "samples": self.samples,
            "samplesOverThreshold": self.over_threshold,
        }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


class ThreadCoreWait:
    """Seconds the thread that opened it has waited, ready to run, for a CPU (Linux only).

    Linux keeps this per thread in ``/proc/self/task/<tid>/schedstat`` (second field, ns; the
    kernel's schedstats, on in the usual kernels): time on a run queue, and time throttled once
    a container's CPU quota is spent. The file is opened once, by the thread to watch, and read
    with `os.pread` at offset 0, which has the kernel write it anew: procfs is made in memory,
    so a read waits on no disk and no lock, and costs a few microseconds.
    """

    def __init__(self, fd: int) -> None:
        """Read the schedstat file open at `fd` (`open` makes one for the calling thread)."""
        self._fd = fd

    @classmethod
    def open(cls) -> Self | None:
        """The calling thread's reader, or None where its wait is not counted."""
        path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # not Linux, or no schedstats
            return None
        reader = cls(fd)
        try:
            reader.seconds()
        except (OSError, ValueError, IndexError):
            reader.close()
            return None
        return reader

    def seconds(self) -> float:
        """The thread's wait for a CPU so far."""
        return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9

    def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


class LoopLagMonitor:
    """Measures, in one background task, how late the running loop wakes a periodic sleep."""

    def __init__(
        self,
        metrics: GatewayMetrics | None = None,
        *,
        interval: float = 0.05,
        warn_threshold: float = 0.1,
        warn_every: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
        open_core_wait: Callable[[], ThreadCoreWait | None] = ThreadCoreWait.open,
    ) -> None:
        """Sample every `interval` s; warn when one wake-up is later than `warn_threshold` s.

        `open_core_wait` is called on the loop's thread for what reads that thread's wait for a
        CPU (None: the wait is not read).
        """
        if interval <= 0 or warn_threshold <= 0 or warn_every < 0:
            raise ValueError("interval and warn_threshold must be positive, warn_every >= 0")
        self._metrics = metrics
        self.interval = interval
        self.warn_threshold = warn_threshold
        self._warn_every = warn_every
        self._clock = clock
        self._open_core_wait = open_core_wait
        self._last_warning: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = LoopLagStats()

    def record(self, lag: float, core_wait: float | None = None) -> None:
        """Account one measured lag (negative values, from timer rounding, count as 0).

        `core_wait`: seconds the loop's thread waited for a CPU in the sample's period (its
        sleep and its lag), where that is counted.
        """
        lag = max(lag, 0.0)
        stats = self.stats
        stats.samples += 1
        stats.last = lag
        if self._metrics is not None:
            self._metrics.event_loop_lag.observe(lag)
        if lag > stats.max:
            stats.max = lag
            if self._metrics is not None:
                self._metrics.event_loop_lag_max.set(lag)
        if core_wait is not None:
            core_wait = max(core_wait, 0.0)
            held = max(lag - core_wait, 0.0)
            stats.core_wait = (stats.core_wait or 0.0) + core_wait
            stats.max_held = max(stats.max_held or 0.0, held)
            if self._metrics is not None:
                self._metrics.event_loop_core_wait.inc(core_wait)
        if lag > self.warn_threshold:
            stats.over_threshold += 1
            now = self._clock()
            if self._last_warning is None or now - self._last_warning >= self._warn_every:
                self._last_warning = now
                extra: dict[str, Any] = {
                    "lag_ms": round(lag * 1000, 1),
                    "threshold_ms": round(self.warn_threshold * 1000, 1),
                    "over_threshold_samples": stats.over_threshold,
                }
                if core_wait is not None:
                    extra["core_wait_ms"] = round(core_wait * 1000, 1)
                logger.warning("event loop lag over threshold", extra=extra)

    def snapshot(self) -> dict[str, Any]:
        """The figures shown in /readyz details."""
        return self.stats.to_json(self.warn_threshold)

    async def _run(self) -> None:
        clock = self._clock
        reader = self._open_core_wait()  # here, on the loop's thread: the thread it reads
        waited = 0.0 if reader is None else reader.seconds()
        try:
            while True:
                started = clock()
                await asyncio.sleep(self.interval)
                lag = clock() - started - self.interval
                if reader is None:
                    self.record(lag)
                    continue
                waited_before, waited = waited, reader.seconds()
                self.record(lag, waited - waited_before)
        finally:
            if reader is not None:
                reader.close()

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        """Stop sampling and wait for the task to end."""
        await cancel_and_wait(self._task)
        self._task = None
