"""A bulkhead: at most N calls in flight to one signer, a short bounded queue, then shedding.

Like Envoy's `max_requests` / `max_pending_requests`: when the signer's capacity is used and
the queue is full (or a queued call waited too long), the call is refused at once, so an
overload turns into fast 503s instead of a growing pile of waiting requests.
"""

from __future__ import annotations

import asyncio
from collections import deque


class BulkheadFull(Exception):
    """Raised when a call is shed: no free slot and the queue is full, or the wait ran out."""

    def __init__(self, signer: str, *, reason: str, retry_after: float) -> None:
        """Name the signer and why (``"queue-full"`` or ``"wait-timeout"``)."""
        super().__init__(f"{signer}: bulkhead full ({reason})")
        self.signer = signer
        self.reason = reason
        self.retry_after = retry_after


class Bulkhead:
    """Bounds the calls in flight to one signer, with a FIFO queue of bounded length and wait."""

    def __init__(
        self,
        signer: str,
        *,
        max_in_flight: int,
        max_pending: int,
        max_wait: float,
    ) -> None:
        """Configure the bounds."""
        self.signer = signer
        self.max_in_flight = max_in_flight
        self.max_pending = max_pending
        self.max_wait = max_wait
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._in_flight

    @property
    def pending(self) -> int:
        """Calls waiting for a slot now."""
        return sum(1 for w in self._waiters if not w.done())

    def _shed(self, reason: str) -> BulkheadFull:
        # A slot frees within about one signer call; one second is the smallest Retry-After.
        return BulkheadFull(self.signer, reason=reason, retry_after=1.0)

    async def acquire(self, *, wait_limit: float | None = None) -> None:
        """Take a slot, waiting at most `max_wait` (and `wait_limit`); raise BulkheadFull."""
        if self._in_flight < self.max_in_flight and not self._waiters:
            self._in_flight += 1
            return
        wait = self.max_wait if wait_limit is None else min(self.max_wait, wait_limit)
        if self.pending >= self.max_pending or wait <= 0:
            raise self._shed("queue-full")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            self._give_back_if_granted(waiter)
            raise self._shed("wait-timeout") from None
        except asyncio.CancelledError:
            self._give_back_if_granted(waiter)
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _give_back_if_granted(self, waiter: asyncio.Future[None]) -> None:
        # The slot may have been handed over in the same loop turn as the timeout or the
        # cancellation; pass it on, or it would leak.
        if waiter.done() and not waiter.cancelled():
            self.release()

    def release(self) -> None:
        """Free a slot: hand it straight to the oldest waiter, else count it free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1

    def slot(self, *, wait_limit: float | None = None) -> _Slot:
        """``async with``: hold a slot for the block."""
        return _Slot(self, wait_limit)


class _Slot:
    """`Bulkhead.slot`'s block, held for a signer call's whole round trip.

    A class, not an ``asynccontextmanager``: a generator, its frame and a wrapper less per
    call in flight.
    """

    __slots__ = ("_bulkhead", "_wait_limit")

    def __init__(self, bulkhead: Bulkhead, wait_limit: float | None) -> None:
        self._bulkhead = bulkhead
        self._wait_limit = wait_limit

    async def __aenter__(self) -> None:
        await self._bulkhead.acquire(wait_limit=self._wait_limit)

    async def __aexit__(self, *exc_info: object) -> None:
        self._bulkhead.release()
