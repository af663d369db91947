"""DrainController: a second signal (`stop_now`) cuts the drain's wait short."""

from __future__ import annotations

import asyncio

import pytest

from signing_gateway.resilience.shutdown import DrainController
from tests.support.polling import until


async def _held(controller: DrainController, started: asyncio.Event) -> str:
    """A request in flight under the controller until its cancel scope expires."""
    scope = asyncio.timeout(None)
    controller.track(scope)
    try:
        async with scope:
            started.set()
            await asyncio.Event().wait()  # a signer that never answers
    except TimeoutError:
        return "cancelled"
    finally:
        controller.untrack(scope)
    return "finished"  # pragma: no cover - never finishes on its own


@pytest.mark.parametrize("when", ["while waiting", "before the drain runs"])
async def test_stop_now_cancels_what_is_in_flight_without_waiting_for_the_timeout(when):
    """Whether it comes during the drain's wait or before its task ran: cancelled at once."""
    controller = DrainController(drain_timeout=30, cancel_grace=30)
    started = asyncio.Event()
    request = asyncio.create_task(_held(controller, started))
    await started.wait()
    drain = asyncio.create_task(controller.drain())
    if when == "while waiting":
        await until(lambda: controller.draining)  # begun, so waiting (in the same step)
        assert not drain.done()
    controller.stop_now()
    async with asyncio.timeout(1):
        assert await drain == 1
        assert await request == "cancelled"
    assert controller.in_flight == 0
    assert controller.draining
