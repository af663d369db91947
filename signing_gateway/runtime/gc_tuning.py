"""Garbage-collector pauses: measured (``gc.callbacks``) and bounded (generation-0 threshold).

Why: with ~1,000 requests in flight the gateway holds hundreds of thousands of live container
objects (requests, coroutines, pydantic models, headers). CPython starts a generation-0
collection every ``threshold0`` net allocations (700 by default), and every tenth of those
a generation-1 collection, and so on: at that churn the collector runs hundreds of times a
second, and each older-generation collection walks everything that survived, holding the event
loop meanwhile. A larger ``threshold0`` makes collections rarer; the young generation they walk
grows, but short-lived request objects are mostly freed by reference counting before any
collection sees them, so total GC time drops. Memory stays bounded: cycles are still collected,
just in larger batches. The collector is never switched off.

`GcPauses` times every collection (one callback at start and at stop, two clock reads) and
keeps count, total and maximum per generation for ``/readyz`` and the bench.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GcPauses", "gc_threshold0"]


@dataclass(slots=True)
class _Generation:
    collections: int = 0
    total: float = 0.0
    max: float = 0.0


@dataclass
class GcPauses:
    """Counts and times the collector's pauses, per generation, while installed."""

    generations: list[_Generation] = field(default_factory=lambda: [_Generation() for _ in "012"])
    _started: float = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = self.generations[min(int(info.get("generation", 0)), 2)]
        generation.collections += 1
        generation.total += pause
        generation.max = max(generation.max, pause)

    def install(self) -> None:
        """Start timing collections (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        """Stop timing collections."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def snapshot(self) -> dict[str, Any]:
        """The /readyz view: per generation, collections, total and longest pause (seconds)."""
        return {
            "thresholds": list(gc.get_threshold()),
            **{
                f"gen{i}": {
                    "collections": g.collections,
                    "totalSeconds": round(g.total, 6),
                    "maxSeconds": round(g.max, 6),
                }
                for i, g in enumerate(self.generations)
            },
        }


@contextmanager
def gc_threshold0(value: int | None) -> Iterator[None]:
    """Set the collector's generation-0 threshold for the block; None leaves it as it is."""
    if value is None:
        yield
        return
    previous = gc.get_threshold()
    gc.set_threshold(value, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
