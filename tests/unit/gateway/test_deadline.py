"""The per-request deadline, what it answers when it cuts signer work, and all-or-nothing."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial

import pytest

from signing_gateway.errors import DeadlineExceeded, SignerTimedOut, SignerUnavailable
from signing_gateway.issuance.deadline import (
    BUDGET_SPENT_BEFORE_SIGNING,
    DEADLINE_HEADER,
    CallerBudget,
    SignerAttempt,
    all_or_nothing,
    caller_budget_var,
    current_request_deadline,
    parse_request_timeout,
    remaining_seconds,
    request_deadline,
    with_deadline_header,
)
from signing_gateway.issuance.faults import call_signer
from signing_gateway.observability.signer_calls import attempt_var
from signing_gateway.resilience.policy import MIN_ATTEMPT_SECONDS, SignerPolicy
from signing_gateway.settings import ResilienceSettings


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


async def _timing_out_when_cancelled() -> None:
    """Work answering a cancellation with a TimeoutError, as a client's own timer may."""
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        raise TimeoutError from None


async def test_a_cancellation_answered_with_a_timeout_error_is_still_the_deadline():
    """The deadline cut the block, whatever error its work turned the cancellation into: 504."""
    with pytest.raises(DeadlineExceeded):
        async with request_deadline(0.05):
            await _timing_out_when_cancelled()


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


async def test_the_deadline_timer_shares_the_context_the_block_runs_in():
    """The deadline is set before its timer is armed, so the timer's copy of the context is it.

    Armed first, the timer's copy kept the context's previous contents alive beside the
    block's for the whole signer wait, ~0.15 KB per request in flight (bench S4).
    """
    async with request_deadline(5) as deadline:
        handle = deadline._scope._timeout_handler  # type: ignore[union-attr]
        armed_with = handle._context.run(current_request_deadline)
        assert armed_with is deadline, armed_with
    assert current_request_deadline() is None


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


async def test_an_attempt_starting_past_the_deadline_sends_a_budget_of_zero():
    """Started in a stalled loop turn after the deadline passed: 0 ms left, never a negative."""
    loop = asyncio.get_running_loop()
    async with request_deadline(0.02):
        # The loop stalls past the deadline before this task's next step, which then runs
        # before the deadline's timer does.
        loop.call_soon(time.sleep, 0.05)
        await asyncio.sleep(0)
        headers = with_deadline_header({})
    assert headers == {DEADLINE_HEADER: "0"}


@pytest.mark.parametrize(("seconds", "sent"), [(1.2345, "1234"), (1.2348, "1234")])
async def test_the_budget_sent_is_rounded_down_to_the_millisecond(
    monkeypatch: pytest.MonkeyPatch, seconds: float, sent: str
) -> None:
    """1.2348 s left is 1234 ms: a signer is never told it has more time than is left."""
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: 100.0)
    async with request_deadline(seconds):
        headers = with_deadline_header({})
        monkeypatch.undo()
    assert headers == {DEADLINE_HEADER: sent}


@pytest.mark.parametrize("waited", [2.0, 1.0], ids=["overspent", "spent-to-the-instant"])
async def test_a_spent_caller_budget_is_exceeded_before_any_work(
    monkeypatch: pytest.MonkeyPatch, waited: float
) -> None:
    """A caller whose X-Request-Timeout went on waiting gets a 504 without the block running.

    Spent to the instant counts: 0 s left is no budget.
    """
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", lambda: 100.0)
    token = caller_budget_var.set(CallerBudget(arrived_at=100.0 - waited, seconds=1.0))
    ran = False
    try:
        with pytest.raises(DeadlineExceeded, match="before signing started"):
            async with request_deadline(5):
                ran = True
    finally:
        caller_budget_var.reset(token)
        monkeypatch.undo()
    assert not ran
    assert remaining_seconds() is None


async def test_all_or_nothing_runs_concurrently_and_keeps_order():
    """Calls run at the same time and their results come back in call order."""

    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    started = time.monotonic()
    results = await all_or_nothing(
        {"a": lambda: after(0.2, 1), "b": lambda: after(0.1, 2), "c": lambda: after(0.2, 3)},
        seconds=5,
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
        await all_or_nothing({"european[0]": slow, "european[1]": failing}, seconds=5)
    assert info.value.part == "european[1]"
    assert cancelled.is_set()


async def test_a_part_refused_at_once_starts_no_held_back_part():
    """A part failing in its first step (a breaker refusal, say) fails before a held-back one."""
    held: list[str] = []

    async def domestic() -> None:
        held.append("domestic")  # would spend a session or a signing

    async def refused() -> None:
        raise SignerUnavailable("european[0]: calls are paused", part="european[0]")

    with pytest.raises(SignerUnavailable) as info:
        await all_or_nothing(
            {"domestic": domestic, "european[0]": refused}, seconds=5, held_back=("domestic",)
        )
    assert info.value.part == "european[0]"
    assert held == []


async def test_held_back_parts_start_after_the_others_and_keep_their_place():
    """A held-back part starts once the others ran their first step; results keep call order."""
    starts: list[str] = []

    def part(name: str, value: int) -> Callable[[], Awaitable[int]]:
        async def call() -> int:
            starts.append(name)
            await asyncio.sleep(0)
            return value

        return call

    results = await all_or_nothing(
        {"domestic": part("domestic", 1), "european[0]": part("european[0]", 2)},
        seconds=5,
        held_back=("domestic",),
    )
    assert starts == ["european[0]", "domestic"]
    assert results == [1, 2]


async def test_a_held_back_part_cut_by_the_deadline_is_named_in_request_order() -> None:
    """Held back or not, the parts the deadline cut are named in the order of the request."""
    with pytest.raises(DeadlineExceeded) as info:
        await all_or_nothing(
            {"domestic": _hang, "european": _hang}, seconds=0.1, held_back=("domestic",)
        )
    assert list(info.value.unfinished_parts) == ["domestic", "european"]


async def test_all_or_nothing_lets_bugs_through():
    """A non-gateway exception is a bug and propagates as the exception group."""

    async def broken() -> None:
        raise KeyError("bug")

    with pytest.raises(ExceptionGroup):
        await all_or_nothing({"european": broken}, seconds=5)


async def _hung_signer(*, headers: dict[str, str]) -> str:
    """A signer call that never answers."""
    del headers
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _hung_attempt() -> Awaitable[str]:
    """One signer attempt, started (as the signer policy starts one) and never answered."""
    return SignerAttempt(_hung_signer, headers={})()


async def test_deadline_names_the_parts_it_cut() -> None:
    """The 504 of a cut block names its parts: `part` the first, `unfinishedParts` all."""
    with pytest.raises(DeadlineExceeded) as info:
        async with request_deadline(0.05, parts=("domestic", "european")):
            await _hung_attempt()
    assert info.value.part == "domestic"
    assert info.value.extensions() == {
        "part": "domestic",
        "unfinishedParts": ["domestic", "european"],
    }
    assert info.value.detail.startswith("domestic, european: the signers did not finish")


async def test_a_cut_naming_no_part_adds_no_part_members() -> None:
    """Pin that a 504 cutting no named part has neither `part` nor an empty `unfinishedParts`."""
    with pytest.raises(DeadlineExceeded) as info:
        async with request_deadline(0.05):
            await asyncio.sleep(5)
    assert info.value.part is None
    assert info.value.extensions() == {}


async def test_a_cut_says_no_credential_was_released_not_that_none_was_issued() -> None:
    """A part that finished, or a signer answering as the wait was cut, may have signed.

    The detail says what the caller can rely on (nothing released) and gives the budget in
    milliseconds at most, not to the microsecond.
    """
    token = caller_budget_var.set(
        CallerBudget(arrived_at=asyncio.get_running_loop().time() - 0.0123456, seconds=0.3)
    )
    try:
        with pytest.raises(DeadlineExceeded) as info:
            async with request_deadline(5, parts=("european",)):
                await _hung_attempt()
    finally:
        caller_budget_var.reset(token)
    assert re.fullmatch(
        r"european: the signer did not finish within 0\.2\d{0,2} s; no credential was released",
        info.value.detail,
    ), info.value.detail


async def test_a_caller_budget_too_short_to_send_an_attempt_is_cut_before_signing() -> None:
    """30 ms left, under the 50 ms an attempt needs: the 504 names no signer as slow."""
    token = caller_budget_var.set(
        CallerBudget(arrived_at=asyncio.get_running_loop().time() - 0.97, seconds=1)
    )
    ran = False
    try:
        with pytest.raises(DeadlineExceeded) as info:
            async with request_deadline(5, parts=("european",)):
                ran = True
    finally:
        caller_budget_var.reset(token)
    assert not ran
    assert info.value.detail == f"european: {BUDGET_SPENT_BEFORE_SIGNING}"
    assert "did not finish" not in info.value.detail


async def test_a_spent_caller_budget_names_every_part() -> None:
    """Refused before any signer work, every part of the request is unfinished."""
    token = caller_budget_var.set(
        CallerBudget(arrived_at=asyncio.get_running_loop().time() - 2, seconds=1)
    )
    try:
        with pytest.raises(DeadlineExceeded) as info:
            async with request_deadline(5, parts=("european",)):
                pass
    finally:
        caller_budget_var.reset(token)
    assert info.value.unfinished_parts == ("european",)


async def _hang() -> None:
    await asyncio.Event().wait()


async def _done() -> str:
    return "signed"


@pytest.mark.parametrize(
    ("calls", "unfinished"),
    [
        ({"domestic": _done, "european": _hang}, ["european"]),
        ({"domestic": _hang, "european": _done}, ["domestic"]),
        (
            {"domestic": _hang, "european[0]": _done, "european[1]": _hang},
            ["domestic", "european[1]"],
        ),
    ],
    ids=["european", "domestic", "several"],
)
async def test_all_or_nothing_cut_by_its_deadline_names_the_unfinished_parts(
    calls: dict[str, Callable[[], Awaitable[object]]], unfinished: list[str]
) -> None:
    """The deadline's 504 names the parts that had not finished, in request order."""
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        await all_or_nothing(calls, seconds=0.1)
    assert time.monotonic() - started < 0.3
    assert info.value.part == unfinished[0]
    assert list(info.value.unfinished_parts) == unfinished


def _policy(attempt_timeout_seconds: float = 10.0) -> SignerPolicy:
    settings = ResilienceSettings(max_attempts=1, attempt_timeout_seconds=attempt_timeout_seconds)
    return SignerPolicy("eu", settings)


async def _signed_by(policy: SignerPolicy, part: str) -> None:
    """One signer call of `part`, as an issuer makes it, to a signer that never answers."""
    return await call_signer(
        part, _hang, policy=policy, endpoint="get_credential", replay_safe=True
    )


async def test_a_part_whose_attempt_times_out_with_the_deadline_is_cut_by_the_deadline() -> None:
    """Its attempt timer and the deadline fire in one loop turn, the attempt's seen first: 504.

    The part runs in a task of its own, so its attempt timing out reaches it before the
    deadline's cancellation does (here by timer order: its attempt falls due 20 ms before the
    deadline, and a stalled loop turn lets both fire together). The answer is still the
    deadline's, naming the part, as when the deadline's cancellation arrives first.
    """
    policy = _policy(attempt_timeout_seconds=0.1)
    loop = asyncio.get_running_loop()
    # A loop turn held from 50 ms to 200 ms: both timers are overdue when it ends.
    loop.call_later(0.05, time.sleep, 0.15)
    with pytest.raises(DeadlineExceeded) as info:
        await all_or_nothing(
            {"domestic": _done, "european": partial(_signed_by, policy, "european")},
            seconds=0.12,
        )
    assert info.value.unfinished_parts == ("european",)


async def test_a_part_whose_attempt_timeout_is_seen_past_the_deadline_is_cut_by_it() -> None:
    """Pin that an attempt timing out a turn before the deadline's timer, seen past it, is a cut.

    A loaded loop wakes late and fires the attempt's timer, then holds past the deadline
    before the part sees its timeout; the deadline's own timer fires only in the next turn.
    The deadline had run out when the part failed: its 504, as when both fire in one turn.
    Before, the answer was the signer's timeout, depending on which turn each timer fell in.
    """
    loop = asyncio.get_running_loop()

    async def hung_signer() -> str:
        attempt = attempt_var.get()
        assert attempt is not None
        due = attempt.scope.when()
        assert due is not None
        # The loop wakes 10 ms late, past the attempt's timer and the hold's, not the deadline's
        # (24 ms after the attempt's); the hold then outlasts the deadline.
        loop.call_at(due - 0.02, time.sleep, 0.03)
        loop.call_at(due + 0.001, time.sleep, 0.05)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    policy = _policy(attempt_timeout_seconds=0.1)
    with pytest.raises(DeadlineExceeded) as info:
        await all_or_nothing(
            {
                "domestic": _done,
                "european": partial(
                    call_signer,
                    "european",
                    hung_signer,
                    policy=policy,
                    endpoint="get_credential",
                    replay_safe=True,
                ),
            },
            seconds=0.125,
        )
    assert info.value.unfinished_parts == ("european",)


async def test_an_attempt_timing_out_well_before_the_deadline_stays_a_signer_timeout() -> None:
    """An attempt timeout shorter than the time left is the signer's: 504 signer-timeout."""
    policy = _policy(attempt_timeout_seconds=0.05)
    with pytest.raises(SignerTimedOut) as info:
        await all_or_nothing(
            {"domestic": _done, "european": partial(_signed_by, policy, "european")},
            seconds=2,
        )
    assert info.value.part == "european"


async def test_a_call_with_no_time_left_for_an_attempt_is_cut_by_the_deadline() -> None:
    """Under 50 ms left sends nothing and answers the deadline's 504, not signer-timeout."""
    sent: list[str] = []

    async def signer() -> str:
        sent.append("sent")
        return "signed"

    with pytest.raises(DeadlineExceeded) as info:
        async with request_deadline(MIN_ATTEMPT_SECONDS / 2, parts=("european",)):
            await call_signer(
                "european", signer, policy=_policy(), endpoint="get_credential", replay_safe=True
            )
    assert info.value.part == "european"
    assert sent == []


@pytest.mark.parametrize(
    ("seconds", "named"),
    [(0.0004, "0.0004"), (0.123, "0.123")],
    ids=["under-one-ms", "to-the-ms"],
)
async def test_the_budget_is_named_to_the_millisecond(seconds: float, named: str) -> None:
    """A cut attempt's budget is named to the ms (0.123 s, not 0.12 s); under 1 ms, not as 0 s."""
    with pytest.raises(DeadlineExceeded) as info:
        async with request_deadline(seconds, parts=("european",)):
            await _hung_attempt()
    assert info.value.detail == (
        f"european: the signer did not finish within {named} s; no credential was released"
    )


def _hold_the_loop(seconds: float) -> None:
    """CPU work on the event loop for `seconds`: nothing else runs meanwhile, no timer fires."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


@pytest.mark.parametrize("awaits_first", [False, True], ids=["at-the-attempt", "at-an-await"])
async def test_a_deadline_spent_before_the_first_attempt_blames_no_signer(
    awaits_first: bool,
) -> None:
    """Pin that a block cut before any signer attempt says no signer was called.

    CPU work between entering the block and the first attempt outlasts the 0.1 s deadline:
    the attempt is then refused for want of time (nothing sent), or, when the request awaits
    something first, the deadline's timer cancels the block there. Before, both answered
    "the signer did not finish within 0.1 s", naming as slow a signer never reached.
    """
    reached: list[dict[str, str]] = []

    async def signer(*, headers: dict[str, str]) -> str:
        reached.append(headers)
        return "signed"

    policy = _policy()
    deadline = request_deadline(0.1, parts=("european",))

    async def request() -> None:
        async with deadline:
            _hold_the_loop(0.15)
            if awaits_first:
                await asyncio.sleep(0.01)
            await call_signer(
                "european",
                SignerAttempt(signer, headers={}),
                policy=policy,
                endpoint="get_credential",
                replay_safe=True,
            )

    with pytest.raises(DeadlineExceeded) as info:
        await request()
    assert info.value.detail == f"european: {BUDGET_SPENT_BEFORE_SIGNING}"
    assert info.value.unfinished_parts == ("european",)
    assert not deadline.signer_called
    assert reached == []
    # Nothing went to the signer: the breaker saw no call, let alone a timeout.
    assert policy.breaker.state.value == "closed"
    assert policy.snapshot()["inFlight"] == 0


async def test_a_deadline_cut_after_an_attempt_started_names_the_signer() -> None:
    """Once an attempt was started, the same cut says the signer did not finish in time."""
    deadline = request_deadline(0.1, parts=("european",))

    async def request() -> None:
        async with deadline:
            await call_signer(
                "european",
                SignerAttempt(_hung_signer, headers={}),
                policy=_policy(),
                endpoint="get_credential",
                replay_safe=True,
            )

    with pytest.raises(DeadlineExceeded) as info:
        await request()
    assert deadline.signer_called
    assert info.value.detail == (
        "european: the signer did not finish within 0.1 s; no credential was released"
    )


async def test_a_part_failing_on_its_own_wins_over_the_deadline() -> None:
    """A part's own failure is the answer even when the deadline cut another part with it."""

    async def cut() -> None:
        raise DeadlineExceeded("cut", parts=("european[0]",))

    async def failing() -> None:
        raise SignerUnavailable("european[1]: down", part="european[1]")

    with pytest.raises(SignerUnavailable) as info:
        await all_or_nothing({"european[0]": cut, "european[1]": failing}, seconds=5)
    assert info.value.part == "european[1]"


async def test_a_shed_call_is_a_503_to_come_back_in_a_second() -> None:
    """The signer's bulkhead full, no queue: 503 at once, Retry-After 1, nothing sent."""
    policy = SignerPolicy("eu", ResilienceSettings(max_attempts=1, max_in_flight=1, max_pending=0))
    await policy.bulkhead.acquire()
    with pytest.raises(SignerUnavailable) as info:
        await call_signer(
            "european", _hang, policy=policy, endpoint="get_credential", replay_safe=True
        )
    assert info.value.part == "european"
    assert info.value.headers() == {"Retry-After": "1"}


async def test_an_open_breaker_is_a_503_to_come_back_when_it_probes() -> None:
    """Refused by the open breaker: Retry-After is the open time left, in whole seconds."""
    policy = SignerPolicy(
        "eu", ResilienceSettings(breaker_consecutive_failures=1, breaker_open_seconds=30.0)
    )
    policy.breaker.record_failure(policy.breaker.acquire())
    with pytest.raises(SignerUnavailable) as info:
        await call_signer(
            "european", _hang, policy=policy, endpoint="get_credential", replay_safe=True
        )
    assert info.value.headers() == {"Retry-After": "30"}


async def test_an_open_breaker_rounds_the_time_left_up_to_whole_seconds() -> None:
    """2.2 s left open is `Retry-After: 3`: a caller that waits it finds the breaker half-open."""
    now = [100.0]
    policy = SignerPolicy(
        "eu",
        ResilienceSettings(breaker_consecutive_failures=1, breaker_open_seconds=5.0),
        clock=lambda: now[0],
    )
    policy.breaker.record_failure(policy.breaker.acquire())
    now[0] += 2.8
    with pytest.raises(SignerUnavailable) as info:
        await call_signer(
            "european", _hang, policy=policy, endpoint="get_credential", replay_safe=True
        )
    assert info.value.headers() == {"Retry-After": "3"}


async def test_a_half_open_breaker_with_every_trial_out_is_a_503_to_come_back_in_a_second() -> None:
    """Half-open, its trial calls all out: 503 with `Retry-After: 1`, nothing sent.

    A trial's answer comes within one call: by then the breaker is closed, or has a trial
    free, or is open again, and that refusal's own Retry-After says for how long.
    """
    now = [100.0]
    policy = SignerPolicy(
        "eu",
        ResilienceSettings(
            breaker_consecutive_failures=1, breaker_open_seconds=5.0, breaker_trial_calls=1
        ),
        clock=lambda: now[0],
    )
    policy.breaker.record_failure(policy.breaker.acquire())
    now[0] += 5.0
    policy.breaker.acquire()  # the one trial, out and not answered yet
    sent: list[str] = []

    async def sending() -> str:
        sent.append("sent")
        return "signed"

    with pytest.raises(SignerUnavailable) as info:
        await call_signer(
            "european", sending, policy=policy, endpoint="get_credential", replay_safe=True
        )
    assert info.value.headers() == {"Retry-After": "1"}
    assert sent == []


@pytest.mark.parametrize(
    ("value", "seconds"), [("5e-1", 0.5), ("2E+1", 20.0), ("25e-2", 0.25), (" 1.5\t", 1.5)]
)
def test_a_caller_budget_may_carry_a_signed_exponent(value: str, seconds: float) -> None:
    """`X-Request-Timeout: 5e-1` is half a second, as a decimal with an exponent reads."""
    assert parse_request_timeout(value) == seconds
