"""The served event loop: asyncio's, handling at most N ready sockets per pass.

asyncio's loop asks the selector for every ready socket and runs a callback for each before
it looks at its timers again. Under bench S1's load (1,000 callers, a 1 s signer) answers come
back from the signer in waves and callers send their next request as soon as they have their
answer, so a single pass can find hundreds of sockets ready: each one's protocol callback
parses HTTP and wakes or starts a task (tens to hundreds of microseconds), and everything
else, `/healthz` and the loop-lag timer included, waits for the whole pass.

`BoundedEpollSelector` returns at most `max_events` ready sockets per `select()`. epoll is
level-triggered, so a socket left out is still ready at the next pass, and when more are
ready than asked for the kernel goes round them in turn (epoll_wait(2)): none is starved.
The work is the same; it is cut into passes with the timers served in between.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_EVENTS_PER_PASS", "BoundedEpollSelector", "bounded_loop_factory"]

#: Ready sockets handled per loop pass unless `--events-per-pass` says otherwise.
DEFAULT_EVENTS_PER_PASS = 64


class _ClampedEpoll:
    """An `epoll` object whose `poll()` reports at most `max_events` ready descriptors."""

    def __init__(self, epoll: Any, max_events: int) -> None:  # noqa: ANN401 - select.epoll
        self._epoll = epoll
        self._max_events = max_events

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        wanted = self._max_events if maxevents <= 0 else min(maxevents, self._max_events)
        events: list[tuple[int, int]] = self._epoll.poll(timeout, wanted)
        return events

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - register, modify, close, ...
        return getattr(self._epoll, name)


class BoundedEpollSelector(selectors.EpollSelector):
    """An epoll selector whose `select()` returns at most `max_events` ready sockets."""

    def __init__(self, max_events: int = DEFAULT_EVENTS_PER_PASS) -> None:
        """Open the epoll object; `max_events` bounds each `select()`."""
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        super().__init__()
        # EpollSelector.select() asks its epoll object for up to one event per registered
        # descriptor; the wrapper lowers that bound and leaves everything else as it is.
        epoll: Any = self._selector  # type: ignore[has-type]
        self._selector = _ClampedEpoll(epoll, max_events)
        self.max_events = max_events


def bounded_loop_factory(
    events_per_pass: int = DEFAULT_EVENTS_PER_PASS,
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of asyncio loops handling at most `events_per_pass` ready sockets a pass."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - epoll is Linux's
        return asyncio.SelectorEventLoop

    def new_loop() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(BoundedEpollSelector(events_per_pass))

    return new_loop
