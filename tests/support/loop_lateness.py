"""How late the running event loop has been: the allowance a timing bound needs on a busy machine.

A test that bounds, on the loop's clock, how long something took fails whenever the loop is
held for reasons not its own: the process waiting for a core, a stopped or throttled VM, a
collection of the heap. Every timer due then fires late by as much. `LoopLateness` measures
exactly that, in a background task that sleeps `INTERVAL` again and again and adds up by how
much each wake-up came late (past `JITTER`, a wake-up's ordinary noise). A bound written as
``took < limit + lateness.since(mark)`` is as tight as ``limit`` on an idle loop, and still
fails for code that is slow by itself.
"""

from __future__ import annotations

import asyncio
from typing import Self

from signing_gateway.runtime.tasks import cancel_and_wait

#: The sampling period (seconds): a hold shorter than this may go unseen.
INTERVAL = 0.005
#: Lateness of one wake-up not counted: the selector's rounding, a few callbacks before it.
JITTER = 0.002


class LoopLateness:
    """The loop's total lateness since the block started (module doc); enter it on that loop."""

    def __init__(self) -> None:
        self._late = 0.0
        self._due = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._due = loop.time() + INTERVAL
            await asyncio.sleep(INTERVAL)  # sampling period, not a wait for an event
            late = loop.time() - self._due
            if late > JITTER:
                self._late += late

    def total(self) -> float:
        """Seconds the loop was late so far, a wake-up overdue right now included."""
        overdue = asyncio.get_running_loop().time() - self._due
        return self._late + (overdue if overdue > JITTER else 0.0)

    def since(self, mark: float) -> float:
        """Seconds the loop was late since `total()` read `mark`, plus a hold it may not see."""
        return self.total() - mark + INTERVAL

    async def __aenter__(self) -> Self:
        self._due = asyncio.get_running_loop().time()
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)  # sampling from here on
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        await cancel_and_wait(self._task)
