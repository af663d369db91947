"""One overall deadline per inbound request, around all of its signer work.

The budget is the `request_deadline_seconds` setting, or less when the caller asks for less
with `X-Request-Timeout: <seconds>` (counted from the request's arrival; never more than the
setting). Inside the deadline, `remaining_seconds()` tells each signer attempt how much time
is left, and `with_deadline_header` passes it on to the signer as `X-Request-Deadline-Ms`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from signing_gateway.errors import DeadlineExceeded, GatewayError

REQUEST_TIMEOUT_HEADER = "X-Request-Timeout"
DEADLINE_HEADER = "X-Request-Deadline-Ms"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallerBudget:
    """The budget a caller asked for, and when (event-loop time) its request arrived."""

    arrived_at: float
    seconds: float


caller_budget_var: ContextVar[CallerBudget | None] = ContextVar("caller_budget", default=None)
_deadline_var: ContextVar[float | None] = ContextVar("request_deadline", default=None)


def parse_request_timeout(value: str) -> float:
    """Read an `X-Request-Timeout` value: positive decimal seconds; ValueError otherwise."""
    seconds = float(value.strip())
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a positive number of seconds")
    return seconds


def current_deadline() -> float | None:
    """Event-loop time at which the current request's deadline expires (None outside one)."""
    return _deadline_var.get()


def remaining_seconds() -> float | None:
    """Seconds left until the current request's deadline (None outside one; may be <= 0)."""
    deadline = _deadline_var.get()
    if deadline is None:
        return None
    return deadline - asyncio.get_running_loop().time()


def with_deadline_header(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` plus the remaining budget in whole milliseconds, for one signer attempt."""
    left = remaining_seconds()
    if left is None:
        return dict(headers)
    return {**headers, DEADLINE_HEADER: str(max(0, math.floor(left * 1000)))}


class SignerAttempt(Generic[T]):
    """A signer policy's factory: each call starts one attempt, ``call(*args, headers=...)``.

    The headers carry the budget left when that attempt starts (`with_deadline_header`). A
    slotted object rather than a lambda: the factory lives for the request's whole signer
    wait, and a closure with its cells held ~300 B more per request in flight.
    """

    __slots__ = ("_args", "_call", "_headers", "_kwargs")

    def __init__(
        self,
        call: Callable[..., Awaitable[T]],
        *args: object,
        headers: Mapping[str, str],
        **kwargs: object,
    ) -> None:
        """Name the call and its arguments; `headers` go out with every attempt."""
        self._call = call
        self._args = args
        self._headers = headers
        self._kwargs = kwargs or None

    def __call__(self) -> Awaitable[T]:
        """Start one attempt."""
        headers = with_deadline_header(self._headers)
        if self._kwargs is None:
            return self._call(*self._args, headers=headers)
        return self._call(*self._args, headers=headers, **self._kwargs)


def _effective_budget(seconds: float, now: float) -> float:
    asked = caller_budget_var.get()
    if asked is None:
        return seconds
    return min(seconds, asked.seconds - (now - asked.arrived_at))


class _Deadline:
    """`request_deadline`'s block, held for each request's whole signer wait.

    A class, not an ``asynccontextmanager``: a generator, its frame and a wrapper less per
    request in flight.
    """

    __slots__ = ("_budget", "_scope", "_seconds", "_token")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._budget = 0.0
        self._scope: asyncio.Timeout | None = None
        self._token: Token[float | None] | None = None

    async def __aenter__(self) -> None:
        now = asyncio.get_running_loop().time()
        budget = self._budget = _effective_budget(self._seconds, now)
        if budget <= 0:  # the caller's budget went on waiting for the gateway (its CPU gate)
            raise DeadlineExceeded(
                "the request's time budget ran out before its signer work could start; "
                "nothing was issued"
            )
        scope = self._scope = asyncio.timeout_at(now + budget)
        await scope.__aenter__()
        self._token = _deadline_var.set(now + budget)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scope = self._scope
        assert scope is not None  # noqa: S101 - entered
        try:
            await scope.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:  # the deadline cancelled the block
            if scope.expired():
                raise self._exceeded() from timeout
            raise
        finally:
            if self._token is not None:
                _deadline_var.reset(self._token)
        if isinstance(exc, TimeoutError) and scope.expired():
            raise self._exceeded() from exc

    def _exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the signers did not finish within {max(self._budget, 0):g} s; nothing was issued"
        )


def request_deadline(seconds: float) -> _Deadline:
    """``async with``: cancel the enclosed signer work after `seconds` with a 504.

    Or sooner, when the caller's budget (``X-Request-Timeout``) is shorter.
    """
    return _Deadline(seconds)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_leaf(exc)
        if isinstance(exc, GatewayError):
            return exc
    return group


async def all_or_nothing(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run `calls` concurrently; on the first failure cancel the rest and raise that failure.

    The failure raised is the first gateway error (it names its part); anything else is a bug
    and propagates as the exception group.
    """
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    try:
        async with asyncio.TaskGroup() as group:
            for index, call in enumerate(calls):
                group.create_task(run(index, call))
    except BaseExceptionGroup as eg:
        leaf = _first_leaf(eg)
        if leaf is eg:
            raise
        raise leaf from None
    return results
