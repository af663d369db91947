"""DrainController cuts the drain's wait short on a second signal; DrainMiddleware answers cuts."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from signing_gateway.resilience.drain import AnswerCut, DrainController, DrainMiddleware
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


_SCOPE = {"type": "http", "path": "/v1/dcc", "headers": [], "state": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}  # pragma: no cover - never read


class Exchange:
    """One request through a `DrainMiddleware` to an app that hangs, its answer started or not."""

    def __init__(self, *, respond_first: bool) -> None:
        self.controller = DrainController(drain_timeout=0, cancel_grace=1)
        self.respond_first = respond_first
        self.in_app = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def _app(self, _scope: Any, _receive: Any, send: Any) -> None:
        if self.respond_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        self.in_app.set()
        await asyncio.Event().wait()  # a signer that never answers

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    async def serve(self) -> int:
        """Serve the request; then how many cancellations the serving task still has pending."""
        await DrainMiddleware(self._app, controller=self.controller)(_SCOPE, _receive, self._send)
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    def statuses(self) -> list[int]:
        return [m["status"] for m in self.sent if m["type"] == "http.response.start"]


async def test_a_request_cancelled_by_the_drain_is_answered_503():
    """At the drain timeout a request whose answer had not started is answered 503."""
    exchange = Exchange(respond_first=False)
    served = asyncio.create_task(exchange.serve())
    await exchange.in_app.wait()
    async with asyncio.timeout(1):
        assert await exchange.controller.drain() == 1
        assert await served == 0
    assert exchange.statuses() == [503]
    _assert_cancelled_answer(exchange.sent)


async def test_a_request_cut_by_the_drain_mid_answer_is_aborted_not_answered_again():
    """Its answer begun, nothing more is sent: `AnswerCut` has the server close the connection.

    (tests/unit/resilience/test_graceful_server.py shows what the caller then sees.)
    """
    exchange = Exchange(respond_first=True)
    served = asyncio.create_task(exchange.serve())
    await exchange.in_app.wait()
    async with asyncio.timeout(1):
        assert await exchange.controller.drain() == 1
        with pytest.raises(AnswerCut):
            await served
    assert exchange.statuses() == [200]
    assert exchange.controller.in_flight == 0


def _assert_cancelled_answer(sent: list[dict[str, Any]]) -> None:
    """Pin that a cancelled request's 503 is `shutting-down` and closes its connection."""
    headers = dict(sent[0]["headers"])
    assert (headers[b"retry-after"], headers[b"connection"]) == (b"1", b"close")
    problem = orjson.loads(sent[1]["body"])
    assert (problem["type"].rsplit("/", 1)[1], problem["status"]) == ("shutting-down", 503)


async def test_a_request_cancelled_by_something_else_is_answered_503_and_ends_there():
    """Cancelled from outside before its answer started: 503, and the cancellation is spent."""
    exchange = Exchange(respond_first=False)
    served = asyncio.create_task(exchange.serve())
    await exchange.in_app.wait()
    served.cancel()
    async with asyncio.timeout(1):
        assert await served == 0  # served as any request is: nothing left to cancel
    assert exchange.statuses() == [503]
    _assert_cancelled_answer(exchange.sent)
    assert exchange.controller.in_flight == 0


async def test_a_request_cancelled_once_its_answer_started_is_not_answered_again():
    """Cancelled from outside mid-answer: the cancellation goes on, nothing more is sent."""
    exchange = Exchange(respond_first=True)
    served = asyncio.create_task(exchange.serve())
    await exchange.in_app.wait()
    served.cancel()
    with pytest.raises(asyncio.CancelledError):
        await served
    assert exchange.statuses() == [200]
    assert exchange.controller.in_flight == 0


async def test_a_timeout_error_of_the_request_itself_is_not_taken_for_the_drain():
    """A TimeoutError the drain did not cause goes on up (to the 500 handler), unanswered here."""

    async def app(_scope: Any, _receive: Any, _send: Any) -> None:
        raise TimeoutError

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    controller = DrainController(drain_timeout=0, cancel_grace=1)
    with pytest.raises(TimeoutError):
        await DrainMiddleware(app, controller=controller)(_SCOPE, _receive, send)
    assert sent == []
    assert controller.in_flight == 0


async def test_a_request_arriving_while_draining_is_refused_and_its_connection_closed():
    """503 `shutting-down`, Retry-After 1 and Connection: close: the next request goes elsewhere."""
    controller = DrainController(drain_timeout=1, cancel_grace=1)
    controller.begin()
    sent: list[dict[str, Any]] = []

    async def app(_scope: Any, _receive: Any, _send: Any) -> None:  # pragma: no cover
        raise AssertionError("never called")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await DrainMiddleware(app, controller=controller)(_SCOPE, _receive, send)
    start = sent[0]
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert (headers[b"retry-after"], headers[b"connection"]) == (b"1", b"close")
    assert headers[b"content-type"] == b"application/problem+json"
    problem = orjson.loads(sent[1]["body"])
    assert (problem["type"].rsplit("/", 1)[1], problem["status"]) == ("shutting-down", 503)
    assert controller.in_flight == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_the_probes_reach_the_app_while_draining_and_count_for_nothing(path):
    """Pin that the orchestrator still sees the probes: answered by the app, not refused.

    `/readyz` then says `draining` itself; refused, it would be a `shutting-down` problem.
    """
    controller = DrainController(drain_timeout=1, cancel_grace=1)
    controller.begin()
    seen: list[tuple[str, int]] = []

    async def app(scope: Any, _receive: Any, _send: Any) -> None:
        seen.append((scope["path"], controller.in_flight))

    async def send(_message: dict[str, Any]) -> None:  # pragma: no cover - the app sends
        raise AssertionError("answered by the drain")

    await DrainMiddleware(app, controller=controller)({**_SCOPE, "path": path}, _receive, send)
    assert seen == [(path, 0)]


async def test_stop_now_just_as_the_drain_timeout_expires_cancels_without_an_error():
    """Pin that a second signal between the wait's expiry and the drain's wake-up is no error.

    The expired wait is left alone (rescheduling it raises); what is left is cancelled.
    """
    controller = DrainController(drain_timeout=0, cancel_grace=1)
    started = asyncio.Event()
    request = asyncio.create_task(_held(controller, started))
    await started.wait()
    drain = asyncio.create_task(controller.drain())
    for _ in range(10):  # loop passes, not time: the window is one pass wide
        waiting = controller._waiting
        if waiting is not None and waiting.expired():
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("the drain's wait never seen expired")
    controller.stop_now()
    async with asyncio.timeout(1):
        assert await drain == 1
        assert await request == "cancelled"
