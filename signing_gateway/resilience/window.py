"""Counters over a sliding time window, kept in one-second buckets (constant memory)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable


class SlidingCounts:
    """Sums of a few named counts over the last `window` seconds of `clock` time."""

    def __init__(self, window: float, *, fields: int, clock: Callable[[], float]) -> None:
        """Keep `fields` counts per second, for `window` seconds."""
        self._window = max(1, math.ceil(window))
        self._fields = fields
        self._clock = clock
        self._buckets: deque[tuple[int, list[int]]] = deque()

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window:
            self._buckets.popleft()

    def add(self, field: int) -> int:
        """Count one in count number `field` now; the second it counts in (see `take_back`)."""
        second = math.floor(self._clock())
        self._trim(second)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, [0] * self._fields))
        self._buckets[-1][1][field] += 1
        return second

    def take_back(self, field: int, second: int) -> None:
        """Undo an `add` that counted in `second`; nothing once that second left the window."""
        for at, counts in reversed(self._buckets):
            if at == second:
                counts[field] -= 1
                return

    def totals(self) -> list[int]:
        """Every count summed over the window."""
        self._trim(math.floor(self._clock()))
        sums = [0] * self._fields
        for _, counts in self._buckets:
            for index, value in enumerate(counts):
                sums[index] += value
        return sums

    def clear(self) -> None:
        """Forget everything."""
        self._buckets.clear()
