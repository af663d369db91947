"""The CPU gate: a bounded number of requests on the loop, permits handed over during I/O."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from bench.run import S4_CLIENTS
from signing_gateway.issuance.faults import call_signer
from signing_gateway.resilience.policy import SignerPolicy
from signing_gateway.runtime.cpu_gate import (
    ARRIVED_AT,
    CallerBudgetSpent,
    CpuGate,
    CpuGateMiddleware,
    CpuQueueFull,
    CpuQueueTimeout,
    io_wait,
)
from signing_gateway.settings import LoopLagSettings, ResilienceSettings


async def _settle() -> None:
    """Let every ready task run until all are parked (bounded number of loop passes)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def _holding(gate: CpuGate, hold: asyncio.Event) -> None:
    """A request that holds a permit of `gate` until `hold` is set."""
    async with gate.request():
        await hold.wait()


async def _holder(gate: CpuGate) -> tuple[asyncio.Event, asyncio.Task[None]]:
    """A request holding `gate`'s one permit until the event is set."""
    hold = asyncio.Event()
    holder = asyncio.create_task(_holding(gate, hold))
    await _settle()
    return hold, holder


async def _holder_and_late(
    gate: CpuGate,
) -> tuple[asyncio.Event, asyncio.Task[None], asyncio.Task[None]]:
    """A request holding `gate`'s one permit until the event is set, and one parked behind it."""
    hold, holder = await _holder(gate)
    late = asyncio.create_task(_holding(gate, hold))
    await _settle()
    return hold, holder, late


#: A request by name, as `_held_by_hand` returns it.
_Named = Callable[[str], Coroutine[Any, Any, None]]


async def _held_by_hand(gate: CpuGate) -> tuple[Any, list[str], _Named]:
    """`gate`'s permit held by a request entered by hand, and a request that notes its name.

    The holder is left at the test's moment (`__aexit__`); the named request appends its name
    to the returned list once it holds a permit.
    """
    served: list[str] = []

    async def request(name: str) -> None:
        async with gate.request():
            served.append(name)

    holder = gate.request()
    await holder.__aenter__()
    return holder, served, request


async def test_no_more_than_permits_requests_run_at_once() -> None:
    """With 2 permits and 5 requests, 2 run and 3 wait; finishing one admits the next."""
    gate = CpuGate(2)
    release = asyncio.Event()
    running = 0
    peak = 0

    async def request() -> None:
        nonlocal running, peak
        async with gate.request():
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(request()) for _ in range(5)]
    await _settle()
    assert (gate.busy, gate.waiting, running) == (2, 3, 2)
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_io_wait_hands_the_permit_to_the_next_request() -> None:
    """A request waiting on I/O frees its permit, and takes one again when the I/O ends."""
    gate = CpuGate(1)
    signer_answer = asyncio.Event()
    order: list[str] = []

    async def slow_signing() -> None:
        async with gate.request():
            order.append("a: cpu")
            async with io_wait():
                await signer_answer.wait()
            order.append("a: verify")

    async def quick() -> None:
        async with gate.request():
            order.append("b: cpu")

    first = asyncio.create_task(slow_signing())
    await _settle()
    second = asyncio.create_task(quick())
    await _settle()
    assert order == ["a: cpu", "b: cpu"]  # b ran while a waited on its signer
    signer_answer.set()
    await asyncio.gather(first, second)
    assert order[-1] == "a: verify"
    assert gate.busy == 0


async def test_concurrent_waits_of_one_request_share_its_permit() -> None:
    """Two signer calls of one request release one permit and take back one, not two."""
    gate = CpuGate(1)
    answers = [asyncio.Event(), asyncio.Event()]

    async def call(event: asyncio.Event) -> None:
        async with io_wait():
            await event.wait()

    async def combined() -> None:
        async with gate.request(), asyncio.TaskGroup() as group:
            for event in answers:
                group.create_task(call(event))

    task = asyncio.create_task(combined())
    await _settle()
    assert gate.busy == 0  # both calls are waiting: the permit is free
    answers[0].set()
    await _settle()
    assert gate.busy == 0  # one call still waits: not taken back yet
    answers[1].set()
    await task
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_cancelled_waiters_and_holders_leak_no_permit() -> None:
    """Cancelling requests at any point (waiting, holding, in I/O) leaves every permit free."""
    gate = CpuGate(1)
    never = asyncio.Event()

    async def in_io() -> None:
        async with gate.request(), io_wait():
            await never.wait()

    async def holding() -> None:
        async with gate.request():
            await never.wait()

    tasks = [asyncio.create_task(in_io()), asyncio.create_task(holding())]
    tasks.append(asyncio.create_task(holding()))  # waits for the permit
    await _settle()
    assert (gate.busy, gate.waiting) == (1, 1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (gate.busy, gate.waiting) == (0, 0)
    async with asyncio.timeout(1), gate.request():
        assert gate.busy == 1


async def _signing(
    gate: CpuGate, signer_answer: asyncio.Event, order: list[str], name: str = "verify"
) -> None:
    """A request: CPU, a signer call (under io_wait) until `signer_answer`, then verification."""
    async with gate.request():
        async with io_wait():
            await signer_answer.wait()
        order.append(name)


async def _new(
    gate: CpuGate, order: list[str], name: str, *, wait: asyncio.Event | None = None
) -> None:
    """A request that needs no signer: noted when it runs; holds its permit until `wait`."""
    async with gate.request():
        order.append(name)
        if wait is not None:
            await wait.wait()


async def test_a_request_back_from_its_signer_goes_before_new_ones() -> None:
    """The freed permit goes to the request whose signer answered, not to later arrivals."""
    gate = CpuGate(1)
    signer_answer, hold = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    tasks = [asyncio.create_task(_signing(gate, signer_answer, order))]
    await _settle()
    # takes the permit a handed over
    tasks.append(asyncio.create_task(_new(gate, order, "b", wait=hold)))
    await _settle()
    tasks += [asyncio.create_task(_new(gate, order, name)) for name in ("c", "d")]
    await _settle()
    signer_answer.set()
    await _settle()
    assert gate.snapshot() == {
        "permits": 1,
        "busy": 1,
        "waiting": 3,
        "waitingToResume": 1,
        "newEvery": 2,
        "queueTimeoutSeconds": None,
        "timedOut": 0,
        "queueMax": None,
        "overflowed": 0,
    }
    hold.set()
    await asyncio.gather(*tasks)
    assert order == ["b", "verify", "c", "d"]  # one FIFO queue would give b, c, d, verify
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_after_new_every_returning_requests_a_new_one_gets_the_permit() -> None:
    """Returning requests go first, but every third permit goes to a waiting new request.

    Strict priority lets a crowd of returning requests hold back every new signing until all
    are verified, and the gateway then idles until the next crowd comes back.
    """
    gate = CpuGate(1, new_every=2)
    signer_answer, hold = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    tasks = [asyncio.create_task(_signing(gate, signer_answer, order, f"r{i}")) for i in range(5)]
    await _settle()  # all five at the signer, the permit free
    tasks.append(asyncio.create_task(_new(gate, order, "hold", wait=hold)))
    await _settle()
    tasks += [asyncio.create_task(_new(gate, order, f"n{i}")) for i in range(3)]
    await _settle()
    signer_answer.set()
    await _settle()
    assert (gate.resuming, gate.admitting) == (5, 3)
    hold.set()
    await asyncio.gather(*tasks)
    assert order == ["hold", "r0", "r1", "n0", "r2", "r3", "n1", "r4", "n2"]
    assert (gate.busy, gate.waiting) == (0, 0)


def test_new_every_must_be_at_least_one() -> None:
    """Zero would put new requests before returning ones always."""
    with pytest.raises(ValueError, match="new_every"):
        CpuGate(1, new_every=0)


async def test_cancelled_waiters_are_skipped_and_uncounted() -> None:
    """100 parked requests cancelled (clients gone): counts exact, the permit reaches the rest."""
    gate = CpuGate(1)
    release = asyncio.Event()
    served: list[int] = []

    async def request(number: int) -> None:
        async with gate.request():
            served.append(number)
            if number == 0:
                await release.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(103)]
    await _settle()
    assert (gate.busy, gate.waiting) == (1, 102)
    for task in tasks[1:101]:
        task.cancel()
    await _settle()
    assert (gate.busy, gate.waiting) == (1, 2)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert served == [0, 101, 102]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_a_permit_handed_to_a_cancelled_request_is_passed_on() -> None:
    """Cancelled after the hand-over but before it ran: the permit goes to the next waiter."""
    gate = CpuGate(1)
    holder, served, request = await _held_by_hand(gate)
    second = asyncio.create_task(request("second"))
    third = asyncio.create_task(request("third"))
    await _settle()
    await holder.__aexit__(None, None, None)  # hands the permit to `second`...
    second.cancel()  # ...which is cancelled before it can run
    async with asyncio.timeout(1):  # a permit lost with `second` would leave `third` parked
        await asyncio.gather(second, third, return_exceptions=True)
    assert served == ["third"]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_io_wait_outside_a_request_does_nothing() -> None:
    """Code that is not under a gated request (probes, start-up) passes straight through."""
    async with io_wait():
        pass


def test_a_gate_needs_a_permit() -> None:
    """A gate with no permits would stop every request; it is refused."""
    with pytest.raises(ValueError):
        CpuGate(0)


async def test_middleware_gates_v1_only() -> None:
    """/v1 requests wait for a permit; /healthz answers even while every permit is taken."""
    gate = CpuGate(1)

    async def app(scope, receive, send):
        await PlainTextResponse(f"busy={gate.busy}")(scope, receive, send)

    transport = httpx.ASGITransport(app=CpuGateMiddleware(app, gate=gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        assert (await client.get("/v1/dcc")).text == "busy=1"
        async with gate.request():  # someone else holds the only permit
            assert (await client.get("/healthz")).text == "busy=1"
            blocked = asyncio.create_task(client.get("/v1/dcc"))
            await _settle()
            assert not blocked.done()
        assert (await blocked).text == "busy=1"


def _http(path: str) -> dict[str, Any]:
    return {"type": "http", "path": path}


async def _no_send(message: dict[str, Any]) -> None:
    pass


async def test_a_slow_request_body_holds_no_permit() -> None:
    """While one request waits for its body bytes, another /v1 request gets the only permit."""
    gate = CpuGate(1)
    body_arrives = asyncio.Event()
    answered: list[str] = []

    async def app(scope, receive, send):
        message = await receive()
        answered.append(scope["path"])
        assert message["type"] == "http.request"

    middleware = CpuGateMiddleware(app, gate=gate)

    async def slow_receive():
        await body_arrives.wait()
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def quick_receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    slow = asyncio.create_task(middleware(_http("/v1/slow"), slow_receive, _no_send))
    await _settle()
    async with asyncio.timeout(1):
        await middleware(_http("/v1/quick"), quick_receive, _no_send)
    assert answered == ["/v1/quick"]
    body_arrives.set()
    await slow
    assert answered == ["/v1/quick", "/v1/slow"]
    assert gate.busy == 0


async def _reads_its_body(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()


async def test_a_buffered_request_body_is_read_without_a_hand_over() -> None:
    """A body already there is no I/O: the request reads it and goes on with its permit.

    Handing the permit over around it sent the reader to the back of the queue, behind the
    request parked for the permit, between reading its body and validating it.
    """
    gate = CpuGate(1)
    go_on = asyncio.Event()
    order: list[str] = []

    async def app(scope, receive, send):
        name = scope["path"]
        order.append(f"{name} starts")
        if name == "/v1/first":
            await go_on.wait()  # holds the permit while the second one arrives
        message = await receive()
        assert message == {"type": "http.request", "body": b"{}", "more_body": False}
        order.append(f"{name} has its body")

    middleware = CpuGateMiddleware(app, gate=gate)

    async def buffered():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    first = asyncio.create_task(middleware(_http("/v1/first"), buffered, _no_send))
    await _settle()
    second = asyncio.create_task(middleware(_http("/v1/second"), buffered, _no_send))
    await _settle()
    assert gate.waiting == 1
    go_on.set()
    await asyncio.gather(first, second)
    assert order == [
        "/v1/first starts",
        "/v1/first has its body",
        "/v1/second starts",
        "/v1/second has its body",
    ]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_a_body_that_waits_more_than_once_gets_every_value_sent_in() -> None:
    """A receive suspending several times (body in parts) is driven to its end, permit free."""
    gate = CpuGate(1)
    parts = [asyncio.get_running_loop().create_future() for _ in range(3)]
    got: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        got.append(await receive())

    async def in_parts():
        body = b""
        for part in parts:
            body += await part
        return {"type": "http.request", "body": body, "more_body": False}

    reading = asyncio.create_task(
        CpuGateMiddleware(app, gate=gate)(_http("/v1/x"), in_parts, _no_send)
    )
    for n, part in enumerate(parts):
        await _settle()
        assert (gate.busy, reading.done()) == (0, False)  # waiting for part n holds no permit
        part.set_result(b"%d" % n)
    await reading
    assert got == [{"type": "http.request", "body": b"012", "more_body": False}]
    assert gate.busy == 0


async def test_a_body_wait_cancelled_reaches_the_receive_and_leaks_no_permit() -> None:
    """Cancelling a request while it waits for its body cancels the receive itself."""
    gate = CpuGate(1)
    seen: list[str] = []

    async def never():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return {}

    waiting = asyncio.create_task(
        CpuGateMiddleware(_reads_its_body, gate=gate)(_http("/v1/x"), never, _no_send)
    )
    await _settle()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert seen == ["cancelled"]
    assert (gate.busy, gate.waiting) == (0, 0)
    async with asyncio.timeout(1), gate.request():  # the permit is there for the next one
        pass


async def test_a_receive_failing_after_a_wait_raises_its_own_error() -> None:
    """An error raised by the receive once resumed reaches the app unchanged."""
    gate = CpuGate(1)
    arrives = asyncio.Event()

    async def broken():
        await arrives.wait()
        raise ConnectionResetError("peer went away")

    failing = asyncio.create_task(
        CpuGateMiddleware(_reads_its_body, gate=gate)(_http("/v1/x"), broken, _no_send)
    )
    await _settle()
    arrives.set()
    with pytest.raises(ConnectionResetError, match="peer went away"):
        await failing
    assert gate.busy == 0


async def test_an_error_after_a_handled_cancellation_is_chained_as_when_awaited() -> None:
    """What was thrown into the receive, once it has dealt with it, is no context of its error.

    A receive that handles a cancellation (as a shielded wait does) and fails afterwards: a
    plain `await` leaves the failure unchained, so the traceback logged shows one error. Thrown
    in from inside a handler, the gate chained the failure to the CancelledError it had passed
    on ("during handling of the above exception ...").
    """

    async def gets_past_a_cancel():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            assert current is not None
            current.uncancel()
        raise ConnectionResetError("peer went away")

    contexts = []
    for served in (_reads_its_body, CpuGateMiddleware(_reads_its_body, gate=CpuGate(1))):
        reading = asyncio.create_task(served(_http("/v1/x"), gets_past_a_cancel, _no_send))
        await _settle()
        reading.cancel()
        with pytest.raises(ConnectionResetError) as failed:
            await reading
        contexts.append(failed.value.__context__)
    assert contexts == [None, None]


async def test_a_receive_that_is_not_a_coroutine_is_awaited_without_a_permit() -> None:
    """Any awaitable a server's receive returns is waited on with the permit handed over."""
    gate = CpuGate(1)
    body = asyncio.get_running_loop().create_future()

    async def app(scope, receive, send):
        assert await receive() == {"type": "http.request", "body": b"", "more_body": False}

    reading = asyncio.create_task(
        CpuGateMiddleware(app, gate=gate)(_http("/v1/x"), lambda: body, _no_send)
    )
    await _settle()
    assert (gate.busy, reading.done()) == (0, False)
    body.set_result({"type": "http.request", "body": b"", "more_body": False})
    await reading
    assert gate.busy == 0


async def test_a_new_request_waits_at_most_the_queue_timeout() -> None:
    """No permit within 50 ms: CpuQueueTimeout, counted; later waiters still get the permit."""
    gate = CpuGate(1, queue_timeout=0.05)
    release = asyncio.Event()
    served: list[str] = []

    async def request(name: str) -> None:
        async with gate.request():
            served.append(name)
            if name == "holder":
                await release.wait()

    holder = asyncio.create_task(request("holder"))
    await _settle()
    with pytest.raises(CpuQueueTimeout):
        await request("late")
    assert gate.snapshot()["timedOut"] == 1
    assert (gate.busy, gate.waiting) == (1, 0)
    patient = asyncio.create_task(request("patient"))
    await _settle()
    release.set()
    await asyncio.gather(holder, patient)
    assert served == ["holder", "patient"]
    assert (gate.busy, gate.waiting) == (0, 0)


@pytest.mark.parametrize("queue_timeout", [10.0, None])
async def test_a_new_request_waits_no_longer_than_its_callers_budget(
    queue_timeout: float | None,
) -> None:
    """X-Request-Timeout 0.05 s and a longer (or no) queue timeout: CallerBudgetSpent then."""
    gate = CpuGate(1, queue_timeout=queue_timeout)
    release, holder = await _holder(gate)
    loop = asyncio.get_running_loop()
    scope: Scope = {
        "headers": [(b"x-request-timeout", b"0.05")],
        ARRIVED_AT: loop.time(),
    }
    started = loop.time()
    with pytest.raises(CallerBudgetSpent):
        async with asyncio.timeout(5), gate.request(scope):
            pass
    waited = loop.time() - started
    release.set()
    await holder
    assert 0.04 <= waited < 1.0
    assert (gate.snapshot()["timedOut"], gate.busy, gate.waiting) == (0, 0, 0)


async def test_a_malformed_callers_budget_leaves_the_queue_timeout_in_force() -> None:
    """`X-Request-Timeout: soon` (answered 400 once admitted) does not bound the wait."""
    gate = CpuGate(1, queue_timeout=0.05)
    release, holder = await _holder(gate)
    scope: Scope = {"headers": [(b"x-request-timeout", b"soon")]}
    with pytest.raises(CpuQueueTimeout):
        async with asyncio.timeout(5), gate.request(scope):
            pass
    release.set()
    await holder
    assert gate.snapshot()["timedOut"] == 1


class _Marker:
    """Something a request's scope holds, to see whether the request is still held."""


@pytest.mark.parametrize(
    ("budget", "queue_timeout"), [(b"0.01", 60.0), (None, 0.01)], ids=["budget", "timeout"]
)
async def test_a_request_refused_while_parked_is_not_held_by_its_queue(
    budget: bytes | None, queue_timeout: float
) -> None:
    """Answered 504 (or 503) while parked, a request is let go, its waiter still queued.

    Its caller's budget ends behind a request parked before it, or the queue timeout while
    the permit is held: its waiter stays in the queue until a permit reaches it, and must not
    hold the request's scope (nor its send and receive) until then.
    """
    gate = CpuGate(1, queue_timeout=queue_timeout)
    hold = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await hold.wait()

    middleware = CpuGateMiddleware(app, gate=gate)
    holder = asyncio.create_task(middleware(_http("/v1/dcc"), _no_send, _no_send))
    await _settle()
    in_front = gate.request()  # parked first, and for longer, than the refused one below
    front = asyncio.create_task(in_front.__aenter__())
    await _settle()
    headers = [] if budget is None else [(b"x-request-timeout", budget)]
    marker = _Marker()
    held = weakref.ref(marker)
    scope = {**_http("/v1/dcc"), "headers": headers, "state": {}, "marker": marker}
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async with asyncio.timeout(5):
        await middleware(scope, _no_send, send)
    del scope, marker
    gc.collect()
    assert sent[0]["status"] == (503 if budget is None else 504)
    assert len(gate._admit) == 2  # its waiter is still queued, behind the one in front
    assert held() is None
    front.cancel()
    hold.set()
    await holder
    with contextlib.suppress(asyncio.CancelledError, CpuQueueTimeout):
        await front  # (with the short queue timeout, timed out too)
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_a_request_back_from_its_signer_is_never_timed_out() -> None:
    """Resuming after io_wait waits as long as it takes: its signer work is done."""
    gate = CpuGate(1, queue_timeout=0.02)
    signer_answer, hold = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def holding() -> None:
        async with gate.request():
            await hold.wait()

    first = asyncio.create_task(_signing(gate, signer_answer, order))
    await _settle()
    second = asyncio.create_task(holding())
    await _settle()
    signer_answer.set()
    await asyncio.sleep(0.1)  # five queue timeouts
    hold.set()
    await asyncio.gather(first, second)
    assert order == ["verify"]
    assert gate.timed_out == 0


async def test_timed_out_and_cancelled_at_once_takes_no_permit() -> None:
    """The expiry fires and the client goes before the request runs again: no permit made."""
    gate = CpuGate(1, queue_timeout=60)
    hold, holder, late = await _holder_and_late(gate)
    gate._expire(gate._admit[-1])  # what the timer does, run now...
    late.cancel()  # ...and the client disconnects before `late` wakes up
    with pytest.raises(asyncio.CancelledError):
        await late
    assert (gate.busy, gate.waiting, gate.timed_out) == (1, 0, 1)
    hold.set()
    await holder
    assert (gate.busy, gate.waiting) == (0, 0)
    async with asyncio.timeout(1), gate.request():
        assert gate.busy == 1


def test_a_queue_timeout_must_be_positive() -> None:
    """Zero would refuse every request that has to wait at all."""
    with pytest.raises(ValueError, match="queue_timeout"):
        CpuGate(1, queue_timeout=0)


async def test_a_failed_io_wait_does_not_queue_for_the_permit_again() -> None:
    """A signer call that fails ends its request at once, even with every permit taken.

    What is left (rendering the error) is small, and a cancelled request must not queue.
    """
    gate = CpuGate(1)
    answered, hold = asyncio.Event(), asyncio.Event()

    async def failing() -> None:
        async with gate.request(), io_wait():
            await answered.wait()
            raise ConnectionError

    first = asyncio.create_task(failing())
    await _settle()
    holder = asyncio.create_task(_new(gate, [], "holder", wait=hold))
    await _settle()
    answered.set()
    async with asyncio.timeout(1):
        with pytest.raises(ConnectionError):
            await first
    assert (gate.busy, gate.waiting) == (1, 0)
    hold.set()
    await holder
    assert gate.busy == 0


async def test_an_io_wait_not_to_be_taken_again_ends_without_queueing() -> None:
    """`take_again=False`: a block that succeeds leaves its request without a permit.

    For I/O a failing request does on its way out (putting its session back): it must end at
    once, even with every permit taken, as after a failed signer call.
    """
    gate = CpuGate(1)
    answered, hold = asyncio.Event(), asyncio.Event()
    ended = []

    async def leaving() -> None:
        async with gate.request():
            async with io_wait(take_again=False):
                await answered.wait()
            ended.append(gate.busy)

    first = asyncio.create_task(leaving())
    await _settle()
    holder = asyncio.create_task(_new(gate, [], "holder", wait=hold))
    await _settle()
    answered.set()
    async with asyncio.timeout(1):
        await first
    assert ended == [1]  # the holder's permit only: none taken back
    assert (gate.busy, gate.waiting) == (1, 0)
    hold.set()
    await holder
    assert gate.busy == 0


async def test_io_wait_after_a_request_has_ended_does_nothing() -> None:
    """The permit is the request's only while it runs: the same task takes none afterwards."""
    gate = CpuGate(1)
    async with gate.request():
        pass
    async with io_wait():
        pass
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_the_apps_own_queue_timeout_is_not_answered_as_overloaded() -> None:
    """Only failing to get the permit is the gate's 503; an admitted request's error is its own."""

    async def app(scope, receive, send):
        raise CpuQueueTimeout

    middleware = CpuGateMiddleware(app, gate=CpuGate(1, queue_timeout=1))
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    with pytest.raises(CpuQueueTimeout):
        await middleware({"type": "http", "path": "/v1/dcc"}, None, send)
    assert sent == []


async def test_a_queue_timeout_firing_after_the_hand_over_refuses_nothing() -> None:
    """The timer and the hand-over in one loop pass: the request keeps the permit it was given.

    The permit was set on the waiter first; the expiry then finds it done and neither counts a
    timeout nor takes the waiter out of the count a second time.
    """
    gate = CpuGate(1, queue_timeout=60)
    holder, served, request = await _held_by_hand(gate)
    waiting = asyncio.create_task(request("waiting"))
    await _settle()
    waiter = gate._admit[-1]
    await holder.__aexit__(None, None, None)  # hands the permit to `waiting`...
    gate._expire(waiter)  # ...and its timer fires before it runs
    async with asyncio.timeout(1):
        await waiting
    assert served == ["waiting"]
    assert (gate.busy, gate.waiting, gate.timed_out) == (0, 0, 0)


@pytest.mark.parametrize(("left", "refused"), [(0.03, True), (0.07, False)])
async def test_a_permit_handed_over_with_under_an_attempts_time_left_is_passed_on(
    monkeypatch: pytest.MonkeyPatch, left: float, refused: bool
) -> None:
    """Pin that a permit reaching a request with under 50 ms of its budget left is refused.

    That request could send no signer attempt (`MIN_ATTEMPT_SECONDS`): its deadline would
    refuse it once its body was read and checked. It gets CallerBudgetSpent (a 504) instead,
    and the permit goes on to the request parked behind it. With 70 ms left it goes on.
    Before, the permit was taken, whatever was left.
    """
    gate = CpuGate(1, queue_timeout=60)
    holder, served, request = await _held_by_hand(gate)
    loop = asyncio.get_running_loop()
    now = [1000.0]
    monkeypatch.setattr(loop, "time", lambda: now[0])  # no timer falls due: time stands still
    scope: Scope = {"headers": [(b"x-request-timeout", b"1")], ARRIVED_AT: now[0]}
    outcome: list[str] = []

    async def budgeted() -> None:
        try:
            async with gate.request(scope):
                outcome.append("admitted")
        except CallerBudgetSpent:
            outcome.append("refused")

    parked = asyncio.create_task(budgeted())
    await _settle()
    behind = asyncio.create_task(request("behind"))
    await _settle()
    now[0] += 1 - left
    await holder.__aexit__(None, None, None)  # hands the permit to `parked`
    await asyncio.gather(parked, behind)
    monkeypatch.undo()
    assert outcome == (["refused"] if refused else ["admitted"])
    assert served == ["behind"]
    assert (gate.busy, gate.waiting, gate.timed_out) == (0, 0, 0)


async def test_a_queue_timeout_firing_after_a_cancellation_counts_nothing() -> None:
    """A parked request cancelled, then its timer firing before it wakes: counted gone once."""
    gate = CpuGate(1, queue_timeout=60)
    hold, holder, late = await _holder_and_late(gate)
    waiter = gate._admit[-1]
    late.cancel()  # the client disconnects...
    await asyncio.sleep(0)
    gate._expire(waiter)  # ...and the timer fires before `late` has unwound
    with pytest.raises(asyncio.CancelledError):
        await late
    assert (gate.busy, gate.waiting, gate.timed_out) == (1, 0, 0)
    hold.set()
    await holder
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_an_admitted_request_leaves_no_queue_timer_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The expiry is dropped once the permit came: no timer per admitted request lingers.

    With a 30 s queue timeout, a burst of 10,000 would otherwise keep 10,000 timers (and their
    waiters) on the loop for 30 s after every one of them was served.
    """
    gate = CpuGate(1, queue_timeout=60)
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    call_later = loop.call_later

    def recorded(*args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        timers.append(call_later(*args, **kwargs))
        return timers[-1]

    hold = asyncio.Event()
    holder = asyncio.create_task(_new(gate, [], "holder", wait=hold))
    await _settle()
    monkeypatch.setattr(loop, "call_later", recorded)
    waiting = asyncio.create_task(_new(gate, [], "waiting"))
    await _settle()
    assert [timer.cancelled() for timer in timers] == [False]  # parked: its expiry is set
    hold.set()
    await asyncio.gather(holder, waiting)
    assert [timer.cancelled() for timer in timers] == [True]


async def test_a_permit_a_new_request_found_free_breaks_the_row_of_returning_ones() -> None:
    """`new_every` counts permits in a row to returning requests, free ones taken included.

    Two returning requests were handed the permit, then a new request found it free: the row
    is broken, so the next hand-over goes to the returning request, not to a new one.
    """
    gate = CpuGate(1, new_every=2)
    first_answers, late_answer = asyncio.Event(), asyncio.Event()
    hold, hold_new = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    tasks = [asyncio.create_task(_signing(gate, first_answers, order, f"r{i}")) for i in range(2)]
    tasks.append(asyncio.create_task(_signing(gate, late_answer, order, "r2")))
    await _settle()  # all three at their signer, the permit free
    tasks.append(asyncio.create_task(_new(gate, order, "hold", wait=hold)))
    await _settle()
    first_answers.set()
    await _settle()
    hold.set()
    await _settle()  # r0 and r1 handed the permit in a row; now free again
    assert order == ["hold", "r0", "r1"]
    assert (gate.busy, gate.waiting) == (0, 0)
    tasks.append(asyncio.create_task(_new(gate, order, "n", wait=hold_new)))  # finds it free
    await _settle()
    late_answer.set()
    await _settle()
    tasks.append(asyncio.create_task(_new(gate, order, "m")))
    await _settle()
    assert (gate.resuming, gate.admitting) == (1, 1)
    hold_new.set()
    await asyncio.gather(*tasks)
    assert order == ["hold", "r0", "r1", "n", "r2", "m"]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_a_free_permit_a_returning_request_took_counts_in_its_row() -> None:
    """Returning requests taking a free permit count in the row too: no more than `new_every`.

    r0 is handed the permit, r1 finds it free: two in a row, so the next goes to a new one.
    """
    gate = CpuGate(1, new_every=2)
    answers = {name: asyncio.Event() for name in ("r0", "r1", "r2")}
    hold, hold_r1 = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def returning(name: str, wait: asyncio.Event | None = None) -> None:
        async with gate.request():
            async with io_wait():
                await answers[name].wait()
            order.append(name)
            if wait is not None:
                await wait.wait()

    tasks = [asyncio.create_task(returning(name)) for name in ("r0", "r2")]
    tasks.append(asyncio.create_task(returning("r1", wait=hold_r1)))
    await _settle()  # all three at their signer, the permit free
    tasks.append(asyncio.create_task(_new(gate, order, "hold", wait=hold)))
    await _settle()
    answers["r0"].set()
    await _settle()
    hold.set()
    await _settle()  # r0 handed the permit, done; the permit free again
    answers["r1"].set()
    await _settle()  # r1 finds it free and holds it
    answers["r2"].set()
    tasks.append(asyncio.create_task(_new(gate, order, "m")))
    await _settle()
    assert (gate.resuming, gate.admitting) == (1, 1)
    hold_r1.set()
    await asyncio.gather(*tasks)
    assert order == ["hold", "r0", "r1", "m", "r2"]
    assert (gate.busy, gate.waiting) == (0, 0)


async def _parked_up_to_the_bound(
    gate: CpuGate, order: list[str], *, wait: asyncio.Event | None = None
) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    """`gate`'s one permit held until the returned event, and `queue_max` new requests parked.

    The parked ones hold their permit, once admitted, until `wait` (when given).
    """
    assert gate.queue_max is not None
    hold = asyncio.Event()
    tasks = [asyncio.create_task(_new(gate, order, "holder", wait=hold))]
    await _settle()
    tasks += [
        asyncio.create_task(_new(gate, order, f"parked{i}", wait=wait))
        for i in range(gate.queue_max)
    ]
    await _settle()
    assert (gate.busy, gate.admitting) == (1, gate.queue_max)
    return hold, tasks


async def test_a_new_request_over_queue_max_is_refused_at_once() -> None:
    """`queue_max` new requests parked: one more gets CpuQueueFull without parking, counted once.

    The ones parked before it keep their places and are served in order.
    """
    overflows: list[None] = []
    gate = CpuGate(1, queue_timeout=60, queue_max=2, on_overflow=lambda: overflows.append(None))
    order: list[str] = []
    hold, tasks = await _parked_up_to_the_bound(gate, order)
    refused = asyncio.create_task(_new(gate, order, "refused"))
    await asyncio.sleep(0)  # one step: it must not park, so it ends in its first
    assert refused.done()
    assert isinstance(refused.exception(), CpuQueueFull)
    assert (gate.overflowed, len(overflows), gate.timed_out) == (1, 1, 0)
    assert len(gate._admit) == 2  # no waiter was made for it
    snapshot = gate.snapshot()
    assert (snapshot["queueMax"], snapshot["overflowed"], snapshot["waiting"]) == (2, 1, 2)
    hold.set()
    await asyncio.gather(*tasks)
    assert order == ["holder", "parked0", "parked1"]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_a_new_request_parks_again_once_the_queue_is_below_queue_max() -> None:
    """A parked request admitted frees its place: the next new one parks instead of refused."""
    gate = CpuGate(1, queue_max=1)
    order: list[str] = []
    hold_parked = asyncio.Event()
    hold, tasks = await _parked_up_to_the_bound(gate, order, wait=hold_parked)
    with pytest.raises(CpuQueueFull):
        await _new(gate, order, "refused")
    hold.set()
    await _settle()  # parked0 now holds the permit: nothing is parked
    assert (gate.busy, gate.admitting) == (1, 0)
    tasks.append(asyncio.create_task(_new(gate, order, "later")))
    await _settle()
    assert (tasks[-1].done(), gate.admitting, gate.overflowed) == (False, 1, 1)
    hold_parked.set()
    await asyncio.gather(*tasks)
    assert order == ["holder", "parked0", "later"]
    assert (gate.busy, gate.waiting) == (0, 0)


@pytest.mark.parametrize("leaves", ["cancelled", "timed out"])
async def test_a_parked_request_gone_frees_its_place_in_the_bound(leaves: str) -> None:
    """Its client gone or its queue timeout out: the place is free at once, counted exactly.

    A cancelled waiter stays in the deque until a hand-over skips it; the bound counts
    `admitting`, which it has already left.
    """
    gate = CpuGate(1, queue_timeout=60, queue_max=1)
    order: list[str] = []
    hold, [holder, parked] = await _parked_up_to_the_bound(gate, order)
    if leaves == "cancelled":
        parked.cancel()
    else:
        gate._expire(gate._admit[-1])  # what the timer does, run now
    await asyncio.gather(parked, return_exceptions=True)
    assert (gate.admitting, len(gate._admit)) == (0, 1)
    later = asyncio.create_task(_new(gate, order, "later"))
    await _settle()
    assert (later.done(), gate.admitting, gate.overflowed) == (False, 1, 0)
    hold.set()
    await asyncio.gather(holder, later)
    assert order == ["holder", "later"]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_requests_back_from_a_signer_are_never_refused_by_queue_max() -> None:
    """With the new requests' queue full, two requests back from their signer still park.

    They were admitted before: the bound is on new requests only. A new one is still refused.
    """
    gate = CpuGate(1, queue_max=1)
    signer_answer = asyncio.Event()
    order: list[str] = []
    signing = [asyncio.create_task(_signing(gate, signer_answer, order, f"r{i}")) for i in range(2)]
    await _settle()  # both at their signer, the permit free
    hold, tasks = await _parked_up_to_the_bound(gate, order)
    signer_answer.set()
    await _settle()
    assert (gate.resuming, gate.admitting, gate.overflowed) == (2, 1, 0)
    with pytest.raises(CpuQueueFull):
        await _new(gate, order, "refused")
    hold.set()
    await asyncio.gather(*signing, *tasks)
    assert order == ["holder", "r0", "r1", "parked0"]
    assert (gate.busy, gate.waiting, gate.overflowed) == (0, 0, 1)


def test_a_queue_max_must_be_at_least_one() -> None:
    """Zero would refuse every request that has to wait at all."""
    with pytest.raises(ValueError, match="queue_max"):
        CpuGate(1, queue_max=0)


def test_the_default_queue_bound_parks_every_client_of_bench_s4() -> None:
    """S4 sends its clients at once at a CPU-bound gateway and must see no error.

    (Its lowest value, 1, and 0 refused: `tests/unit/gateway/test_settings_refusals.py`.)
    """
    assert LoopLagSettings().cpu_queue_max > S4_CLIENTS


async def test_a_full_queue_is_answered_503_overloaded_with_retry_after() -> None:
    """The middleware answers CpuQueueFull as it does a timeout: 503 problem+json, no app call."""
    called: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        called.append(scope["path"])

    gate = CpuGate(1, queue_timeout=60, queue_max=1)
    hold, tasks = await _parked_up_to_the_bound(gate, [])
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/dcc", "headers": [], "state": {}}
    async with asyncio.timeout(1):
        await CpuGateMiddleware(app, gate=gate)(scope, None, send)
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert b"/overloaded" in body["body"]
    assert b"too many requests waiting" in body["body"]
    assert called == []
    hold.set()
    await asyncio.gather(*tasks)


async def test_a_request_cancelled_while_parked_to_resume_is_uncounted() -> None:
    """Its client gone while it waits to resume after its signer: `waitingToResume` drops at once.

    Counted on, /readyz would report a queue of requests back from their signers that no
    longer exist, growing with every client that gives up under load.
    """
    gate = CpuGate(1)
    signer_answer, hold = asyncio.Event(), asyncio.Event()
    order: list[str] = []
    signing = asyncio.create_task(_signing(gate, signer_answer, order))
    await _settle()  # at its signer, the permit free
    holder = asyncio.create_task(_new(gate, order, "holder", wait=hold))
    await _settle()
    signer_answer.set()
    await _settle()
    assert (gate.busy, gate.resuming) == (1, 1)
    signing.cancel()
    await asyncio.gather(signing, return_exceptions=True)
    assert (gate.resuming, gate.waiting, gate.snapshot()["waitingToResume"]) == (0, 0, 0)
    hold.set()
    await holder
    assert order == ["holder"]
    assert (gate.busy, gate.waiting) == (0, 0)


async def test_a_signer_call_waits_on_its_signer_without_the_permit() -> None:
    """`call_signer` hands the request's permit over for the signer wait: another one runs.

    Held through the round trip, one permit per request at its signer would cap the
    gateway at `permits` signings in flight.
    """
    gate = CpuGate(1)
    policy = SignerPolicy("eu", ResilienceSettings())
    signer_answer = asyncio.Event()
    order: list[str] = []

    async def signer() -> str:
        await signer_answer.wait()
        return "signed"

    async def signing() -> None:
        async with gate.request():
            signed = await call_signer(
                "european", signer, policy=policy, endpoint="get_credential", replay_safe=True
            )
            order.append(signed)

    task = asyncio.create_task(signing())
    await _settle()
    assert gate.busy == 0
    async with asyncio.timeout(1):
        await _new(gate, order, "other")
    signer_answer.set()
    await task
    assert order == ["other", "signed"]
    assert (gate.busy, gate.waiting) == (0, 0)
