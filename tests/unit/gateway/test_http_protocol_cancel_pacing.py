"""Requests whose callers left are cancelled a few per loop turn, not all in one."""

from __future__ import annotations

import asyncio

from signing_gateway.runtime.http_protocol import CANCELS_PER_TURN, _canceller


async def _served_forever() -> None:
    await asyncio.Event().wait()


async def test_callers_leaving_together_are_cancelled_a_share_per_loop_turn():
    """Pin that many cancellations at once are spread over loop turns, all of them in the end.

    A load balancer closing its connections at once had every request's unwinding run in one
    loop turn (about 0.2 ms each): bench S1's rounds, whose 1,000 connections close together,
    saw `/healthz` wait up to 202 ms for it, against 61 ms before callers were cancelled.
    """
    tasks = [asyncio.create_task(_served_forever()) for _ in range(3 * CANCELS_PER_TURN + 5)]
    await asyncio.sleep(0)  # every task started, waiting
    canceller = _canceller(asyncio.get_running_loop())
    for task in tasks:
        canceller.cancel(task)
    cancelling: list[int] = []
    while len(cancelling) < 10 and not all(task.done() for task in tasks):
        await asyncio.sleep(0)
        cancelling.append(sum(1 for task in tasks if task.cancelling() or task.cancelled()))
    share = CANCELS_PER_TURN
    assert cancelling[:4] == [share, 2 * share, 3 * share, len(tasks)]
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_ended_before_its_turn_is_left_as_it_is():
    """A request that finished between its caller's leaving and its turn is not touched."""
    finished = asyncio.create_task(asyncio.sleep(0, result="answered"))
    canceller = _canceller(asyncio.get_running_loop())
    await finished
    canceller.cancel(finished)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert finished.result() == "answered"
