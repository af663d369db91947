"""Backoff bounds, the retry budget and its sliding window, which signer failures may be retried."""

from __future__ import annotations

import random

import pytest

from signing_gateway.resilience.policy import Verdict, breaker_verdict, retry_reason
from signing_gateway.resilience.retry import RetryBudget, backoff_delay
from signing_gateway.resilience.window import SlidingCounts
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerConnectionLostError,
    SignerMalformedResponseError,
    SignerRejectedError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_backoff_is_full_jitter_within_the_exponential_ceiling():
    """Each delay lies in [0, min(cap, base * 2^n)] and the draws spread over that range."""
    rng = random.Random(7)  # noqa: S311 - jitter, not security
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0), (60, 1.0)]:
        delays = [backoff_delay(attempt, base=0.1, cap=1.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8
        assert min(delays) < ceiling * 0.2


def test_budget_allows_the_floor_then_a_share_of_requests():
    """With no traffic only the floor is available; each request earns `ratio` of a retry."""
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.1, window_seconds=10, clock=clock)
    assert budget.withdraw() is not None  # floor: 0.1/s * 10 s = 1 retry
    assert budget.withdraw() is None
    for _ in range(10):
        budget.deposit()
    assert budget.withdraw() is not None
    assert budget.withdraw() is not None
    assert budget.withdraw() is None  # 1 + 0.2 * 10 = 3 retries in the window


def test_budget_refills_as_the_window_slides():
    """Retries spent leave the window after window_seconds."""
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window_seconds=5, clock=clock)
    assert budget.withdraw() is not None
    assert budget.withdraw() is None
    clock.now += 6
    assert budget.withdraw() is not None


@pytest.mark.parametrize("spent_at", [50.0, 50.5])
def test_a_spent_retry_counts_for_window_seconds_and_no_longer(spent_at: float):
    """A retry spent in second 50 of a 5 s window counts until second 55, not a second longer."""
    clock = Clock()
    clock.now = spent_at
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window_seconds=5, clock=clock)
    assert budget.withdraw() is not None
    clock.now = 54.999
    assert budget.withdraw() is None
    clock.now = 55.0
    assert budget.withdraw() is not None


def test_budget_caps_retries_at_twenty_percent_under_sustained_failure():
    """With every call failing, retries stay near 20 % of requests plus the floor."""
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window_seconds=10, clock=clock)
    retries = 0
    for _ in range(1000):
        budget.deposit()
        retries += budget.withdraw() is not None
        clock.now += 0.005  # 1000 requests within 5 s: one window
    assert 190 <= retries <= 200


def _err(cls, **kw):
    return cls("x", signer="eu", endpoint="get_credential", **kw)


@pytest.mark.parametrize(
    ("error", "replay_safe", "expected"),
    [
        (_err(SignerConnectError), False, "connect"),
        (_err(SignerThrottledError, status_code=429, retry_after=1.0), False, "throttled"),
        (_err(SignerThrottledError, status_code=503, retry_after=None), True, None),
        (_err(SignerTimeoutError), True, "timeout"),
        (_err(SignerTimeoutError), False, None),
        (_err(SignerConnectionLostError), True, "connection_lost"),
        (_err(SignerConnectionLostError), False, None),
        (_err(SignerServerError, status_code=500), True, None),
        (_err(SignerRejectedError, status_code=400), True, None),
        (_err(SignerMalformedResponseError, status_code=200), True, None),
    ],
)
def test_only_safe_failures_are_retried(error, replay_safe, expected):
    """Never-sent and throttled-with-Retry-After always; timeouts only where replay is safe."""
    assert retry_reason(error, replay_safe=replay_safe) == expected


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (None, Verdict.SUCCESS),
        (_err(SignerRejectedError, status_code=400), Verdict.SUCCESS),
        (_err(SignerThrottledError, status_code=429, retry_after=1.0), Verdict.IGNORED),
        (_err(SignerThrottledError, status_code=503, retry_after=1.0), Verdict.FAILURE),
        (_err(SignerServerError, status_code=500), Verdict.FAILURE),
        (_err(SignerTimeoutError), Verdict.FAILURE),
        (_err(SignerConnectError), Verdict.FAILURE),
        (_err(SignerMalformedResponseError, status_code=200), Verdict.FAILURE),
    ],
)
def test_breaker_counts_signer_health_not_our_mistakes(error, verdict):
    """Transport errors, 5xx and malformed bodies count; 4xx is health; 429 says nothing."""
    assert breaker_verdict(error) is verdict


def test_a_refunded_retry_is_available_again_within_its_window():
    """A retry given back (never sent) counts no more; one gone from the window gives back none."""
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window_seconds=5, clock=clock)
    spent_in = budget.withdraw()
    assert spent_in is not None
    assert budget.withdraw() is None
    clock.now += 2
    budget.refund(spent_in)
    assert budget.balance() == 1
    again = budget.withdraw()
    assert again is not None
    clock.now += 5  # `again` has left the window: nothing is left to give back
    budget.refund(again)
    assert budget.balance() == 1


def test_a_part_of_a_retry_left_is_no_retry():
    """Half a retry earned (ratio 0.5 of one request, no floor) does not allow one."""
    clock = Clock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window_seconds=10, clock=clock)
    budget.deposit()
    assert budget.balance() == 0.5
    assert budget.withdraw() is None
    budget.deposit()
    assert budget.withdraw() is not None


def test_a_window_of_part_seconds_keeps_a_count_at_least_that_long():
    """A 2.5 s window rounds up to whole seconds: a count is never forgotten early."""
    clock = Clock()
    counts = SlidingCounts(2.5, fields=1, clock=clock)
    counts.add(0)
    clock.now += 2.9
    assert counts.totals() == [1]
    clock.now += 0.1
    assert counts.totals() == [0]


def test_counts_that_are_only_added_keep_constant_memory():
    """A breaker that only ever sees successes adds without reading: old seconds still go."""
    clock = Clock()
    counts = SlidingCounts(10, fields=2, clock=clock)
    for _ in range(1000):
        counts.add(0)
        clock.now += 1
    assert len(counts._buckets) <= 10
    assert counts.totals() == [9, 0]
