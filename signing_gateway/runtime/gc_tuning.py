"""Garbage-collector pauses: measured (``gc.callbacks``) and kept short (`GcSchedule`).

Why: with ~1,000 requests in flight the gateway holds ~340,000 live container objects
(coroutines, closure cells, bound methods, pydantic models, headers: ~340 per request). A
collection holds the event loop for as long as it walks its generations, ~1 µs per object.

CPython starts a collection when allocations minus deallocations pass ``threshold0``. Under
steady load that count barely moves (requests that end free old objects as fast as new ones
allocate), so the young generation grows to 40,000-120,000 objects before a collection walks it,
and every tenth collection also walks everything the last ten left behind: bench S1 measured
pauses of 31-130 ms and 65-214 ms. `GcSchedule` runs the young collections on a timer instead,
so each walks only what the last tick allocated and is still alive. `gc_threshold0` is the
count-based alternative (a larger ``threshold0``: rarer, longer pauses), used when the schedule
is switched off. The collector is never switched off.

`GcPauses` times every collection (one callback at start and at stop, two clock reads) and
keeps count, total and maximum per generation for ``/readyz`` and the bench, with the number
of objects each generation's collections found unreachable (reference cycles).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from signing_gateway.runtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

__all__ = ["BACKSTOP_THRESHOLDS", "GcPauses", "GcSchedule", "YoungMode", "gc_threshold0"]

#: What a tick does with the young objects: walk them (``collect``) or freeze them.
YoungMode = Literal["collect", "freeze"]

#: Thresholds while `GcSchedule` runs. Allocation still triggers a collection if the schedule's
#: ticks stop (a loop held for seconds), but only of generation 0: the schedule's own
#: generation-1 collections raise generation 2's count, and with Python's thresholds (10, 10)
#: the next allocation-triggered collection would be a full one.
BACKSTOP_THRESHOLDS = (20_000, 4, 1_000_000)


@dataclass(slots=True)
class _Generation:
    collections: int = 0
    total: float = 0.0
    max: float = 0.0
    collected: int = 0  # unreachable objects found: cyclic garbage


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
        generation.collected += int(info.get("collected", 0))

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
                    "collected": g.collected,
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


class GcSchedule:
    """Collections on a timer: young ones every tick, full ones at a quiet moment.

    Every `young_interval` seconds one tick collects generation 0: what the last tick
    allocated and is still alive (~10 ms of work at 1,000 requests in flight, bench S1). Every
    `middle_every`-th tick collects generation 1 as well, so objects that survive a tick
    (those of requests waiting on a signer) move on to generation 2 within a fraction of a
    second. There only a full collection walks them, and most are freed by reference counting
    when their request ends, long before one.

    The default `middle_every` is 1: each tick collects generations 0 and 1 together, so a
    survivor is walked once before it reaches generation 2, not once per generation. Bench S1
    (1,000 clients, 1 s signer, 20 s, two runs each, 2026-12-02): collector time 1.26 and
    1.50 s against 1.87 and 2.04 s with generation 1 every second tick, longest pause 11 ms
    against 24-30 ms.

    A full collection walks every live object, those of all requests in flight too (~0.3 s at
    1,000 in flight on the bench machine). It finds the reference cycles the young collections
    missed, so one is due every `full_interval` seconds. It waits for a tick with at most
    `quiet_in_flight` requests in flight, when it is short, but runs regardless once a further
    `full_interval` has passed: under saturation, cyclic garbage still goes within
    2 x `full_interval`.

    With `young="freeze"` a tick walks nothing: ``gc.freeze()`` moves every tracked object to
    the permanent generation (a constant-time list splice), so objects of requests in flight are
    never walked while they live, and reference counting frees them when their request ends.
    Reference cycles among them are then found only by the full collections, which unfreeze,
    collect everything and freeze again (start-up objects included: ~90,000 objects, 32-46 ms
    on the bench machine). Bench S1 measured the young collections at ~4 % of the gateway's
    CPU while finding 58 unreachable objects in ~8,000 requests, and none per request on the
    signer-failure (500) and invalid-request (422) paths: the cycles they exist to find are
    not made by serving (docs/benchmarks.md). The ``collected`` counts in `/readyz` ``gc`` show
    if that changes.

    While running, the allocation-count trigger stays on as a backstop (`BACKSTOP_THRESHOLDS`).
    """

    def __init__(
        self,
        *,
        young_interval: float,
        middle_every: int,
        full_interval: float,
        quiet_in_flight: int,
        in_flight: Callable[[], int],
        young: YoungMode = "collect",
        collect: Callable[[int], object] = gc.collect,
        freeze: Callable[[], object] = gc.freeze,
        unfreeze: Callable[[], object] = gc.unfreeze,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Tick every `young_interval` s; `in_flight()` says how busy the gateway is."""
        if young_interval <= 0 or middle_every < 1 or full_interval < young_interval:
            raise ValueError(
                "young_interval must be positive, middle_every >= 1, "
                "full_interval >= young_interval"
            )
        if young not in ("collect", "freeze"):
            raise ValueError(f"young must be 'collect' or 'freeze', not {young!r}")
        self.young = young
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._frozen_ticks = 0
        self._froze = False  # whether a tick froze objects that `stop` has not unfrozen
        self.young_interval = young_interval
        self.middle_every = middle_every
        self.full_interval = full_interval
        self.quiet_in_flight = quiet_in_flight
        self._in_flight = in_flight
        self._collect = collect
        self._clock = clock
        self._ticks = 0
        self._last_full = clock()
        self._full = {"quiet": 0, "overdue": 0}
        self._saved_thresholds: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def tick(self) -> int | None:
        """Run this tick's collection; returns the generation collected (None: froze)."""
        self._ticks += 1
        now = self._clock()
        since_full = now - self._last_full
        reason = None
        if since_full >= 2 * self.full_interval:
            reason = "overdue"
        elif since_full >= self.full_interval and self._in_flight() <= self.quiet_in_flight:
            reason = "quiet"
        if reason is None:
            if self.young == "freeze":
                self._froze = True  # first: a failing freeze may have moved some
                self._freeze()
                self._frozen_ticks += 1
                return None
            generation = 1 if self._ticks % self.middle_every == 0 else 0
            self._collect(generation)
            return generation
        if self.young == "freeze":
            self._unfreeze()  # start-up objects too: the full collection walks everything
            try:
                self._collect(2)
            finally:
                self._froze = True
                self._freeze()
        else:
            self._collect(2)
        self._full[reason] += 1
        self._last_full = now
        return 2

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.young_interval)
            try:
                self.tick()
            except Exception:  # a failing collection callback must not end the schedule
                logger.exception("scheduled garbage collection failed")

    def start(self) -> None:
        """Install the backstop thresholds and start ticking on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._saved_thresholds = gc.get_threshold()
        gc.set_threshold(*BACKSTOP_THRESHOLDS)
        self._last_full = self._clock()
        self._task = asyncio.create_task(self._run(), name="gc-schedule")

    async def stop(self) -> None:
        """Stop ticking, restore the thresholds found at start, and unfreeze what ticks froze.

        Frozen objects are never walked again, not even by a full collection, until unfrozen:
        left so, those of requests and of a whole app (the tests build hundreds) would keep
        any reference cycle among them for the life of the process. ``gc.unfreeze()`` takes
        everything out of the permanent generation, what was frozen before start too, as the
        full collections already do.
        """
        if self._task is None:
            return
        await cancel_and_wait(self._task)
        self._task = None
        if self._froze:
            self._unfreeze()
            self._froze = False
        if self._saved_thresholds is not None:
            gc.set_threshold(*self._saved_thresholds)
            self._saved_thresholds = None

    def snapshot(self) -> dict[str, Any]:
        """The /readyz view: the schedule, and the full collections it ran and why."""
        return {
            "young": self.young,
            "frozenTicks": self._frozen_ticks,
            "youngIntervalSeconds": self.young_interval,
            "middleEvery": self.middle_every,
            "fullIntervalSeconds": self.full_interval,
            "quietInFlight": self.quiet_in_flight,
            "ticks": self._ticks,
            "fullCollections": dict(self._full),
            "secondsSinceFull": round(self._clock() - self._last_full, 3),
        }
