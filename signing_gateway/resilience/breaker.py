"""A circuit breaker per signer: stop calling a signer that keeps failing, probe it carefully.

States (Hystrix/resilience4j style, like Envoy's outlier ejection for one host)::

    closed ──(N consecutive failures, or failure rate ≥ r over the window)──► open
    open ──(open_seconds passed)──► half-open
    half-open ──(trial_calls successes)──► closed
    half-open ──(any trial failure)──► open (for another open_seconds)

While open every call is refused at once with the time left until the next probe; in
half-open only `trial_calls` calls at a time go through. Which signer outcomes count as
failures is decided by the caller (`SignerPolicy`), see docs/resilience.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from signing_gateway.resilience.window import SlidingCounts

_CALLS, _FAILURES = 0, 1


class BreakerState(StrEnum):
    """Where the breaker stands; the metric gauge uses `level`."""

    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """0 closed, 1 half-open, 2 open (the value of the breaker_state gauge)."""
        return {"closed": 0, "half-open": 1, "open": 2}[self.value]


class BreakerOpen(Exception):
    """Raised when the breaker refuses a call; `retry_after` is the time until the next probe."""

    def __init__(self, signer: str, *, retry_after: float) -> None:
        """Name the signer and the remaining open time."""
        super().__init__(f"{signer}: circuit breaker open")
        self.signer = signer
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Thresholds of one breaker."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    min_calls: int = 20
    window_seconds: float = 10.0
    open_seconds: float = 5.0
    trial_calls: int = 2


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call; hand it back with exactly one of the record_* methods."""

    generation: int
    trial: bool


class CircuitBreaker:
    """The breaker of one signer; every method is synchronous and O(window seconds)."""

    def __init__(
        self,
        signer: str,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[BreakerState], None] | None = None,
    ) -> None:
        """Start closed; `on_transition` hears every state change (for metrics and logs)."""
        self.signer = signer
        self._s = settings
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._consecutive = 0
        self._window = SlidingCounts(settings.window_seconds, fields=2, clock=clock)
        self._opened_at = 0.0
        self._trials_out = 0
        self._trial_successes = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an expired open period reads as half-open)."""
        if self._state is BreakerState.OPEN and self._open_left() <= 0:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def _open_left(self) -> float:
        return self._opened_at + self._s.open_seconds - self._clock()

    def retry_after(self) -> float:
        """Seconds until the breaker lets a probe through (0 unless open)."""
        return max(0.0, self._open_left()) if self.state is BreakerState.OPEN else 0.0

    def _move(self, to: BreakerState) -> None:
        self._state = to
        self._generation += 1
        self._consecutive = 0
        self._trials_out = 0
        self._trial_successes = 0
        self._window.clear()
        if to is BreakerState.OPEN:
            self._opened_at = self._clock()
        if self._on_transition is not None:
            self._on_transition(to)

    def acquire(self) -> Permit:
        """A permit for one call, or BreakerOpen when the breaker refuses it."""
        state = self.state
        if state is BreakerState.OPEN:
            raise BreakerOpen(self.signer, retry_after=self._open_left())
        if state is BreakerState.HALF_OPEN:
            if self._trials_out >= self._s.trial_calls:
                # The trials are out; the answer comes within one call, so retry soon.
                raise BreakerOpen(self.signer, retry_after=1.0)
            self._trials_out += 1
            return Permit(self._generation, trial=True)
        return Permit(self._generation, trial=False)

    def record_success(self, permit: Permit) -> None:
        """The call worked (or the signer answered sanely)."""
        if permit.generation != self._generation:
            return  # an answer from before the last transition says nothing about now
        if permit.trial:
            self._trials_out -= 1
            self._trial_successes += 1
            if self._trial_successes >= self._s.trial_calls:
                self._move(BreakerState.CLOSED)
            return
        self._consecutive = 0
        self._window.add(_CALLS)

    def record_failure(self, permit: Permit) -> None:
        """The call failed in a way that says the signer is unwell."""
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._move(BreakerState.OPEN)
            return
        self._consecutive += 1
        self._window.add(_CALLS)
        self._window.add(_FAILURES)
        calls, failures = self._window.totals()
        if self._consecutive >= self._s.consecutive_failures or (
            calls >= self._s.min_calls and failures / calls >= self._s.failure_rate
        ):
            self._move(BreakerState.OPEN)

    def record_ignored(self, permit: Permit) -> None:
        """The call ended without telling anything about the signer (cancelled, throttled)."""
        if permit.generation == self._generation and permit.trial:
            self._trials_out -= 1
