"""The circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from signing_gateway.resilience.breaker import (
    BreakerOpen,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **overrides) -> tuple[CircuitBreaker, list[BreakerState]]:
    values = {
        "consecutive_failures": 3,
        "failure_rate": 0.5,
        "min_calls": 10,
        "window_seconds": 10.0,
        "open_seconds": 5.0,
        "trial_calls": 2,
    }
    values.update(overrides)
    seen: list[BreakerState] = []
    return CircuitBreaker(
        "eu", BreakerSettings(**values), clock=clock, on_transition=seen.append
    ), seen


def _fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_failure(breaker.acquire())


def _succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.record_success(breaker.acquire())


def test_consecutive_failures_open_the_breaker():
    """N failures in a row open it; a success in between resets the run."""
    clock = Clock()
    breaker, seen = _breaker(clock)
    _fail(breaker, 2)
    _succeed(breaker)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert seen == [BreakerState.OPEN]


def test_failure_rate_over_the_window_opens_the_breaker():
    """Half the calls failing (non-consecutively) opens it once min_calls is reached."""
    clock = Clock()
    breaker, _ = _breaker(clock, consecutive_failures=100)
    for _ in range(4):
        _succeed(breaker)
        _fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 8 calls < min_calls
    _succeed(breaker)
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_old_failures_leave_the_window():
    """Failures older than the window no longer count towards the rate."""
    clock = Clock()
    breaker, _ = _breaker(clock, consecutive_failures=100, min_calls=4)
    _succeed(breaker)
    _fail(breaker)
    clock.now += 20
    _succeed(breaker, 3)
    _fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 1 of 4 in the window


def test_open_breaker_refuses_with_the_remaining_open_time():
    """While open, calls are refused and Retry-After is the time left until the probe."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 2
    with pytest.raises(BreakerOpen) as info:
        breaker.acquire()
    assert info.value.retry_after == pytest.approx(3.0)


def test_half_open_allows_limited_trials_and_closes_on_success():
    """After the open time, only trial_calls go through; their success closes the breaker."""
    clock = Clock()
    breaker, seen = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    first, second = breaker.acquire(), breaker.acquire()
    with pytest.raises(BreakerOpen) as info:
        breaker.acquire()
    assert info.value.retry_after == 1  # the trials' answers come within a call
    breaker.record_success(first)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(second)
    assert breaker.state is BreakerState.CLOSED
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_trial_failure_reopens_for_a_full_period():
    """A failed trial call opens the breaker again, for another open_seconds."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 5
    breaker.record_failure(breaker.acquire())
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(5.0)


def test_ignored_trial_frees_its_place():
    """A trial that ends without a verdict (cancelled, 429) lets another trial go."""
    clock = Clock()
    breaker, _ = _breaker(clock, trial_calls=1)
    _fail(breaker, 3)
    clock.now += 5
    breaker.record_ignored(breaker.acquire())
    breaker.record_success(breaker.acquire())
    assert breaker.state is BreakerState.CLOSED


def test_late_answers_from_before_a_transition_are_ignored():
    """An outcome of a call permitted before the breaker opened does not count afterwards."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    stale = breaker.acquire()
    _fail(breaker, 3)
    clock.now += 5
    breaker.record_success(stale)
    assert breaker.state is BreakerState.HALF_OPEN


def test_late_failures_from_before_a_transition_do_not_reopen_a_recovered_breaker():
    """Calls hung since before the breaker opened fail late: the closed breaker stays closed."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    hung = [breaker.acquire() for _ in range(3)]
    _fail(breaker, 3)
    clock.now += 5
    _succeed(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    for permit in hung:
        breaker.record_failure(permit)
    assert breaker.state is BreakerState.CLOSED


def test_late_trial_outcomes_say_nothing_about_the_next_half_open_period():
    """Trials of an earlier half-open period that end late neither free nor fill a place."""
    clock = Clock()
    breaker, _ = _breaker(clock, trial_calls=3)
    _fail(breaker, 3)
    clock.now += 5
    late_success, late_ignored, failing = (breaker.acquire() for _ in range(3))
    breaker.record_failure(failing)  # reopens: a new half-open period follows
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_ignored(late_ignored)
    breaker.record_success(late_success)
    trials = [breaker.acquire() for _ in range(3)]
    with pytest.raises(BreakerOpen):
        breaker.acquire()  # still only trial_calls trials at a time
    for trial in trials[:2]:
        breaker.record_success(trial)
    assert breaker.state is BreakerState.HALF_OPEN  # two successes of three
    breaker.record_success(trials[2])
    assert breaker.state is BreakerState.CLOSED


def test_a_closed_breaker_starts_a_fresh_window():
    """Failures that opened the breaker do not count again once the trials closed it."""
    clock = Clock()
    breaker, _ = _breaker(clock, consecutive_failures=100, min_calls=4)
    for _ in range(2):
        _succeed(breaker)
        _fail(breaker)
    assert breaker.state is BreakerState.OPEN  # 2 of 4 failed
    clock.now += 5
    _succeed(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 1 call in the window, under min_calls


def test_a_successful_trial_frees_its_place():
    """Half-open lets trial_calls calls through at a time: one that succeeded makes room."""
    clock = Clock()
    breaker, _ = _breaker(clock, trial_calls=2)
    _fail(breaker, 3)
    clock.now += 5
    first, second = breaker.acquire(), breaker.acquire()
    breaker.record_success(first)
    third = breaker.acquire()
    with pytest.raises(BreakerOpen):
        breaker.acquire()
    breaker.record_success(second)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success(third)  # a trial of the period that just closed: no effect
    assert breaker.state is BreakerState.CLOSED


def test_a_closed_breaker_starts_a_fresh_run_of_failures():
    """The failures in a row that opened it do not count again once the trials closed it."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 5
    _succeed(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED  # two in a row since it closed, not five
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_no_retry_after_unless_open():
    """Closed or half-open, a probe may go now: the time until the next one is 0."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    assert breaker.retry_after() == 0
    _fail(breaker, 3)
    clock.now += 1
    assert breaker.retry_after() == pytest.approx(4.0)
    clock.now += 4
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_after() == 0


def test_successes_of_an_earlier_half_open_period_do_not_count_in_the_next():
    """A trial success before a trial failure: the next half-open period needs all its own."""
    clock = Clock()
    breaker, _ = _breaker(clock)
    _fail(breaker, 3)
    clock.now += 5
    first, second = breaker.acquire(), breaker.acquire()
    breaker.record_success(first)
    breaker.record_failure(second)
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    _succeed(breaker)
    assert breaker.state is BreakerState.HALF_OPEN  # one success of two
    _succeed(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_the_trial_that_closes_the_breaker_is_not_a_call_of_the_new_window():
    """The closing trial belongs to the half-open period: the fresh window starts empty."""
    clock = Clock()
    breaker, _ = _breaker(clock, consecutive_failures=100, min_calls=2, failure_rate=0.5)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    _succeed(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 1 call since it closed, under min_calls
    _fail(breaker)
    assert breaker.state is BreakerState.OPEN
