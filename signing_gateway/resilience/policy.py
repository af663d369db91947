"""The per-signer call policy: breaker, then bulkhead, then the attempt, then maybe a retry.

One `SignerPolicy` per signer composes the pieces for every call to it::

    for each attempt (at most max_attempts, all inside the request's deadline):
        under 50 ms left           → NoTimeLeft (the deadline's 504; nothing sent)
        breaker.acquire()          open → BreakerOpen (503, Retry-After = time left open);
                                   half-open, every trial out → BreakerOpen (Retry-After 1)
        bulkhead slot              full → BulkheadFull (503 at once: load shedding);
                                   the wait ran to the deadline → NoTimeLeft
        factory() until attempt_timeout after it was sent, or the deadline if sooner
        outcome → breaker          see `breaker_verdict`, and `_Attempt` for a cut attempt
        retry?                     see `retry_delay`: only when safe, when it fits, within budget

The factory builds a fresh request per attempt, so a retry never reuses a half-sent one.

An attempt cut by the caller's deadline before its own timeout counts as a timeout only while
the signer has answered nothing for a whole attempt timeout of waiting: a hung signer then
trips the breaker however short the callers' deadlines, and an impatient caller cannot open
the breaker of a signer that answers others, only slower than it would wait
(docs/resilience.md). Only time with an attempt on the wire is waiting: a quiet spell, even
after an attempt that was cut or cancelled, is not silence. A cancelled attempt's time is not
waiting either: cancelled for a caller that left, a failing sibling or shutdown, it was never
let run to the signer's answer, so it says nothing about the signer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Literal, TypeVar, get_args

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.signer_calls import SignerCallOutcome, attempt_var
from signing_gateway.resilience.breaker import (
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from signing_gateway.resilience.bulkhead import Bulkhead, BulkheadFull
from signing_gateway.resilience.retry import RetryBudget, backoff_delay
from signing_gateway.resilience.silence import Silence
from signing_gateway.settings import ResilienceSettings
from signing_gateway.signers.errors import (
    SignerConnectionLostError,
    SignerError,
    SignerRejectedError,
    SignerResponseError,
    SignerThrottledError,
    SignerTimeoutError,
    sent_nothing,
)

T = TypeVar("T")

logger = logging.getLogger("signing_gateway.resilience")

#: An attempt needs at least this much of the deadline left to be worth starting.
MIN_ATTEMPT_SECONDS = 0.05

#: Why a signer call is retried (`retry_reason`).
RetryReason = Literal["connect", "throttled", "timeout", "connection_lost"]
#: The reasons as values: the `reason` labels of `gateway_signer_retries_total`.
RETRY_REASONS: tuple[str, ...] = get_args(RetryReason)

_THROTTLED_AND_ALIVE = 429


def _loop_time() -> float:
    """The event loop's clock (a breaker transition is normally seen inside a call)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # outside a loop nothing is on the wire; any instant will do
        return time.monotonic()


class NoTimeLeft(Exception):
    """Raised when the request's deadline ran out before an attempt could be sent.

    Less than `MIN_ATTEMPT_SECONDS` was left to start one, or the wait for a bulkhead slot
    lasted until the deadline. Nothing was sent: not a signer failure, not a shed (neither the
    breaker nor the shed metric counts it); the caller's answer is the deadline's.
    """

    def __init__(self, signer: str, *, endpoint: str) -> None:
        """Name the signer and endpoint the attempt was for."""
        super().__init__(f"{signer} {endpoint}: the request's deadline left no time to send it")
        self.signer = signer
        self.endpoint = endpoint


class Verdict(Enum):
    """What one outcome tells the breaker about the signer's health."""

    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"


def breaker_verdict(exc: SignerError | None) -> Verdict:
    """Classify an attempt's outcome for the breaker.

    Failures: transport errors (refused, timeout, reset), 5xx including 503, malformed 2xx.
    Success: a good answer, and a 4xx: the signer is alive and answering, the request was wrong.
    Ignored: 429, which is the signer pacing us (the bulkhead and Retry-After handle it);
    counting it would turn a brief overload into a full outage.
    """
    if exc is None or isinstance(exc, SignerRejectedError):
        return Verdict.SUCCESS
    if isinstance(exc, SignerThrottledError) and exc.status_code == _THROTTLED_AND_ALIVE:
        return Verdict.IGNORED
    return Verdict.FAILURE


def retry_reason(exc: SignerError, *, replay_safe: bool) -> RetryReason | None:
    """Why `exc` may be retried at all (a metric label), or None when it must not be.

    - never reached the signer (connection refused, or a connect or pool timeout): always safe;
    - 429/503 with Retry-After: the signer told us when to come back;
    - timeout or connection lost: the signer may have acted; only for replay-safe endpoints.
    """
    if sent_nothing(exc):
        return "connect"
    if isinstance(exc, SignerThrottledError):
        return "throttled" if exc.retry_after is not None else None
    if isinstance(exc, SignerTimeoutError | SignerConnectionLostError) and replay_safe:
        return "timeout" if isinstance(exc, SignerTimeoutError) else "connection_lost"
    return None


class PlannedRetry:
    """A retry decided on after a failed attempt: why, after what pause, and what it spent.

    The budget is spent when the retry is planned, so calls failing at once cannot all
    count on the same balance; a retry that then sends nothing gives it back (`sent`).
    """

    __slots__ = ("delay", "reason", "sent", "spent_in")

    def __init__(self, reason: RetryReason, delay: float, spent_in: int) -> None:
        """`spent_in`: the budget's second the retry was counted in (`RetryBudget.withdraw`)."""
        self.reason = reason
        self.delay = delay
        self.spent_in = spent_in
        #: Whether the retry's attempt went out (after the breaker and the bulkhead let it).
        self.sent = False


class _Attempt:
    """One attempt sent to the signer: its timer, and what a cut of it tells the breaker.

    The timer runs `attempt_timeout` from the moment the request is sent (after any wait for
    a bulkhead slot), or to the request's deadline when that comes first. A cut is judged
    once, when first asked (the signer-call metric asks before the policy records it), so the
    metric's label and the breaker's verdict never disagree.
    """

    __slots__ = (
        "_by_deadline", "_deadline", "_outcome", "_policy", "deadline_cut", "resend_count", "scope",
        "sent_at",
    )  # fmt: skip

    def __init__(
        self, policy: SignerPolicy, sent_at: float, deadline: float | None, resend_count: int
    ) -> None:
        """Arm the timer of an attempt sent at `sent_at` (event-loop time).

        `resend_count`: the call's attempts sent before this one (0 for the first).
        """
        own_end = sent_at + policy.settings.attempt_timeout_seconds
        self._by_deadline = deadline is not None and deadline <= own_end
        self._deadline = deadline
        self._policy = policy
        self._outcome: SignerCallOutcome | None = None
        self.sent_at = sent_at
        #: Read by the signer call's span (`http.request.resend_count`).
        self.resend_count = resend_count
        #: Whether the caller's deadline, rather than the attempt's own timeout, cut it.
        self.deadline_cut = False
        self.scope = asyncio.timeout_at(
            deadline if deadline is not None and self._by_deadline else own_end
        )

    def cut_outcome(self) -> SignerCallOutcome:
        """What the attempt's cancellation was: "timeout", "deadline" or "cancelled".

        - "timeout": its own timer expired, or the deadline cut it while the signer has been
          silent (see `SignerPolicy.signer_silent`): a breaker failure;
        - "deadline": the caller's deadline cut it while the signer was answering: ignored;
        - "cancelled": a failing sibling, shutdown or its caller leaving cancelled it: ignored,
          and its time on the wire is no waiting (`SignerPolicy._left_wire`).
        """
        if self._outcome is None:
            self._outcome = self._judge()
        return self._outcome

    def _judge(self) -> SignerCallOutcome:
        expired = self.scope.expired()
        if expired and not self._by_deadline:
            return "timeout"
        now = asyncio.get_running_loop().time()
        # Both timers sit at the same instant when the deadline is the nearer; whichever
        # fired first, the deadline cut the attempt. Past it, any cancellation is its cut.
        if expired or (self._deadline is not None and now >= self._deadline):
            self.deadline_cut = True
            return "timeout" if self._policy.signer_silent(now, self.sent_at) else "deadline"
        return "cancelled"

    def cut_verdict(self) -> Verdict:
        """The breaker's verdict on the cut: a failure only for "timeout"."""
        return Verdict.FAILURE if self.cut_outcome() == "timeout" else Verdict.IGNORED


class SignerPolicy:
    """Bulkhead, retries with a budget and a circuit breaker around every call to one signer."""

    def __init__(
        self,
        signer: str,
        settings: ResilienceSettings,
        *,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """Build the pieces from `settings`; `clock` and `rng` are injectable for tests."""
        self.signer = signer
        self.settings = settings
        self._metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.bulkhead = Bulkhead(
            signer,
            max_in_flight=settings.max_in_flight,
            max_pending=settings.max_pending,
            max_wait=settings.max_wait_seconds,
        )
        self.breaker = CircuitBreaker(
            signer,
            BreakerSettings(
                consecutive_failures=settings.breaker_consecutive_failures,
                failure_rate=settings.breaker_failure_rate,
                min_calls=settings.breaker_min_calls,
                window_seconds=settings.breaker_window_seconds,
                open_seconds=settings.breaker_open_seconds,
                trial_calls=settings.breaker_trial_calls,
            ),
            clock=clock,
            on_transition=self._on_transition,
        )
        self.budget = RetryBudget(
            ratio=settings.retry_budget_ratio,
            min_per_second=settings.retry_budget_min_per_second,
            window_seconds=settings.retry_budget_window_seconds,
            clock=clock,
        )
        #: The signer's silence (`signer_silent`).
        self._silence = Silence(settings.attempt_timeout_seconds)
        if metrics is not None:
            # Read at each scrape: an open period ends by the clock, not by an event, and the
            # breaker notices that only when asked (`CircuitBreaker.state`). Set at each
            # transition instead, the gauge said "open" for as long as nothing called.
            breaker = self.breaker
            metrics.breaker_state.labels(signer).set_function(lambda: breaker.state.level)

    def signer_silent(self, now: float, sent_at: float) -> bool:
        """Whether the signer has answered nothing for at least one attempt timeout.

        Asked at `now` of an attempt sent at `sent_at`, cut by its caller's deadline. That
        is: since its last HTTP answer of any kind (a success, a refusal, an error status),
        the gateway has had attempts on the wire to it, this one included, for a total of
        `attempt_timeout_seconds` or more. A patient caller's attempt would have timed out by
        now and been counted; a signer slower than an impatient caller's deadline but
        answering the others is not silent. Time with nothing on the wire does not count: a
        quiet spell gives the signer nothing to answer, whatever attempt was cut or
        cancelled before it. Nor does the time of a cancelled attempt (`resilience.silence`):
        its caller gone, it was stopped before the signer could answer, and a slow signer
        whose callers leave before its answer would otherwise look hung to the next
        impatient one.
        """
        waited = self._silence.waited(now, sent_at)
        return waited >= self.settings.attempt_timeout_seconds

    def _left_wire(self, attempt: _Attempt, now: float, *, cancelled: bool) -> None:
        """`attempt` ended at `now`: its time on the wire is waiting unless it was cancelled."""
        if not cancelled:
            self._silence.add(attempt.sent_at, now)

    def _silence_ends(self, now: float) -> None:
        """The signer answered (or the breaker moved) at `now`: silence counts afresh."""
        self._silence.ends(now)

    def _on_transition(self, to: BreakerState) -> None:
        # Silence from before the transition says nothing about the trials that follow: an
        # impatient caller holding a trial slot must not reopen the breaker of a recovered
        # signer on old evidence.
        self._silence_ends(_loop_time())
        log = logger.warning if to is BreakerState.OPEN else logger.info
        log("circuit breaker %s", to.value, extra={"signer": self.signer, "breaker": to.value})
        if self._metrics is not None:
            self._metrics.breaker_transitions.labels(self.signer, to.value).inc()

    def snapshot(self) -> dict[str, object]:
        """Caller-safe state for /readyz."""
        return {
            "breaker": self.breaker.state.value,
            "breakerRetryAfterSeconds": round(self.breaker.retry_after(), 3),
            "inFlight": self.bulkhead.in_flight,
            "pending": self.bulkhead.pending,
            "retryBudget": round(self.budget.balance(), 1),
        }

    def retry_delay(
        self, exc: SignerError, *, attempt: int, time_left: float | None, replay_safe: bool
    ) -> PlannedRetry | None:
        """The retry to make after `exc`, its budget spent; None: not safe, no time, no budget."""
        if attempt + 1 >= self.settings.max_attempts:
            return None
        reason = retry_reason(exc, replay_safe=replay_safe)
        if reason is None:
            return None
        s = self.settings
        delay = backoff_delay(
            attempt, base=s.backoff_base_seconds, cap=s.backoff_max_seconds, rng=self._rng
        )
        if isinstance(exc, SignerThrottledError) and exc.retry_after is not None:
            if exc.retry_after > s.max_retry_after_seconds:
                return None  # a long pause: the caller decides, we do not hold the request
            delay = exc.retry_after + delay  # the jitter spreads the herd the signer let wait
        if time_left is not None and delay + MIN_ATTEMPT_SECONDS > time_left:
            return None
        spent_in = self.budget.withdraw()
        if spent_in is None:
            if self._metrics is not None:
                self._metrics.signer_retry_budget_exhausted.labels(self.signer).inc()
            return None
        return PlannedRetry(reason, delay, spent_in)

    async def call(
        self,
        endpoint: str,
        factory: Callable[[], Awaitable[T]],
        *,
        replay_safe: bool,
        deadline: float | None = None,
    ) -> T:
        """Run `factory()` under the policy; `deadline` is the request's (event-loop time).

        Raises:
            BreakerOpen: the breaker refused the call (no request was sent).
            BulkheadFull: the call was shed (no request was sent).
            NoTimeLeft: the deadline left no time to send an attempt.
            SignerError: the last attempt's failure.
        """
        loop = asyncio.get_running_loop()
        attempt = 0
        retry: PlannedRetry | None = None
        try:
            while True:
                try:
                    return await self._attempt(endpoint, factory, deadline, retry, attempt)
                except SignerError as exc:
                    time_left = None if deadline is None else deadline - loop.time()
                    retry = self.retry_delay(
                        exc, attempt=attempt, time_left=time_left, replay_safe=replay_safe
                    )
                    if retry is None:
                        raise
                    await asyncio.sleep(retry.delay)
                    attempt += 1
        finally:
            if retry is not None and not retry.sent:
                # Cancelled in its backoff, or refused by the breaker, the bulkhead or the
                # deadline before it went out: the signer saw no retry, the budget pays none.
                self.budget.refund(retry.spent_in)

    async def _attempt(
        self,
        endpoint: str,
        factory: Callable[[], Awaitable[T]],
        deadline: float | None,
        retry: PlannedRetry | None,
        resend_count: int,
    ) -> T:
        """One attempt; `retry`: why it is made, when it is a retry (counted once it is sent).

        `resend_count`: the call's attempts sent before this one.
        """
        loop = asyncio.get_running_loop()
        time_left = self._time_left(deadline, endpoint, now=loop.time())
        permit = self.breaker.acquire()
        attempt: _Attempt | None = None
        try:
            async with self.bulkhead.slot(wait_limit=time_left):
                # The attempt's timer starts now that it is sent, not before the slot wait,
                # and its timeout is entered here, not in a helper coroutine: every frame on
                # this path is held for the whole signer wait of each call in flight.
                sent_at = loop.time()
                attempt = _Attempt(self, sent_at, deadline, resend_count)
                if retry is None:
                    # A first attempt earns its share of a retry once it is sent: a call the
                    # breaker, the bulkhead or the deadline refused sent the signer nothing.
                    self.budget.deposit()
                else:
                    # Here, not when planned: the breaker, the bulkhead or a cancellation
                    # during the backoff stops a planned retry before anything is sent.
                    self._retry_sent(retry, endpoint)
                cancelled = False
                try:
                    async with attempt.scope:
                        # Set inside the scope: its timer handle copies the context when it
                        # is armed, and a cancelled handle waits in the loop's heap until its
                        # time; holding the attempt there would hold the request's task too.
                        # set(None) below rather than reset: no Token held through the wait.
                        attempt_var.set(attempt)
                        result = await factory()
                except TimeoutError as exc:
                    if attempt.scope.expired():
                        raise SignerTimeoutError(
                            "attempt timed out", signer=self.signer, endpoint=endpoint
                        ) from exc
                    raise
                except asyncio.CancelledError:
                    # Judged while it is still on the wire, as the call metric judges it.
                    cancelled = attempt.cut_outcome() == "cancelled"
                    raise
                finally:
                    attempt_var.set(None)
                    # However it ended, it left the wire.
                    self._left_wire(attempt, loop.time(), cancelled=cancelled)
        except SignerError as exc:
            self._record_error(permit, attempt, exc, endpoint)
            raise
        except BulkheadFull as exc:
            self.breaker.record_ignored(permit)
            if self._waited_until_deadline(exc, time_left):
                raise NoTimeLeft(self.signer, endpoint=endpoint) from exc
            if self._metrics is not None:
                self._metrics.signer_shed.labels(self.signer).inc()
            raise
        except BaseException:
            # Cancelled: by the deadline (judged by `_Attempt`), a failing sibling, shutdown.
            self._record_cut(permit, attempt, endpoint)
            raise
        self._silence_ends(loop.time())  # it answered
        self.breaker.record_success(permit)
        return result

    def _retry_sent(self, retry: PlannedRetry, endpoint: str) -> None:
        retry.sent = True
        if self._metrics is not None:
            self._metrics.signer_retries.labels(self.signer, endpoint, retry.reason).inc()

    def _time_left(self, deadline: float | None, endpoint: str, *, now: float) -> float | None:
        """Seconds left for an attempt (None: no deadline); NoTimeLeft when too few to send one."""
        if deadline is None:
            return None
        time_left = deadline - now
        if time_left < MIN_ATTEMPT_SECONDS:
            raise NoTimeLeft(self.signer, endpoint=endpoint)
        return time_left

    def _waited_until_deadline(self, shed: BulkheadFull, time_left: float | None) -> bool:
        """Whether the wait for a slot ran out at the deadline, not at `max_wait`: a cut."""
        return (
            shed.reason == "wait-timeout"
            and time_left is not None
            and time_left <= self.bulkhead.max_wait
        )

    def _record_error(
        self, permit: Permit, attempt: _Attempt | None, exc: SignerError, endpoint: str
    ) -> None:
        if isinstance(exc, SignerResponseError):
            # It answered: whatever it said, it is not hung.
            self._silence_ends(asyncio.get_running_loop().time())
        if attempt is not None and attempt.scope.expired():
            self._record_cut(permit, attempt, endpoint)
        else:
            self._record(permit, breaker_verdict(exc))

    def _record_cut(self, permit: Permit, attempt: _Attempt | None, endpoint: str) -> None:
        """Record an attempt cut short (or never sent, `attempt` None).

        A cut by the caller's deadline is logged here; the attempt's own timeout surfaces as
        a SignerTimeoutError, which `call_signer` logs.
        """
        if attempt is None:
            self.breaker.record_ignored(permit)  # never sent: nothing learned
            return
        outcome = attempt.cut_outcome()
        if attempt.deadline_cut:
            extra = {"signer": self.signer, "endpoint": endpoint, "outcome": outcome}
            if outcome == "timeout":
                logger.warning(
                    "signer attempt cut by the request deadline; the signer has answered "
                    "nothing for an attempt timeout, counted as a timeout",
                    extra=extra,
                )
            else:
                logger.info(
                    "signer attempt cut by the request deadline; the signer is answering, "
                    "not counted",
                    extra=extra,
                )
        self._record(permit, attempt.cut_verdict())

    def _record(self, permit: Permit, verdict: Verdict) -> None:
        if verdict is Verdict.SUCCESS:
            self.breaker.record_success(permit)
        elif verdict is Verdict.FAILURE:
            self.breaker.record_failure(permit)
        else:
            self.breaker.record_ignored(permit)
