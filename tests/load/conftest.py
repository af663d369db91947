"""Load-test helpers: a time-based slow-callback detector for the running event loop.

blockbuster catches known blocking calls by name; it cannot see a C extension (or a long pure
CPU burst) that holds the loop. This detector times every callback the loop runs
(``asyncio.Handle._run``: task steps, I/O and timer callbacks), as asyncio's debug mode does
with ``slow_callback_duration``, but without debug mode's per-coroutine overhead. A watchdog
thread takes the loop thread's stack while a callback runs long, so a failure says where.

Each callback is timed twice: wall clock, and the loop thread's own CPU time. A callback that
computed for `threshold` seconds held the loop, whatever the machine; one whose wall time only
grew because the whole process waited for a core (a shared 2-core CI box running the client,
the fake signer and the gateway at once) is not the gateway's doing, so wall time alone counts
only past `wall_limit`, far beyond any scheduling hiccup.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest


@dataclass
class SlowCallback:
    """One callback that held the loop, and the loop thread's stack caught meanwhile."""

    seconds: float
    cpu_seconds: float
    handle: str
    stack: str

    def __str__(self) -> str:
        return (
            f"{self.seconds * 1000:.0f} ms ({self.cpu_seconds * 1000:.0f} ms CPU) in {self.handle}"
            f"\n{self.stack}"
        )


@dataclass
class SlowCallbacks:
    """Callbacks that held the loop longer than `threshold` seconds while `watching`."""

    threshold: float
    wall_limit: float = 0.25
    slow: list[SlowCallback] = field(default_factory=list)
    callbacks: int = 0
    longest: float = 0.0
    longest_cpu: float = 0.0
    longest_handle: str = ""
    watching: bool = False
    _running_since: float | None = None
    _stack: str = ""

    def report(self) -> str:
        """Every slow callback with its stack, for an assertion message."""
        return "\n\n".join(str(s) for s in self.slow)

    def summary(self) -> str:
        """The longest callback seen, for a failure message about something else."""
        return (
            f"{self.callbacks} callbacks; longest {self.longest * 1000:.1f} ms wall, "
            f"longest CPU {self.longest_cpu * 1000:.1f} ms, in {self.longest_handle}"
        )


def _describe(handle: asyncio.Handle) -> str:
    """Name the task behind a callback, else the handle."""
    owner = getattr(handle._callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {owner.get_name()} {getattr(coro, '__qualname__', coro)}"
    return repr(handle)[:300]


def _watch(record: SlowCallbacks, loop_thread: int, stop: threading.Event) -> None:
    """Catch the loop thread's stack once per callback that runs past half the threshold."""
    caught_for: float | None = None
    while not stop.wait(0.005):
        since = record._running_since
        if since is None or since == caught_for:
            continue
        if time.perf_counter() - since > record.threshold / 2:
            frame = sys._current_frames().get(loop_thread)
            if frame is not None:
                record._stack = "".join(traceback.format_stack(frame)[-12:])
                caught_for = since


@pytest.fixture
def slow_callback_detector() -> Iterator[SlowCallbacks]:
    """Time every event-loop callback (pure-Python asyncio loop) while `watching` is set."""
    record = SlowCallbacks(threshold=0.1)
    original = asyncio.Handle._run

    def timed_run(handle: asyncio.Handle) -> None:
        if not record.watching:
            original(handle)
            return
        started = record._running_since = time.perf_counter()
        cpu_started = time.thread_time()
        record._stack = ""
        try:
            original(handle)
        finally:
            record._running_since = None
            took = time.perf_counter() - started
            cpu = time.thread_time() - cpu_started
            record.callbacks += 1
            record.longest_cpu = max(record.longest_cpu, cpu)
            if took > record.longest:
                record.longest = took
                record.longest_handle = _describe(handle)
            if cpu > record.threshold or took > record.wall_limit:
                record.slow.append(SlowCallback(took, cpu, _describe(handle), record._stack))

    stop = threading.Event()
    watchdog = threading.Thread(
        target=_watch, args=(record, threading.get_ident(), stop), daemon=True
    )
    watchdog.start()
    asyncio.Handle._run = timed_run  # type: ignore[method-assign]
    try:
        yield record
    finally:
        asyncio.Handle._run = original  # type: ignore[method-assign]
        stop.set()
        watchdog.join(timeout=5)
