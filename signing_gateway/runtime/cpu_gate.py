"""A CPU gate: at most N requests do CPU work on the event loop at once; the rest wait parked.

Why: once the gateway is CPU-bound (more requests per second than one core can validate,
sign through and verify), every request that is ready to run sits in the loop's ready queue,
and one loop iteration runs them all. A timer, or a ``/healthz`` request, then waits for the
whole batch: measured at 1,000 clients, ~0.4 s of loop lag and multi-second ``/healthz``
answers, which is exactly how the replaced service looked frozen.

The gate bounds that batch. A ``/v1`` request takes a permit before the application handles
it and gives it back when done; while it waits on a signer (the bulkhead, retries and the
network round trip, see ``io_wait``) it hands the permit over to the next request. Requests
without a permit wait on a FIFO semaphore: a parked future costs nothing per loop iteration.
The total CPU work is the same, so throughput stays at the CPU ceiling, but one iteration
now runs at most ``permits`` handlers' worth of work, so the loop stays responsive and
everything outside ``/v1`` (health, readiness, metrics) is never queued behind signing.

The middleware sits outside every other but the drain and the request metrics, so a burst of
new requests waits parked instead of running all the middlewares' work in one loop pass (the
drain, outside it, only notes the request, so a shutdown can answer one still parked here).
Waiting for the body is I/O (``receive`` runs under ``io_wait`` once it has to wait): a slow
client sending its body holds no permit, and a body already buffered costs no hand-over.

Requests coming back from a signer mostly go first. A freed permit goes to a request resuming
after ``io_wait`` before a new request: its signer has already done the work, and what is left
(verifying the credential, answering) is what turns that work into a delivered credential.
With one FIFO queue a returning request waited behind every request that arrived while it was
at the signer: bench S4 (10,000 clients, 10 s signer, CPU-bound gateway) answered none in
30 s although thousands had been signed. But after ``new_every`` permits in a row to
returning requests, a waiting new one gets the next. Strict priority starved the signers in
waves: while a crowd of returning requests was verified no new signing started, and once
they were through the gateway sat idle until the next crowd came back. Bench S1's shape
(1,000 clients, 1 s signer) measured the gateway's CPU 76-84 % busy that way. A new request
after four returning ones left it 80-92 % busy, and the waves held S1 to 0.70-0.82 of its
1,000 req/s limit; after two, 93-99 % busy and 0.80-0.94 of the limit (four alternated
rounds each; strict alternation did no better: 0.82-0.95). Alternation once cost more CPU
per request, when the collector walked every half-done request; it no longer does (see
``runtime.gc_tuning``). Resuming requests are bounded by what was admitted, so neither queue
is starved, and under overload two permits in three still go to requests a signer has
already worked for.

A new request that finds no permit within ``queue_timeout`` seconds is answered 503
problem+json (``overloaded``, ``Retry-After``) by the middleware: the gateway cannot keep up,
the request has cost no signer anything, and its caller learns so at once instead of waiting
without bound. Requests resuming after ``io_wait`` are never timed out here (their deadline
covers them). The middleware also notes when the request arrived (``scope[ARRIVED_AT]``,
event-loop time), so a caller's ``X-Request-Timeout`` counts its wait here.

A new request whose caller asked for less time (``X-Request-Timeout``) than is left of the
queue timeout is answered at its own deadline instead: 504 ``deadline-exceeded``, saying the
budget ran out before signing started, when it comes. Waiting out the queue timeout for a
503 would answer late a caller who has given up; a permit handed over after the deadline
would only lead the request to the same 504, after its body was read and checked. The same
timer does it: the one a parked request arms for the queue timeout is armed for the
caller's deadline when that comes first. A request handed its permit with less of its budget
left than a signer attempt needs (``MIN_ATTEMPT_SECONDS``: the hand-over came in a loop turn
that ran late, or just before its timer) is answered the same 504 at once, its permit passed
on, rather than after reading and checking its body for its deadline to refuse it. Either
504 comes with its body unread, so it says ``Connection: close``, as the body limits'
refusals from the head do. The header is read only by a request that parks (a malformed one
is ignored here and answered 400 once the request is admitted), so a request finding a free
permit pays nothing for it.

The new requests parked at once are bounded too (``queue_max``): under a flood (a retry
storm, a caller's loop gone wild) every new connection would otherwise park here, each
holding ~47 KB (bench S4), until the pod's memory limit kills it with every signing in flight.
A new request that finds no permit while ``queue_max`` new ones are already parked is
refused at once, with the same 503, instead of after ``queue_timeout``. The check is one
integer comparison, made only by a request that has to park. Requests resuming after
``io_wait`` are never refused by it: they are bounded by what was admitted.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar, Token
from types import CoroutineType
from typing import Any, NoReturn

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_gateway.errors import PROBLEM_BASE, DeadlineExceeded, send_problem, send_problem_503
from signing_gateway.issuance.deadline import (
    BUDGET_SPENT_BEFORE_SIGNING,
    parse_request_timeout_fields,
    request_timeout_fields,
)
from signing_gateway.resilience.policy import MIN_ATTEMPT_SECONDS

__all__ = [
    "ARRIVED_AT",
    "CallerBudgetSpent",
    "CpuGate",
    "CpuGateMiddleware",
    "CpuGateRefused",
    "CpuQueueFull",
    "CpuQueueTimeout",
    "checkpoint",
    "io_wait",
]

#: The scope key for when a gated request arrived (event-loop time). A key of the scope, not
#: of `scope["state"]`: the state dict is a per-request copy of the lifespan state, and one
#: key too many doubles its table for every request in flight (see `api.deps.GatewayState`).
ARRIVED_AT = "signing_gateway.arrived_at"
#: The paths gated: the API's, not health, readiness or metrics.
_GATED_PREFIX = "/v1/"
#: The header field of an answer after which the connection ends.
_CLOSE = ((b"connection", b"close"),)


class CpuGateRefused(Exception):
    """A new request refused a permit: `CpuGateMiddleware` answers it 503 ``overloaded``.

    ::

        CpuGateRefused
        ├── CpuQueueTimeout       waited `queue_timeout` s in vain
        ├── CpuQueueFull          found `queue_max` new requests already waiting
        └── CallerBudgetSpent     its caller's budget ran out first (answered 504 instead)
    """


class CpuQueueTimeout(CpuGateRefused):
    """A new request waited `queue_timeout` seconds without getting a permit."""


class CpuQueueFull(CpuGateRefused):
    """A new request found no free permit and `queue_max` new requests already parked."""


class CallerBudgetSpent(CpuGateRefused):
    """A new request's `X-Request-Timeout` ran out before it got a permit: 504, not 503."""


class _Permit:
    """One request's permit, and the ``async with`` that holds it (`CpuGate.request`).

    Shared (by context copy) with the tasks the request starts. A class rather than an
    ``asynccontextmanager``: it is held for the whole request, and a generator-based one costs
    each request in flight a generator, its frame and a wrapper (~0.6 KB), plus the work of
    driving them on the way in and out.
    """

    __slots__ = ("_scope", "_token", "gate", "held", "io_waits")

    def __init__(self, gate: CpuGate, scope: Scope | None) -> None:
        self.gate = gate
        self.held = False
        self.io_waits = 0
        self._scope = scope
        self._token: Token[_Permit | None] | None = None

    async def __aenter__(self) -> None:
        scope, self._scope = self._scope, None  # read only while parked: not kept after
        await self.gate._acquire(resuming=False, scope=scope)  # noqa: SLF001 - the gate's own
        self.held = True
        self._token = _current.set(self)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
        if self.held:
            self.held = False
            self.gate._release()  # noqa: SLF001


_current: ContextVar[_Permit | None] = ContextVar("cpu_gate_permit", default=None)

#: A parked request's future: None once it is handed a permit, the refusal's class if refused.
_Waiter = asyncio.Future[type[CpuGateRefused] | None]


class CpuGate:
    """At most `permits` requests hold the loop's CPU at once; resuming ones are served first."""

    def __init__(
        self,
        permits: int,
        *,
        queue_timeout: float | None = None,
        queue_max: int | None = None,
        new_every: int = 2,
        on_timeout: Callable[[], object] | None = None,
        on_overflow: Callable[[], object] | None = None,
    ) -> None:
        """Allow `permits` requests to do CPU work at once; new ones wait `queue_timeout` s at most.

        At most `queue_max` new requests wait at once; one more is refused at once. None (for
        either): no bound. A waiting new request gets the permit after `new_every` in a row
        went to requests back from a signer. `on_timeout` and `on_overflow` are called for
        each request refused by the timeout and by the bound (the metrics counters).
        """
        if permits < 1:
            raise ValueError("permits must be at least 1")
        if queue_timeout is not None and queue_timeout <= 0:
            raise ValueError("queue_timeout must be positive")
        if queue_max is not None and queue_max < 1:
            raise ValueError("queue_max must be at least 1")
        if new_every < 1:
            raise ValueError("new_every must be at least 1")
        self.permits = permits
        self.queue_timeout = queue_timeout
        self.queue_max = queue_max
        # An int either way, so a parking request's check is one comparison.
        self._admit_max = sys.maxsize if queue_max is None else queue_max
        self.new_every = new_every
        self._resumed_in_a_row = 0
        self.timed_out = 0
        self.overflowed = 0
        self._on_timeout = on_timeout
        self._on_overflow = on_overflow
        self._free = permits
        # Parked waiters, FIFO per queue. A waiter that is cancelled stays in its deque (removing
        # it would cost O(n) per cancellation, O(n^2) when a crowd of clients disconnects) and is
        # skipped on hand-over; the counts below are exact.
        self._resume: deque[_Waiter] = deque()
        self._admit: deque[_Waiter] = deque()
        self.resuming = 0
        self.admitting = 0

    @property
    def busy(self) -> int:
        """Permits taken now."""
        return self.permits - self._free

    @property
    def waiting(self) -> int:
        """Requests parked for a permit, new and resuming."""
        return self.admitting + self.resuming

    async def _acquire(self, *, resuming: bool, scope: Scope | None = None) -> None:
        # A free permit means nobody waits: `_release` hands permits to waiters before it frees
        # one, and a request parks only when none is free. A permit found free counts in the
        # row `new_every` bounds as a handed-over one does.
        if self._free > 0:
            self._free -= 1
            self._resumed_in_a_row = self._resumed_in_a_row + 1 if resuming else 0
            return
        loop = asyncio.get_running_loop()
        expiry: asyncio.TimerHandle | None = None
        budget_end = math.inf  # event-loop time the caller's budget ends (new requests)
        if resuming:  # never refused: bounded by the requests admitted
            waiter: _Waiter = loop.create_future()
            self._resume.append(waiter)
            self.resuming += 1
        else:
            # `admitting` is exact (a cancelled or timed-out waiter is uncounted at once), so
            # each one gone frees its place in the bound.
            if self.admitting >= self._admit_max:
                self._overflow()
            waiter = loop.create_future()
            self._admit.append(waiter)
            self.admitting += 1
            wait = math.inf if self.queue_timeout is None else self.queue_timeout
            caller_wait = _caller_budget_left(scope, loop)
            budget_end = loop.time() + caller_wait
            if caller_wait < wait:  # the caller gives up first: one timer either way
                expiry = loop.call_later(caller_wait, self._expire, waiter, CallerBudgetSpent)
            elif wait < math.inf:
                expiry = loop.call_later(wait, self._expire, waiter)
        try:
            refused = await waiter
        except asyncio.CancelledError:
            self._left(waiter, resuming=resuming)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        if refused is not None:
            raise refused  # made here, not held by the waiter (see `_expire`)
        if budget_end - loop.time() < MIN_ATTEMPT_SECONDS:
            # Handed a permit with too little of its caller's budget left to send a signer
            # attempt (a hand-over in a loop turn that ran late, or just before its timer):
            # its deadline would refuse it after its body was read and checked. Refused now,
            # its permit goes on to a request that can still use it.
            self._release()
            raise CallerBudgetSpent

    def _left(self, waiter: _Waiter, *, resuming: bool) -> None:
        """A parked request was cancelled: take it out of its count, or pass its permit on."""
        if not waiter.done():
            waiter.cancel()
        if waiter.cancelled():  # cancelled while parked
            if resuming:
                self.resuming -= 1
            else:
                self.admitting -= 1
        elif waiter.result() is None:
            self._release()  # handed a permit, cancelled before using it: pass it on
        # (timed out and cancelled at once: `_expire` did the counting)

    def _expire(self, waiter: _Waiter, why: type[CpuGateRefused] = CpuQueueTimeout) -> None:
        """Timer: a new request waited `queue_timeout`, or its caller's budget, for a permit.

        The waiter is given the refusal's class, not an exception: one set on it would keep,
        in its traceback, the frames it was raised through (the request's scope, its send and
        receive, ~9 KB) for as long as the waiter stays in its queue, which for a caller's
        short budget is behind the live waiters parked before it, up to the queue timeout.
        """
        if waiter.done():
            return
        self.admitting -= 1
        waiter.set_result(why)
        if why is CpuQueueTimeout:  # the gate's own limit: counted as overload
            self.timed_out += 1
            if self._on_timeout is not None:
                self._on_timeout()

    def _overflow(self) -> NoReturn:
        """Refuse a new request at once: `queue_max` new ones are already parked."""
        self.overflowed += 1
        if self._on_overflow is not None:
            self._on_overflow()
        raise CpuQueueFull

    def _release(self) -> None:
        """Hand the permit to the next live waiter, else free it.

        Resuming waiters first, except after `new_every` of them in a row.
        """
        if self._resumed_in_a_row >= self.new_every:
            order = ((self._admit, False), (self._resume, True))
        else:
            order = ((self._resume, True), (self._admit, False))
        for queue, resuming in order:
            while queue:
                waiter = queue.popleft()
                if waiter.done():  # cancelled while parked: already uncounted
                    continue
                if resuming:
                    self.resuming -= 1
                    self._resumed_in_a_row += 1
                else:
                    self.admitting -= 1
                    self._resumed_in_a_row = 0
                waiter.set_result(None)
                return
        self._free += 1

    def request(self, scope: Scope | None = None) -> _Permit:
        """``async with``: hold a permit for the block (minus its `io_wait` stretches).

        `scope`: the request's, whose `X-Request-Timeout` (counted from `scope[ARRIVED_AT]`)
        bounds its wait when it has to park.
        """
        return _Permit(self, scope)

    def snapshot(self) -> dict[str, Any]:
        """The /readyz view."""
        return {
            "permits": self.permits,
            "busy": self.busy,
            "waiting": self.waiting,
            "waitingToResume": self.resuming,
            "newEvery": self.new_every,
            "queueTimeoutSeconds": self.queue_timeout,
            "timedOut": self.timed_out,
            "queueMax": self.queue_max,
            "overflowed": self.overflowed,
        }


def _caller_budget_left(scope: Scope | None, loop: asyncio.AbstractEventLoop) -> float:
    """Seconds left of the caller's `X-Request-Timeout` (counted from arrival); inf without one.

    A malformed or repeated field counts as none here: the request is answered 400 for it
    once admitted (`resilience.caller_timeout`).
    """
    if scope is None:
        return math.inf
    values = request_timeout_fields(scope)
    if not values:
        return math.inf
    try:
        seconds = parse_request_timeout_fields(values)
    except ValueError:
        return math.inf
    now = loop.time()
    arrived: float = scope.get(ARRIVED_AT, now)
    return max(0.0, arrived + seconds - now)


class _IoWait:
    """`io_wait`'s block (a class for the reason `_Permit` is one)."""

    __slots__ = ("_permit", "_take_again")

    def __init__(self, *, take_again: bool) -> None:
        self._permit: _Permit | None = None
        self._take_again = take_again

    async def __aenter__(self) -> None:
        permit = self._permit = _current.get()
        if permit is None:
            return
        permit.io_waits += 1
        if permit.held:
            permit.held = False
            permit.gate._release()  # noqa: SLF001 - the gate's own helper

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        permit = self._permit
        if permit is None:
            return
        permit.io_waits -= 1
        if exc_type is not None or not self._take_again:  # not taken again (see io_wait)
            return
        if permit.io_waits == 0 and not permit.held:
            await permit.gate._acquire(resuming=True)  # noqa: SLF001
            permit.held = True


def io_wait(*, take_again: bool = True) -> _IoWait:
    """``async with``: the current request's permit given back while the block awaits I/O.

    It is taken again after the block. Outside a gated request this does nothing. Concurrent
    waits of one request (the signer calls of `/v1/print` in a task group) share one permit:
    it is given back by the first and taken again when the last ends. When the block fails,
    the permit is not taken again: what is left (rendering the error) is small, and
    cancellation must not wait in a queue. `take_again=False` does the same after a block
    that succeeds, for I/O a failing request still does on its way out (an issuance session
    put back in a shared store).
    """
    return _IoWait(take_again=take_again)


async def checkpoint() -> None:
    """End the current task step: the loop runs what else is ready before the request goes on.

    A gated request that finds its permit and its body ready runs body parsing, validation,
    dependencies and the handler up to the signer call in one step. FastAPI's thread-pool hops
    (plain ``def`` dependencies) used to split that; without them the load test measured
    single steps of 115-120 ms during a 500-request burst and loop lag up to 1.4 s in the
    1,000-client bench. One yield in the issuance dependencies brings both back under their
    bounds at no measurable CPU cost (no thread, no permit hand-over).
    """
    await asyncio.sleep(0)


class _ReceiveWithoutPermit:
    """The request's `receive`, waited on without a permit.

    Waiting for the caller's body bytes is I/O: a slow sender must not hold a permit. But most
    bodies are already buffered when the handler asks for them (they came with the head), and
    then `receive` returns without suspending. Handing the permit over around it anyway cost
    every request under load one more park in the queue, between reading its body and
    validating it, for no I/O at all. So the receive is run one step first: done, the request
    goes on with its permit; suspended, the permit is handed over for the rest of the wait.

    A slotted object rather than a closure: it lives as long as the request.
    """

    __slots__ = ("_receive",)

    def __init__(self, receive: Receive) -> None:
        self._receive = receive

    async def __call__(self) -> Message:
        step = self._receive()
        if type(step) is not CoroutineType:  # another awaitable: no step to try first
            async with io_wait():
                return await step
        try:
            suspended_on = step.send(None)
        except StopIteration as done:
            message: Message = done.value
            return message
        async with io_wait():
            return await _Continued(step, suspended_on)


class _Continued:
    """Awaitable: a coroutine already run one step (to `first`, what it suspended on), driven on.

    What ``await coroutine`` does from the start, picked up after the first step: what the task
    sends or throws in goes to the coroutine, what it yields goes up to the task. What is thrown
    in is passed on outside the ``except`` that caught it: passed on from within, an error the
    coroutine raised after dealing with it would be chained to it (its ``__context__``), which
    a plain ``await`` does not do.
    """

    __slots__ = ("_first", "_step")

    def __init__(self, step: Coroutine[Any, Any, Message], first: object) -> None:
        self._step = step
        self._first = first

    def __await__(self) -> Generator[Any, Any, Message]:
        step, suspended_on = self._step, self._first
        while True:
            thrown: BaseException | None = None
            try:
                sent = yield suspended_on
            except GeneratorExit:
                step.close()
                raise
            except BaseException as caught:  # noqa: BLE001 - every one goes on to the coroutine
                thrown = caught
            try:
                suspended_on = step.send(sent) if thrown is None else step.throw(thrown)
            except StopIteration as done:
                message: Message = done.value
                return message
            finally:
                # Not kept in this frame: an error passing out through it would hold itself.
                del thrown


class CpuGateMiddleware:
    """Pure ASGI middleware: `/v1` requests run under a `CpuGate` permit."""

    def __init__(self, app: ASGIApp, *, gate: CpuGate) -> None:
        """Gate the `/v1` requests with `gate`."""
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run gated requests under a permit; pass everything else straight through."""
        if scope["type"] != "http" or not scope["path"].startswith(_GATED_PREFIX):
            await self.app(scope, receive, send)
            return
        scope[ARRIVED_AT] = asyncio.get_running_loop().time()
        admitted = False
        try:
            async with self.gate.request(scope):
                admitted = True
                await self.app(scope, _ReceiveWithoutPermit(receive), send)
        except CpuGateRefused as refused:
            if admitted:  # only taking the permit is refused; anything else is not ours
                raise
            if isinstance(refused, CallerBudgetSpent):
                # Answered with its body unread, as the body limits' refusals from the head
                # are: the connection closes (the server reads on, dropping the rest), so a
                # caller holding its body back (`Expect: 100-continue`) cannot have its next
                # request read as this one's body. Its caller has given up by now anyway.
                await send_problem(
                    send,
                    scope,
                    status=DeadlineExceeded.status,
                    type_=PROBLEM_BASE + DeadlineExceeded.slug,
                    title=DeadlineExceeded.title,
                    detail=BUDGET_SPENT_BEFORE_SIGNING,
                    headers=_CLOSE,
                )
                return
            if isinstance(refused, CpuQueueTimeout):
                why = f"could not start this request within {self.gate.queue_timeout:g} s"
            else:
                why = "has too many requests waiting to start"
            await send_problem_503(
                send,
                scope,
                slug="overloaded",
                title="Gateway overloaded",
                detail=f"the gateway {why}; it reached no signer; retry later",
                # A body held back for `100 Continue` is never asked for: kept, the
                # connection would read the caller's next request as this one's body.
                close=_holds_body_back(scope),
            )


def _holds_body_back(scope: Scope) -> bool:
    """Whether the request waits for `100 Continue` before it sends its body."""
    return any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"]
    )
