"""Retry building blocks: exponential backoff with full jitter, and a Finagle-style budget.

The budget caps retries at `ratio` of the first attempts seen in the last `window` seconds,
plus a small floor (`min_per_second` times the window) so a quiet gateway can still retry at all.
When a signer is failing, retries therefore add at most ~20 % load instead of multiplying it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from signing_gateway.resilience.window import SlidingCounts

_REQUESTS, _RETRIES = 0, 1


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter delay before retry `attempt` (0-based): uniform in [0, min(cap, base * 2^n)]."""
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return rng.uniform(0.0, ceiling)


class RetryBudget:
    """How many retries one signer may still take, over a sliding window."""

    def __init__(
        self,
        *,
        ratio: float,
        min_per_second: float,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`ratio` of recent first attempts may be retried, plus `min_per_second` per second."""
        self._ratio = ratio
        self._floor = min_per_second * window_seconds
        self._counts = SlidingCounts(window_seconds, fields=2, clock=clock)

    def deposit(self) -> None:
        """Count one first attempt (each one earns `ratio` of a retry)."""
        self._counts.add(_REQUESTS)

    def balance(self) -> float:
        """Retries still allowed now."""
        requests, retries = self._counts.totals()
        return self._floor + self._ratio * requests - retries

    def withdraw(self) -> int | None:
        """Spend one retry if the budget allows it: the second it counts in, for `refund`.

        None means do not retry.
        """
        if self.balance() < 1:
            return None
        return self._counts.add(_RETRIES)

    def refund(self, second: int) -> None:
        """Give back a retry spent in `second` (from `withdraw`) that was never sent."""
        self._counts.take_back(_RETRIES, second)
