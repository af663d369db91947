"""One overall deadline per inbound request, around all of its signer work.

The budget is the `request_deadline_seconds` setting, or less when the caller asks for less
with `X-Request-Timeout: <seconds>` (counted from the request's arrival; never more than the
setting). Inside the deadline, `remaining_seconds()` tells each signer attempt how much time
is left, and `with_deadline_header` passes it on to the signer as `X-Request-Deadline-Ms`.

When the deadline cuts the work, the answer is one 504 `deadline-exceeded` naming the parts
(`european`, `domestic`, `european[0]`, ...) that had not finished, however the cut reached
them: the deadline's own timer cancelling the block, or a part's signer call ending (its
attempt timed out at the deadline, say) once the deadline has run out. On /v1/print and
/v1/credentials each part runs in its own task, and which of those two a loop turn delivers
first is up to the event loop's timer order; the answer must not be. A cut before any signer
attempt was started (`SignerAttempt` notes one) says that no signer was called.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from signing_gateway.errors import DeadlineExceeded, GatewayError
from signing_gateway.resilience.policy import MIN_ATTEMPT_SECONDS

REQUEST_TIMEOUT_HEADER = "X-Request-Timeout"
DEADLINE_HEADER = "X-Request-Deadline-Ms"

T = TypeVar("T")

#: Signer work a request's deadline cut before any of it could start: no signer is to blame.
BUDGET_SPENT_BEFORE_SIGNING = (
    "the request's time budget ran out before signing started; no signer was called, "
    "nothing was issued"
)


@dataclass(frozen=True, slots=True)
class CallerBudget:
    """The budget a caller asked for, and when (event-loop time) its request arrived."""

    arrived_at: float
    seconds: float


caller_budget_var: ContextVar[CallerBudget | None] = ContextVar("caller_budget", default=None)
_deadline_var: ContextVar[RequestDeadline | None] = ContextVar("request_deadline", default=None)


#: An `X-Request-Timeout` value: ASCII decimal digits, a fraction and an exponent optional.
#: Narrower than `float()`, which also takes `1_0` (ten), a sign, `inf`, `nan` and spaces
#: other than the field's own: a proxy or the caller's own tools would read those otherwise.
_DECIMAL_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def parse_request_timeout(value: str) -> float:
    """Read an `X-Request-Timeout` value: positive decimal seconds; ValueError otherwise."""
    text = value.strip(" \t")
    if not _DECIMAL_SECONDS.fullmatch(text):
        raise ValueError("must be a positive number of seconds")
    seconds = float(text)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a positive number of seconds")
    return seconds


#: The caller's budget field as an ASGI scope names it.
REQUEST_TIMEOUT_FIELD = REQUEST_TIMEOUT_HEADER.lower().encode("latin-1")


def request_timeout_fields(scope: Mapping[str, Any]) -> list[bytes]:
    """The value of each `X-Request-Timeout` field of an ASGI request (none: an empty list)."""
    return [value for name, value in scope.get("headers", ()) if name == REQUEST_TIMEOUT_FIELD]


def parse_request_timeout_fields(values: list[bytes]) -> float:
    """The seconds `values` (`request_timeout_fields`) ask for; ValueError if not one number.

    Two fields mean what one field with both values, comma-separated, means (RFC 9110 5.3),
    which is no number.
    """
    return parse_request_timeout(b", ".join(values).decode("latin-1"))


def current_request_deadline() -> RequestDeadline | None:
    """The current request's deadline (None outside one)."""
    return _deadline_var.get()


def remaining_seconds() -> float | None:
    """Seconds left until the current request's deadline (None outside one; may be <= 0)."""
    deadline = _deadline_var.get()
    if deadline is None:
        return None
    return deadline.at - asyncio.get_running_loop().time()


def with_deadline_header(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` plus the remaining budget in whole milliseconds, for one signer attempt."""
    return _with_budget(headers, _deadline_var.get())


def _with_budget(headers: Mapping[str, str], deadline: RequestDeadline | None) -> dict[str, str]:
    if deadline is None:
        return dict(headers)
    left = deadline.at - asyncio.get_running_loop().time()
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
        """Start one attempt; the request's deadline notes that a signer was called."""
        deadline = _deadline_var.get()
        if deadline is not None:
            deadline.signer_called = True
        headers = _with_budget(self._headers, deadline)
        if self._kwargs is None:
            return self._call(*self._args, headers=headers)
        return self._call(*self._args, headers=headers, **self._kwargs)


def _effective_budget(seconds: float, now: float) -> float:
    asked = caller_budget_var.get()
    if asked is None:
        return seconds
    return min(seconds, asked.seconds - (now - asked.arrived_at))


class RequestDeadline:
    """`request_deadline`'s block, held for each request's whole signer wait.

    It knows the parts of the request's signer work that have not finished yet, so every way
    the deadline can cut that work gives the same answer (`exceeded`).

    A class, not an ``asynccontextmanager``: a generator, its frame and a wrapper less per
    request in flight.
    """

    __slots__ = ("_budget", "_scope", "_seconds", "_token", "_unfinished", "at", "signer_called")

    def __init__(self, seconds: float, parts: Sequence[str] = ()) -> None:
        """A deadline of `seconds` around the signer work of `parts` (named as problems are)."""
        self._seconds = seconds
        self._unfinished: Sequence[str] = parts
        self._budget = 0.0
        self._scope: asyncio.Timeout | None = None
        self._token: Token[RequestDeadline | None] | None = None
        #: Event-loop time at which the deadline expires (set on entering the block).
        self.at = math.inf
        #: Whether a signer attempt was started in the block (`SignerAttempt`): a cut before
        #: that blames no signer.
        self.signer_called = False

    async def __aenter__(self) -> Self:
        """Start the clock; a caller's budget already spent is a 504 at once."""
        now = asyncio.get_running_loop().time()
        budget = self._budget = _effective_budget(self._seconds, now)
        # The caller's budget went on waiting for the gateway (its CPU gate, its body), and
        # what is left of it cannot send a signer attempt (`MIN_ATTEMPT_SECONDS`): cut now,
        # not at the signer call, whose 504 would name a signer as slow.
        if budget <= 0 or (budget < MIN_ATTEMPT_SECONDS and budget < self._seconds):
            raise self._exceeded(BUDGET_SPENT_BEFORE_SIGNING)
        self.at = now + budget
        # Set before the timer is armed: its handle copies the context, and a copy taken
        # before the set kept the context's previous contents alive beside the new ones for
        # the whole signer wait (~0.15 KB per request in flight).
        token = self._token = _deadline_var.set(self)
        scope = self._scope = asyncio.timeout_at(self.at)
        try:
            await scope.__aenter__()
        except BaseException:
            _deadline_var.reset(token)
            self._scope = self._token = None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Turn the deadline's cancellation of the block into its 504."""
        scope = self._scope
        assert scope is not None  # noqa: S101 - entered
        try:
            await scope.__aexit__(exc_type, exc, tb)
        except TimeoutError as timeout:  # the deadline cancelled the block
            if scope.expired():
                raise self.exceeded() from timeout
            raise
        finally:
            if self._token is not None:
                _deadline_var.reset(self._token)
            # Timer handles armed in the block copied the context that holds this object, and
            # a cancelled one waits in the loop's heap until its time: past the request, this
            # object must not hold the request's task (the scope does).
            self._scope = self._token = None
        if isinstance(exc, TimeoutError) and scope.expired():
            raise self.exceeded() from exc

    def expired(self) -> bool:
        """Whether the deadline has run out, asked inside the block: its timer fired, or is due.

        A loop that wakes late may fire a part's attempt timer in one turn, then hold past
        this deadline before the part sees its timeout, and fire this timer only in the next:
        the deadline had run out all the same when the part failed (`call_signer`).
        """
        scope = self._scope
        if scope is None:
            return False
        return scope.expired() or asyncio.get_running_loop().time() >= self.at

    def finished(self, part: str) -> None:
        """Note that `part` finished: a cut from now on does not name it."""
        self._unfinished = [name for name in self._unfinished if name != part]

    def exceeded(self) -> DeadlineExceeded:
        """The 504 for signer work this deadline cut, naming the parts not finished.

        Cut before any signer attempt was started (the loop busy with the request's own CPU
        work, or other requests', past the deadline), it says that no signer was called: the
        signer-timeout wording would blame a signer that never saw the request.
        """
        if not self.signer_called:
            return self._exceeded(BUDGET_SPENT_BEFORE_SIGNING)
        signers = "signer" if len(self._unfinished) == 1 else "signers"
        # "Released", not "issued": a part that finished (a static proof on /v1/print), or a
        # signer that answered as the deadline cut the wait, may have signed; it is discarded.
        return self._exceeded(
            f"the {signers} did not finish within {_seconds_text(self._budget)} s; "
            "no credential was released"
        )

    def _exceeded(self, message: str) -> DeadlineExceeded:
        parts = self._unfinished
        detail = f"{', '.join(parts)}: {message}" if parts else message
        return DeadlineExceeded(detail, parts=parts)


def _seconds_text(seconds: float) -> str:
    """`seconds` as a detail says it: to the ms; under 1 ms to one digit, not as `0`."""
    if round(seconds, 3) > 0:
        return f"{round(seconds, 3):g}"
    if seconds <= 0:
        return "0"
    return format(Decimal(f"{seconds:.1g}"), "f")  # 4e-05 as 0.00004


def request_deadline(seconds: float, *, parts: Sequence[str] = ()) -> RequestDeadline:
    """``async with``: cancel the enclosed signer work after `seconds` with a 504.

    Or sooner, when the caller's budget (``X-Request-Timeout``) is shorter. The 504 names
    `parts`, the parts of the request the enclosed work signs.
    """
    return RequestDeadline(seconds, parts)


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _answer(
    group: BaseExceptionGroup[BaseException], deadline: RequestDeadline
) -> GatewayError | None:
    """What the failed parts answer: the first part's own failure, else the deadline's cut.

    A part's own failure (a signer error, a credential that failed verification) says more
    than the deadline that cut the others. None when no part failed as expected: a bug.
    """
    cut = False
    for exc in _leaves(group):
        if isinstance(exc, DeadlineExceeded):
            cut = True
        elif isinstance(exc, GatewayError):
            return exc
    return deadline.exceeded() if cut else None


def _failed(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is not None


async def all_or_nothing(
    calls: Mapping[str, Callable[[], Awaitable[Any]]],
    *,
    seconds: float,
    held_back: Collection[str] = (),
) -> list[Any]:
    """Run `calls` (part name → call) concurrently under one request deadline of `seconds`.

    On the first failure the rest are cancelled and that failure is raised (it names its
    part). When the deadline cuts the calls instead, the 504 names every part that had not
    finished, in the order of `calls`. Anything else is a bug and propagates as the exception
    group. The results come back in the order of `calls`.

    The parts named in `held_back` start one loop turn after the others, once those have run
    their first step, and not at all when one of those failed in it. A signer call refused
    at once (breaker open, bulkhead full, no time left to send) fails in its first step, so
    the request fails before a held-back call goes out. For parts whose call costs something
    even when its result is thrown away: the domestic `/issue` spends its single-use session,
    a static proof a signing.
    """
    deadline = RequestDeadline(seconds, tuple(calls))
    results: list[Any] = [None] * len(calls)

    async def run(index: int, part: str, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()
        deadline.finished(part)

    async with deadline:
        try:
            async with asyncio.TaskGroup() as group:
                started: list[asyncio.Task[None]] = []
                later: list[tuple[int, str, Callable[[], Awaitable[Any]]]] = []
                for index, (part, call) in enumerate(calls.items()):
                    if part in held_back:
                        later.append((index, part, call))
                    else:
                        started.append(group.create_task(run(index, part, call)))
                if later and started:
                    await asyncio.sleep(0)  # the started parts run their first step
                    if any(_failed(task) for task in started):
                        later = []  # the group cancels the rest: start nothing more
                for index, part, call in later:
                    group.create_task(run(index, part, call))
        except BaseExceptionGroup as eg:
            answer = _answer(eg, deadline)
            if answer is None:
                raise
            raise answer from None
    return results
