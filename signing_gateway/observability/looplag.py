"""Event-loop lag: how late the loop wakes a timer, measured all the time in the background.

A task sleeps ``interval`` seconds, again and again, and records by how much each wake-up came
late. On an idle loop that is well under a millisecond; anything that holds the loop (a blocking
call, a long CPU burst, a C extension that does not release it) shows up as lag, in production,
where no test can see it. Lag goes to ``GatewayMetrics.event_loop_lag`` (histogram) and
``event_loop_lag_max`` (gauge), to ``/readyz`` details, and to a warning log when it passes a
threshold (at most one warning per ``warn_every`` seconds, so a stalled loop is not made worse
by its own log storm).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

__all__ = ["LoopLagMonitor", "LoopLagStats"]


@dataclass(slots=True)
class LoopLagStats:
    """What the monitor has seen since it started."""

    samples: int = 0
    last: float = 0.0
    max: float = 0.0
    over_threshold: int = 0

    def to_json(self, threshold: float) -> dict[str, Any]:
        """The /readyz view, in seconds."""
        return {
            "lagSeconds": round(self.last, 6),
            "maxLagSeconds": round(self.max, 6),
            "warnThresholdSeconds": threshold,
            "samples": self.samples,
            "samplesOverThreshold": self.over_threshold,
        }


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
    ) -> None:
        """Sample every `interval` s; warn when one wake-up is later than `warn_threshold` s."""
        if interval <= 0 or warn_threshold <= 0 or warn_every < 0:
            raise ValueError("interval and warn_threshold must be positive, warn_every >= 0")
        self._metrics = metrics
        self.interval = interval
        self.warn_threshold = warn_threshold
        self._warn_every = warn_every
        self._clock = clock
        self._last_warning: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = LoopLagStats()

    def record(self, lag: float) -> None:
        """Account one measured lag (negative values, from timer rounding, count as 0)."""
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
        if lag > self.warn_threshold:
            stats.over_threshold += 1
            now = self._clock()
            if self._last_warning is None or now - self._last_warning >= self._warn_every:
                self._last_warning = now
                logger.warning(
                    "event loop lag over threshold",
                    extra={
                        "lag_ms": round(lag * 1000, 1),
                        "threshold_ms": round(self.warn_threshold * 1000, 1),
                        "over_threshold_samples": stats.over_threshold,
                    },
                )

    def snapshot(self) -> dict[str, Any]:
        """The figures shown in /readyz details."""
        return self.stats.to_json(self.warn_threshold)

    async def _run(self) -> None:
        clock = self._clock
        while True:
            started = clock()
            await asyncio.sleep(self.interval)
            self.record(clock() - started - self.interval)

    def start(self) -> None:
        """Start sampling on the running loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag-monitor")

    async def stop(self) -> None:
        """Stop sampling and wait for the task to end."""
        await cancel_and_wait(self._task)
        self._task = None
