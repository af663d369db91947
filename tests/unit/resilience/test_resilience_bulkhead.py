"""The bulkhead: bounded in-flight calls, a bounded FIFO queue, shedding at once."""

from __future__ import annotations

import asyncio
import time

import pytest

from signing_gateway.resilience.bulkhead import Bulkhead, BulkheadFull


def _bulkhead(max_in_flight=2, max_pending=1, max_wait=1.0) -> Bulkhead:
    return Bulkhead("eu", max_in_flight=max_in_flight, max_pending=max_pending, max_wait=max_wait)


async def test_slots_up_to_the_bound_are_granted_at_once():
    """Calls up to max_in_flight get a slot without waiting."""
    bulkhead = _bulkhead()
    await bulkhead.acquire()
    await bulkhead.acquire()
    assert bulkhead.in_flight == 2


async def test_full_queue_sheds_immediately():
    """With every slot taken and the queue full, the next call is refused at once."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=1)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    assert bulkhead.pending == 1
    started = time.monotonic()
    with pytest.raises(BulkheadFull) as info:
        await bulkhead.acquire()
    assert time.monotonic() - started < 0.05
    assert info.value.reason == "queue-full"
    assert info.value.retry_after == 1  # a slot frees within about one signer call
    bulkhead.release()
    await waiter
    assert bulkhead.in_flight == 1


async def test_waiter_gets_the_released_slot_in_fifo_order():
    """A released slot goes to the oldest waiter, and the count stays at the bound."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=2)
    await bulkhead.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        await bulkhead.acquire()
        order.append(n)

    first = asyncio.create_task(wait(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait(2))
    await asyncio.sleep(0)
    bulkhead.release()
    await first
    assert order == [1]
    assert bulkhead.in_flight == 1
    bulkhead.release()
    await second
    assert order == [1, 2]


async def test_wait_is_bounded_by_max_wait_and_by_the_callers_limit():
    """A queued call is shed after min(max_wait, wait_limit) seconds."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=5, max_wait=5.0)
    await bulkhead.acquire()
    started = time.monotonic()
    with pytest.raises(BulkheadFull) as info:
        await bulkhead.acquire(wait_limit=0.05)
    assert 0.04 <= time.monotonic() - started < 1.0
    assert info.value.reason == "wait-timeout"
    assert bulkhead.pending == 0


async def test_cancelled_waiter_leaks_no_slot():
    """A waiter cancelled (even right after being handed a slot) gives the slot back."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=5)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.in_flight == 0
    await bulkhead.acquire()
    assert bulkhead.in_flight == 1


async def test_a_waiter_timing_out_as_it_is_handed_a_slot_leaks_no_slot():
    """A slot handed over in the loop turn the wait runs out is passed on, not lost."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=5)
    await bulkhead.acquire()
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(bulkhead.acquire(wait_limit=0.05))
    await asyncio.sleep(0)
    assert bulkhead.pending == 1

    def held_loop_turn() -> None:
        time.sleep(0.1)  # past the end of the wait: its timer runs in the next turn...
        loop.call_soon(bulkhead.release)  # ...after this release, which hands the slot over

    loop.call_soon(held_loop_turn)
    with pytest.raises(BulkheadFull) as info:
        await waiter
    assert info.value.reason == "wait-timeout"
    assert bulkhead.in_flight == 0
    await bulkhead.acquire()  # the slot is free for the next call
    assert bulkhead.in_flight == 1


async def test_zero_pending_means_no_queue():
    """With max_pending 0 a full bulkhead never lets a call wait."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=0)
    async with bulkhead.slot():
        with pytest.raises(BulkheadFull):
            await bulkhead.acquire()
    assert bulkhead.in_flight == 0


@pytest.mark.parametrize(
    ("max_wait", "wait_limit"), [(0.0, None), (5.0, 0.0)], ids=["max_wait", "wait_limit"]
)
async def test_no_time_to_wait_means_no_queue(max_wait, wait_limit):
    """With no wait allowed (max_wait or the caller's limit 0) a full bulkhead sheds at once."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=5, max_wait=max_wait)
    await bulkhead.acquire()
    with pytest.raises(BulkheadFull) as info:
        await bulkhead.acquire(wait_limit=wait_limit)
    assert info.value.reason == "queue-full"
    assert bulkhead.pending == 0


async def test_a_timed_out_waiter_gives_back_no_slot_it_never_held():
    """A queued call shed after its wait leaves the holder's slot counted: in flight stays 1."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=5, max_wait=5.0)
    await bulkhead.acquire()
    with pytest.raises(BulkheadFull) as info:
        await bulkhead.acquire(wait_limit=0.05)
    assert info.value.reason == "wait-timeout"
    assert bulkhead.in_flight == 1
    assert not bulkhead._waiters  # nothing kept for a call that left the queue
    with pytest.raises(BulkheadFull):  # the slot is still taken, so the next call waits too
        await bulkhead.acquire(wait_limit=0.01)
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_a_waiter_cancelled_before_any_grant_gives_back_no_slot():
    """A queued call cancelled while still waiting leaves the holder's slot counted."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=5)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    assert bulkhead.pending == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.in_flight == 1
    assert bulkhead.pending == 0
    assert not bulkhead._waiters  # nothing kept for a call that left the queue
    bulkhead.release()
    assert bulkhead.in_flight == 0


async def test_a_cancelled_waiter_frees_its_place_in_the_queue_at_once():
    """The queue's only place is free as soon as its waiter is cancelled, before it unwinds."""
    bulkhead = _bulkhead(max_in_flight=1, max_pending=1)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    assert bulkhead.pending == 0
    asyncio.get_running_loop().call_soon(bulkhead.release)
    await bulkhead.acquire()  # queued in the place the cancelled call left, then served
    assert bulkhead.in_flight == 1
    with pytest.raises(asyncio.CancelledError):
        await waiter
