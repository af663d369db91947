"""The slow-callback detector itself: it must catch a callback that computes past its threshold."""

from __future__ import annotations

import asyncio
import time

from tests.load.conftest import SlowCallbacks


def _compute(cpu_seconds: float) -> None:
    """Hold the loop thread busy for `cpu_seconds` of its own CPU time (no sleeping).

    Counted in the thread's CPU time, not wall time: on a loaded machine a wall-clock spin
    gets only part of a core, and would burn less CPU than the detector's threshold.
    """
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass


async def test_a_callback_that_computes_past_the_threshold_is_reported(
    slow_callback_detector: SlowCallbacks,
) -> None:
    """A 150 ms CPU burst in a task step is one slow callback, named after its task.

    The wall-time limit is lifted so that the report can only come from the CPU-time check,
    however long the burst waits for a core on a busy machine.
    """
    slow_callback_detector.wall_limit = float("inf")
    slow_callback_detector.watching = True

    async def hog() -> None:
        _compute(0.15)

    await asyncio.create_task(hog(), name="hog")
    slow_callback_detector.watching = False
    assert len(slow_callback_detector.slow) == 1, slow_callback_detector.summary()
    caught = slow_callback_detector.slow[0]
    assert caught.cpu_seconds > 0.1
    assert "hog" in caught.handle


async def test_short_callbacks_are_counted_not_reported(
    slow_callback_detector: SlowCallbacks,
) -> None:
    """Many 1 ms steps are all timed and none is reported."""
    slow_callback_detector.watching = True
    for _ in range(20):
        _compute(0.001)
        await asyncio.sleep(0)
    slow_callback_detector.watching = False
    # The step that set `watching` was already running, so it goes untimed.
    assert slow_callback_detector.callbacks >= 19
    assert slow_callback_detector.slow == []
    assert 0.0005 < slow_callback_detector.longest_cpu < 0.1
