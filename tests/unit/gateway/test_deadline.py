"""The per-request deadline and the all-or-nothing runner of concurrent signer calls."""

from __future__ import annotations

import asyncio
import time

import pytest

from signing_gateway.errors import DeadlineExceeded, SignerUnavailable
from signing_gateway.issuance.deadline import (
    DEADLINE_HEADER,
    CallerBudget,
    SignerAttempt,
    all_or_nothing,
    caller_budget_var,
    remaining_seconds,
    request_deadline,
)


async def test_deadline_turns_expiry_into_deadline_exceeded():
    """Work still running at the deadline is cancelled and answered as DeadlineExceeded."""
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async with request_deadline(0.05):
            await asyncio.sleep(5)
    assert time.monotonic() - started < 0.5


async def test_deadline_leaves_other_timeouts_alone():
    """A TimeoutError raised by the work itself is not mistaken for the deadline."""
    with pytest.raises(TimeoutError):
        async with request_deadline(5):
            raise TimeoutError


async def test_the_deadline_is_known_inside_and_gone_after_however_the_block_ends():
    """remaining_seconds() counts down inside the block; after it, success or not, it is None."""
    assert remaining_seconds() is None
    async with request_deadline(5):
        left = remaining_seconds()
        assert left is not None
        assert 4 < left <= 5
    assert remaining_seconds() is None
    with pytest.raises(DeadlineExceeded):
        async with request_deadline(0.01):
            await asyncio.sleep(1)
    assert remaining_seconds() is None
    with pytest.raises(SignerUnavailable):
        async with request_deadline(5):
            raise SignerUnavailable("down")
    assert remaining_seconds() is None


async def test_each_signer_attempt_sends_the_budget_left_when_it_starts():
    """A SignerAttempt passes its arguments on, and each call carries the deadline left then."""
    sent: list[tuple[tuple[object, ...], dict[str, object]]] = []

    async def call(*args: object, **kwargs: object) -> str:
        sent.append((args, kwargs))
        return "signed"

    headers = {"X-Request-ID": "r-1"}
    attempt = SignerAttempt(call, "request", headers=headers, part="eu")
    async with request_deadline(5):
        assert await attempt() == "signed"
        await asyncio.sleep(0.05)
        assert await attempt() == "signed"
    (first_args, first), (_, second) = sent
    assert first_args == ("request",)
    assert first["part"] == "eu"
    assert first["headers"]["X-Request-ID"] == "r-1"
    budgets = [int(kwargs["headers"][DEADLINE_HEADER]) for kwargs in (first, second)]
    assert 4900 < budgets[0] <= 5000
    assert budgets[1] <= budgets[0] - 40
    # Outside a deadline there is no budget to send, and the caller's headers are not changed.
    assert await attempt() == "signed"
    assert DEADLINE_HEADER not in sent[-1][1]["headers"]
    assert headers == {"X-Request-ID": "r-1"}


async def test_a_spent_caller_budget_is_exceeded_before_any_work():
    """A caller whose X-Request-Timeout went on waiting gets a 504 without the block running."""
    token = caller_budget_var.set(
        CallerBudget(arrived_at=asyncio.get_running_loop().time() - 2, seconds=1)
    )
    ran = False
    try:
        with pytest.raises(DeadlineExceeded, match="before its signer work could start"):
            async with request_deadline(5):
                ran = True
    finally:
        caller_budget_var.reset(token)
    assert not ran
    assert remaining_seconds() is None


async def test_all_or_nothing_runs_concurrently_and_keeps_order():
    """Calls run at the same time and their results come back in call order."""

    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    started = time.monotonic()
    results = await all_or_nothing(
        [lambda: after(0.2, 1), lambda: after(0.1, 2), lambda: after(0.2, 3)]
    )
    assert results == [1, 2, 3]
    assert time.monotonic() - started < 0.35


async def test_all_or_nothing_cancels_siblings_and_raises_the_failing_part():
    """The first failure cancels the others and surfaces as that part's gateway error."""
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise SignerUnavailable("european[1]: down", part="european[1]")

    with pytest.raises(SignerUnavailable) as info:
        await all_or_nothing([slow, failing])
    assert info.value.part == "european[1]"
    assert cancelled.is_set()


async def test_all_or_nothing_lets_bugs_through():
    """A non-gateway exception is a bug and propagates as the exception group."""

    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(ExceptionGroup):
        await all_or_nothing([broken])
