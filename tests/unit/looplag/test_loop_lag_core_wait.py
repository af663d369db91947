"""Lag from a loop starved of a CPU against lag from a loop held by its own work, on real threads.

Each monitor runs on a thread of its own with its own event loop, so the thread can be given a
CPU and a scheduling policy for the test and then thrown away: the test process keeps its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from signing_gateway.observability.looplag import LoopLagMonitor, ThreadCoreWait
from signing_gateway.observability.metrics import GatewayMetrics

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="needs Linux's per-thread CPU affinity"
)

INTERVAL = 0.01
HOLD = 0.3
STARVED_FOR = 0.5


def _sample(metrics: GatewayMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def _wait_for(predicate: Callable[[], object], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)  # polling another thread's progress from a plain test


@contextmanager
def _sampling_thread(
    monitor: LoopLagMonitor, setup: Callable[[], None] = lambda: None
) -> Iterator[asyncio.AbstractEventLoop]:
    """`monitor` sampling on a new thread's loop (`setup` run there first) until the block ends.

    Yields that loop, once it has 3 samples; re-raises at the end what the thread raised.
    """
    started: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    failed: list[BaseException] = []

    async def sample() -> None:
        monitor.start()
        try:
            stop = asyncio.Event()
            started.append((asyncio.get_running_loop(), stop))
            await stop.wait()
        finally:
            await monitor.stop()

    def body() -> None:
        try:
            setup()
            asyncio.run(sample())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread, raised there
            failed.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    try:
        _wait_for(lambda: failed or (started and monitor.stats.samples >= 3))
        if failed:
            raise failed[0]
        yield started[0][0]
    finally:
        if started:
            loop, stop = started[0]
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
    assert not thread.is_alive()
    if failed:
        raise failed[0]


@contextmanager
def _busy_processes(cpu: int, count: int) -> Iterator[None]:
    """`count` processes spinning on `cpu` until the block ends."""
    spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nprint(flush=True)\nwhile True: pass"
    spinners = [
        subprocess.Popen(  # noqa: S603 - our own interpreter, fixed script
            [sys.executable, "-c", spin], stdout=subprocess.PIPE
        )
        for _ in range(count)
    ]
    try:
        for spinner in spinners:
            assert spinner.stdout is not None
            spinner.stdout.readline()  # pinned and spinning
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
            assert spinner.stdout is not None
            spinner.stdout.close()


def test_the_loops_own_thread_is_read_on_linux() -> None:
    """On Linux the wait is counted: a gateway there never reports it as unknown."""
    reader = ThreadCoreWait.open()
    assert reader is not None
    try:
        assert reader.seconds() >= 0
    finally:
        reader.close()


def test_a_loop_starved_of_a_cpu_is_lag_it_waited_for_not_lag_it_held() -> None:
    """Two busy processes on the loop's only CPU: its lag is time waiting for that CPU.

    The loop's thread is made `SCHED_IDLE`, so the busy processes run first whenever they can,
    as a pod's would when its CPU quota is spent or its node is overcommitted.
    """
    cpu = min(os.sched_getaffinity(0))
    metrics = GatewayMetrics()
    monitor = LoopLagMonitor(metrics, interval=INTERVAL, warn_threshold=10)

    def starve() -> None:
        os.sched_setaffinity(0, {cpu})  # this thread only (Linux: 0 is the calling thread)
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    with _sampling_thread(monitor, starve):
        with _busy_processes(cpu, count=2):
            time.sleep(STARVED_FOR)  # the busy processes hold the loop's CPU meanwhile
        seen = monitor.stats.samples
        _wait_for(lambda: monitor.stats.samples >= seen + 3)  # the late wake-ups recorded
    lag = _sample(metrics, "gateway_event_loop_lag_seconds_sum")
    waited = _sample(metrics, "gateway_event_loop_core_wait_seconds_total")
    assert lag > 0.02, monitor.stats  # the busy processes made the loop late
    assert waited >= 0.8 * lag, monitor.stats
    assert monitor.stats.max_held is not None
    assert monitor.stats.max_held < 0.5 * monitor.stats.max, monitor.stats


def test_a_loop_held_by_its_own_work_is_lag_it_held() -> None:
    """300 ms of CPU work on the loop, however long it waits for a CPU besides: 300 ms held."""
    monitor = LoopLagMonitor(interval=INTERVAL, warn_threshold=10)
    done = threading.Event()

    def hold() -> None:
        end = time.thread_time() + HOLD  # the thread's own CPU time, not the wall clock's
        while time.thread_time() < end:
            pass
        done.set()

    with _sampling_thread(monitor) as loop:
        loop.call_soon_threadsafe(hold)
        _wait_for(done.is_set)
        seen = monitor.stats.samples
        _wait_for(lambda: monitor.stats.samples >= seen + 1)  # the held wake-up recorded
    # The timer fell due at most an interval into the work.
    assert monitor.stats.max >= HOLD - INTERVAL, monitor.stats
    assert monitor.stats.max_held is not None
    assert monitor.stats.max_held >= HOLD - 0.05, monitor.stats
