"""The drain inside the app: which requests are in flight, refused, or cancelled at shutdown.

`DrainController` counts the requests in flight and, once `drain()` begins (SIGTERM, from
`resilience/shutdown.py`), has every new one answered 503 `shutting-down`; at the drain's
timeout it cancels those still running. `DrainMiddleware`, outside every other middleware but
the request metrics, tracks each request from its arrival and answers a cancelled one 503
problem+json with `Connection: close` if its response had not started; one whose answer had
begun raises `AnswerCut`, and the server closes the connection under it. The probes
(`EXEMPT_PATHS`) are never counted nor refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_gateway.errors import send_problem_503
from signing_gateway.observability.context import caller_gone
from signing_gateway.observability.logging import note_answered

logger = logging.getLogger("signing_gateway.shutdown")

#: Paths that never count as work and are never refused: the orchestrator must see them.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: The problem slug of every drain answer (refused, or cancelled at the drain timeout).
SHUTTING_DOWN = "shutting-down"
#: The status `DrainMiddleware` answers a cancelled request with (its response not started).
CANCELLED_STATUS = 503


class Drainable(Protocol):
    """Something that shows draining (the readiness monitor)."""

    draining: bool


class DrainController:
    """Counts in-flight requests, refuses new ones while draining, cancels the stragglers."""

    def __init__(self, *, drain_timeout: float, cancel_grace: float) -> None:
        """Configure the drain and cancel windows (seconds)."""
        self.drain_timeout = drain_timeout
        self.cancel_grace = cancel_grace
        self.draining = False
        self._scopes: set[asyncio.Timeout] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._watchers: list[Drainable] = []
        self._stop_now = False
        self._waiting: asyncio.Timeout | None = None

    @property
    def stopping_now(self) -> bool:
        """Whether the drain was told to stop waiting (`stop_now`)."""
        return self._stop_now

    @property
    def in_flight(self) -> int:
        """Requests being served (exempt paths excluded)."""
        return len(self._scopes)

    def attach(self, watcher: Drainable) -> None:
        """Have `watcher.draining` follow this controller (the readiness monitor)."""
        self._watchers.append(watcher)
        watcher.draining = self.draining

    def begin(self) -> None:
        """Start refusing new work and report not-ready."""
        self.draining = True
        for watcher in self._watchers:
            watcher.draining = True

    def track(self, scope: asyncio.Timeout) -> None:
        """Register the cancel scope of a request being served."""
        self._scopes.add(scope)
        self._idle.clear()

    def untrack(self, scope: asyncio.Timeout) -> None:
        """Forget a finished request."""
        self._scopes.discard(scope)
        if not self._scopes:
            self._idle.set()

    def stop_now(self) -> None:
        """Cut the drain's wait short: what is in flight is cancelled at once (a second signal)."""
        self._stop_now = True
        waiting = self._waiting
        if waiting is not None and not waiting.expired():
            waiting.reschedule(asyncio.get_running_loop().time())

    async def drain(self) -> int:
        """Refuse new work, wait for in-flight requests, cancel the rest; return how many."""
        self.begin()
        logger.info("draining", extra={"in_flight": self.in_flight})
        if not self._stop_now:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.drain_timeout) as self._waiting:
                    await self._idle.wait()
            self._waiting = None
        left = self.in_flight
        if left:
            why = "second signal" if self._stop_now else "drain timeout"
            logger.warning("%s: cancelling requests", why, extra={"in_flight": left})
            now = asyncio.get_running_loop().time()
            for scope in list(self._scopes):
                scope.reschedule(now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.cancel_grace):
                    await self._idle.wait()
        return left


class AnswerCut(BaseException):
    """Raised to end an answer begun and not finished: the drain cut its request.

    The ASGI way to abort an answer: the server closes the connection under it, so the caller
    sees it end short of its length (or its last chunk). Logged where it is raised, and marked
    so (`note_answered`), so uvicorn's "Exception in ASGI application" is not written for it.
    A `BaseException`, so that no handler of the app's takes it for an error to answer 500.
    """


class _TrackingSend:
    """The request's `send`, noting whether the response has started.

    A slotted object rather than a closure: it lives as long as the request.
    """

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class DrainMiddleware:
    """Pure ASGI middleware applying a `DrainController` to every HTTP request."""

    def __init__(self, app: ASGIApp, *, controller: DrainController) -> None:
        """Wrap the next ASGI app."""
        self.app = app
        self.controller = controller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse while draining; otherwise serve under a cancel scope the drain can expire."""
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        controller = self.controller
        if controller.draining:
            await send_problem_503(
                send,
                scope,
                slug=SHUTTING_DOWN,
                title="Gateway shutting down",
                detail="this instance is shutting down; send the request to another one",
                close=True,
            )
            return
        tracking_send = _TrackingSend(send)
        cancel_scope = asyncio.timeout(None)
        controller.track(cancel_scope)
        try:
            async with cancel_scope:
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if not cancel_scope.expired():
                raise
            if not tracking_send.started:
                await _answer_cancelled(send, scope)
                return
            # Half sent: ended as an ASGI app aborts an answer, by raising; the server closes
            # the connection, and the caller sees the answer end short. Returning instead left
            # uvicorn to log an ERROR ("ASGI callable returned without completing response").
            logger.warning("answer cut short by the shutdown")
            cut = AnswerCut()
            note_answered(cut)
            raise cut from None
        except asyncio.CancelledError:
            # Cancelled by something other than the drain: uvicorn's graceful-shutdown backstop
            # (a request the drain's cancellation did not end, a server without the drain) or
            # the event loop's end. uvicorn would answer a plain-text 500; the caller gets the
            # drain's answer instead, which its audit record (if any) already says. Or by the
            # server's protocol, its caller gone: nobody to answer (`RequestMetricsMiddleware`
            # ends it).
            if tracking_send.started or caller_gone(scope):
                raise  # a response half sent: the connection is closed under it
            await _answer_cancelled(send, scope)
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # answered: the request ends here, as it would have
        finally:
            controller.untrack(cancel_scope)


async def _answer_cancelled(send: Send, scope: Scope) -> None:
    """The answer to a request cancelled before its response started: 503 `shutting-down`."""
    await send_problem_503(
        send,
        scope,
        slug=SHUTTING_DOWN,
        title="Gateway shutting down",
        detail="the gateway shut down before the request finished; no credential "
        "was released (a signer may have signed one: it is discarded); send it again",
        close=True,
    )
