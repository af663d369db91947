"""The per-signer policy: retries, breaker and bulkhead refusals, what a cut attempt counts as."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from signing_gateway.errors import DeadlineExceeded
from signing_gateway.issuance.deadline import request_deadline
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.signer_calls import attempt_var, observe_signer_call
from signing_gateway.observability.telemetry import Telemetry, telemetry_var
from signing_gateway.resilience.breaker import BreakerOpen, BreakerState
from signing_gateway.resilience.bulkhead import BulkheadFull
from signing_gateway.resilience.policy import MIN_ATTEMPT_SECONDS, NoTimeLeft, SignerPolicy
from signing_gateway.settings import ResilienceSettings
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerRejectedError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
)
from tests.support.loop_lateness import LoopLateness
from tests.support.polling import until


def _policy(**overrides) -> tuple[SignerPolicy, GatewayMetrics]:
    values = {
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.02,
        "max_attempts": 3,
        "attempt_timeout_seconds": 0.2,
    }
    values.update(overrides)
    metrics = GatewayMetrics()
    policy = SignerPolicy(
        "eu",
        ResilienceSettings(**values),
        metrics=metrics,
        rng=random.Random(1),  # noqa: S311 - jitter, not security
    )
    return policy, metrics


def _sample(metrics: GatewayMetrics, name: str, **labels) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


class Script:
    """A factory that fails with the given errors, then answers "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def _hang() -> str:
    """A signer that never answers."""
    await asyncio.Event().wait()
    return "never"


def _connect() -> SignerConnectError:
    return SignerConnectError("refused", signer="eu", endpoint="get_credential")


def _timeout() -> SignerTimeoutError:
    return SignerTimeoutError("read", signer="eu", endpoint="get_credential")


async def test_refused_connection_is_retried_until_success():
    """A call that never reached the signer is retried, even for a non-replayable endpoint."""
    policy, metrics = _policy()
    script = Script(_connect(), _connect())
    assert await policy.call("issue", script, replay_safe=False) == "ok"
    assert script.calls == 3
    labels = {"signer": "eu", "endpoint": "issue", "reason": "connect"}
    assert _sample(metrics, "gateway_signer_retries_total", **labels) == 2


async def test_a_retry_is_counted_only_once_it_is_sent():
    """A retry the breaker refuses, or that is cancelled in its backoff, sent nothing.

    The failure that opens the breaker is the last one its call sends: counting its retry
    when it was planned made `gateway_signer_retries_total` run ahead of the attempts in
    `gateway_signer_calls_total` in every outage, by each call then in its backoff.
    """
    labels = {"signer": "eu", "endpoint": "get_credential", "reason": "connect"}
    policy, metrics = _policy(breaker_consecutive_failures=1, max_attempts=2)
    script = Script(_connect())
    with pytest.raises(BreakerOpen):
        await policy.call("get_credential", script, replay_safe=True)
    assert script.calls == 1
    assert _sample(metrics, "gateway_signer_retries_total", **labels) == 0

    policy, metrics = _policy(backoff_base_seconds=5.0, backoff_max_seconds=5.0)
    script = Script(_connect())
    call = asyncio.create_task(policy.call("get_credential", script, replay_safe=True))
    await until(lambda: script.calls == 1)
    await asyncio.sleep(0.05)  # in its backoff now
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert script.calls == 1
    assert _sample(metrics, "gateway_signer_retries_total", **labels) == 0


async def test_attempts_are_capped():
    """After max_attempts the last failure surfaces."""
    policy, _ = _policy(max_attempts=2)
    script = Script(_connect(), _connect(), _connect())
    with pytest.raises(SignerConnectError):
        await policy.call("get_credential", script, replay_safe=True)
    assert script.calls == 2


async def test_timeout_is_retried_only_where_replay_is_safe():
    """A timed-out /issue is not sent again; a timed-out get_credential is."""
    policy, _ = _policy()
    unsafe = Script(_timeout())
    with pytest.raises(SignerTimeoutError):
        await policy.call("issue", unsafe, replay_safe=False)
    assert unsafe.calls == 1
    safe = Script(_timeout())
    assert await policy.call("get_credential", safe, replay_safe=True) == "ok"
    assert safe.calls == 2


async def test_a_timeout_before_sending_is_retried_like_a_refused_connection():
    """A connect or pool timeout sent nothing: retried on /issue too, counted as "connect"."""
    policy, metrics = _policy()
    script = Script(SignerTimeoutError("connect", signer="eu", endpoint="i", before_sending=True))
    assert await policy.call("issue", script, replay_safe=False) == "ok"
    assert script.calls == 2
    labels = {"signer": "eu", "endpoint": "issue"}
    assert _sample(metrics, "gateway_signer_retries_total", **labels, reason="connect") == 1
    assert _sample(metrics, "gateway_signer_retries_total", **labels, reason="timeout") == 0


async def test_server_error_is_not_retried():
    """A 500 means the signer handled the request and failed: no retry."""
    policy, _ = _policy()
    script = Script(SignerServerError("500", signer="eu", endpoint="x", status_code=500))
    with pytest.raises(SignerServerError):
        await policy.call("get_credential", script, replay_safe=True)
    assert script.calls == 1


async def test_a_refusal_between_server_errors_breaks_their_run():
    """A 4xx is the signer answering: the 5xx before it and the one after are not in a row."""
    policy, _ = _policy(breaker_consecutive_failures=2)
    for error in (
        SignerServerError("500", signer="eu", endpoint="x", status_code=500),
        SignerRejectedError("400", signer="eu", endpoint="x", status_code=400),
        SignerServerError("500", signer="eu", endpoint="x", status_code=500),
    ):
        with pytest.raises(type(error)):
            await policy.call("get_credential", Script(error), replay_safe=True)
    assert policy.breaker.state is BreakerState.CLOSED


async def test_retry_after_is_honoured_only_when_it_fits_the_deadline():
    """A 503 Retry-After is waited for when it fits the deadline, and answered at once if not."""
    policy, _ = _policy()
    loop = asyncio.get_running_loop()

    def throttled(after: float) -> SignerThrottledError:
        return SignerThrottledError(
            "503", signer="eu", endpoint="x", status_code=503, retry_after=after
        )

    fits = Script(throttled(0.1))
    started = time.monotonic()
    assert await policy.call("x", fits, replay_safe=False, deadline=loop.time() + 1.0) == "ok"
    assert 0.1 <= time.monotonic() - started < 0.6
    too_long = Script(throttled(5.0))
    started = time.monotonic()
    with pytest.raises(SignerThrottledError):
        await policy.call("x", too_long, replay_safe=False, deadline=loop.time() + 1.0)
    assert time.monotonic() - started < 0.1
    assert too_long.calls == 1


async def test_long_retry_after_is_passed_to_the_caller_at_once():
    """A Retry-After beyond max_retry_after_seconds is not waited out, even with time left."""
    policy, _ = _policy(max_retry_after_seconds=0.5)
    loop = asyncio.get_running_loop()
    long_pause = Script(
        SignerThrottledError("429", signer="eu", endpoint="x", status_code=429, retry_after=0.8)
    )
    started = time.monotonic()
    with pytest.raises(SignerThrottledError):
        await policy.call("x", long_pause, replay_safe=True, deadline=loop.time() + 10.0)
    assert time.monotonic() - started < 0.1
    assert long_pause.calls == 1


async def test_retry_after_of_exactly_the_longest_wait_is_waited_out():
    """A Retry-After equal to max_retry_after_seconds is at most the limit: it is waited for."""
    policy, _ = _policy(max_retry_after_seconds=0.1)
    throttled = Script(
        SignerThrottledError("429", signer="eu", endpoint="x", status_code=429, retry_after=0.1)
    )
    assert await policy.call("x", throttled, replay_safe=True) == "ok"
    assert throttled.calls == 2


async def test_a_retry_leaving_no_time_for_its_attempt_is_not_waited_for():
    """A pause that fits the deadline but leaves under 50 ms to send: the answer comes at once."""
    policy, _ = _policy(backoff_base_seconds=0.001, backoff_max_seconds=0.001)
    loop = asyncio.get_running_loop()
    throttled = Script(
        SignerThrottledError("503", signer="eu", endpoint="x", status_code=503, retry_after=0.1)
    )
    started = loop.time()
    with pytest.raises(SignerThrottledError):
        await policy.call(
            "x", throttled, replay_safe=True, deadline=started + 0.1 + MIN_ATTEMPT_SECONDS / 2
        )
    assert loop.time() - started < 0.05
    assert throttled.calls == 1


def test_a_retry_leaving_exactly_the_minimum_attempt_time_is_made():
    """A pause after which exactly 50 ms are left still fits an attempt: the retry is planned."""
    policy, _ = _policy()  # its jitter draws from Random(1)
    pause = random.Random(1).uniform(0.0, 0.01)  # noqa: S311 - the same draw, not security
    retry = policy.retry_delay(
        _connect(), attempt=0, time_left=pause + MIN_ATTEMPT_SECONDS, replay_safe=True
    )
    assert retry is not None
    assert (retry.reason, retry.delay) == ("connect", pause)


async def test_attempt_timeout_never_exceeds_the_remaining_deadline():
    """With 0.1 s left, an attempt is cut at 0.1 s although attempt_timeout is 5 s."""
    policy, _ = _policy(attempt_timeout_seconds=5.0)
    loop = asyncio.get_running_loop()

    async def hang() -> str:
        await asyncio.sleep(10)
        return "late"

    started = time.monotonic()
    with pytest.raises(SignerTimeoutError):
        await policy.call("issue", hang, replay_safe=False, deadline=loop.time() + 0.1)
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(("attempt_timeout", "deadline"), [(5.0, 0.1), (0.6, 0.4)])
async def test_an_attempt_cut_at_the_deadline_is_not_held_against_the_signer(
    attempt_timeout, deadline
):
    """Its timer set to the nearer deadline, the attempt times out there: the breaker ignores it.

    The signer was waited on for 0.1 s of a 5 s attempt timeout: the caller's deadline cut
    the attempt, not the signer's silence (a part in a task of its own may see this timeout
    before the deadline's cancellation). Not watched by the call metric, the attempt is
    judged as it leaves the wire: its 0.4 s of a 0.6 s timeout count once, not silent yet
    (0.2 s to spare for a late loop; counted twice, 0.8 s, they would be).
    """
    policy, _ = _policy(attempt_timeout_seconds=attempt_timeout, breaker_consecutive_failures=1)
    loop = asyncio.get_running_loop()
    with pytest.raises(SignerTimeoutError):
        await policy.call("issue", _hang, replay_safe=False, deadline=loop.time() + deadline)
    assert policy.breaker.state is BreakerState.CLOSED


async def test_exhausted_budget_stops_retries():
    """With the retry budget spent, a refused connection is not retried and it is counted."""
    policy, metrics = _policy(retry_budget_ratio=0.0, retry_budget_min_per_second=0.1)
    first = Script(_connect())
    assert await policy.call("x", first, replay_safe=True) == "ok"  # spends the only retry
    second = Script(_connect())
    with pytest.raises(SignerConnectError):
        await policy.call("x", second, replay_safe=True)
    assert second.calls == 1
    assert _sample(metrics, "gateway_signer_retry_budget_exhausted_total", signer="eu") == 1


async def test_each_call_earns_its_share_of_retries():
    """With no floor, the retry budget is what the calls themselves deposited."""
    policy, _ = _policy(retry_budget_ratio=1.0, retry_budget_min_per_second=0.0)
    script = Script(_connect())
    assert await policy.call("x", script, replay_safe=True) == "ok"
    assert script.calls == 2


async def test_a_timeout_error_of_the_call_itself_is_no_attempt_timeout():
    """A TimeoutError the attempt's timer did not raise is not a signer timeout: no retry."""
    policy, _ = _policy()
    script = Script(TimeoutError())
    with pytest.raises(TimeoutError) as info:
        await policy.call("x", script, replay_safe=True)
    assert not isinstance(info.value, SignerTimeoutError)
    assert script.calls == 1


async def test_breaker_opens_and_then_refuses_without_calling():
    """Consecutive failures open the breaker; the next call fails fast and sends nothing."""
    policy, metrics = _policy(breaker_consecutive_failures=2, max_attempts=1)
    for _ in range(2):
        with pytest.raises(SignerConnectError):
            await policy.call("x", Script(_connect()), replay_safe=True)
    assert policy.breaker.state is BreakerState.OPEN
    untouched = Script()
    with pytest.raises(BreakerOpen):
        await policy.call("x", untouched, replay_safe=True)
    assert untouched.calls == 0
    assert _sample(metrics, "gateway_signer_breaker_state", signer="eu") == 2
    assert _sample(metrics, "gateway_signer_breaker_transitions_total", signer="eu", to="open") == 1


def test_the_breaker_gauge_says_half_open_once_the_open_period_is_over():
    """A scrape reads the breaker's state as a call would, with no call or /readyz first.

    The gauge used to move only when something asked the breaker for its state: a signer
    nobody called after its breaker opened showed 2 (open) at every scrape, long after the
    breaker would have let trial calls through, and the breaker-open alert never ended.
    """
    now = [1000.0]
    metrics = GatewayMetrics()
    policy = SignerPolicy(
        "eu",
        ResilienceSettings(breaker_open_seconds=5.0),
        metrics=metrics,
        clock=lambda: now[0],
    )
    permit = policy.breaker.acquire()
    for _ in range(policy.settings.breaker_consecutive_failures):
        policy.breaker.record_failure(permit)
    assert _sample(metrics, "gateway_signer_breaker_state", signer="eu") == 2
    now[0] += 5.0
    assert _sample(metrics, "gateway_signer_breaker_state", signer="eu") == 1
    assert policy.breaker.state is BreakerState.HALF_OPEN
    assert (
        _sample(metrics, "gateway_signer_breaker_transitions_total", signer="eu", to="half-open")
        == 1
    )


@asynccontextmanager
async def _slot_held(policy: SignerPolicy) -> AsyncIterator[None]:
    """The policy's only bulkhead slot, held by a call that succeeds when the block ends."""
    release = asyncio.Event()

    async def busy() -> str:
        await release.wait()
        return "ok"

    holder = asyncio.create_task(policy.call("x", busy, replay_safe=True))
    await asyncio.sleep(0)  # one step: the holder takes the slot and waits at its "signer"
    assert policy.bulkhead.in_flight == 1
    yield
    release.set()
    assert await holder == "ok"


async def test_full_bulkhead_sheds_and_counts():
    """With every slot busy and no queue, a call is shed at once and counted."""
    policy, metrics = _policy(max_in_flight=1, max_pending=0)
    async with _slot_held(policy):
        with pytest.raises(BulkheadFull):
            await policy.call("x", Script(), replay_safe=True)
    assert _sample(metrics, "gateway_signer_shed_total", signer="eu") == 1
    assert policy.breaker.state is BreakerState.CLOSED


async def _shed(policy: SignerPolicy) -> None:
    with pytest.raises(BulkheadFull):
        await policy.call("x", Script(), replay_safe=True)


async def _cancelled_in_the_queue(policy: SignerPolicy) -> None:
    queued = asyncio.create_task(policy.call("x", Script(), replay_safe=True))
    await until(lambda: policy.bulkhead.pending == 1)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued


async def _no_time_left(policy: SignerPolicy) -> None:
    deadline = asyncio.get_running_loop().time() + MIN_ATTEMPT_SECONDS / 2
    with pytest.raises(NoTimeLeft):
        await policy.call("x", Script(), replay_safe=True, deadline=deadline)


@pytest.mark.parametrize(
    ("max_pending", "never_sent"),
    [(0, _shed), (1, _cancelled_in_the_queue), (1, _no_time_left)],
    ids=["shed", "cancelled", "no-time-left"],
)
async def test_a_trial_call_that_never_went_out_gives_its_place_back(max_pending, never_sent):
    """Half-open: a trial shed, cancelled in its queue or left no time to send frees its place.

    A place kept by a call that sent nothing is never given back: with every place so held,
    the breaker refuses every call and stays half-open for good.
    """
    policy, _ = _policy(
        max_attempts=1,
        breaker_consecutive_failures=1,
        breaker_open_seconds=0.05,
        breaker_trial_calls=2,
        max_in_flight=1,
        max_pending=max_pending,
    )
    with pytest.raises(SignerConnectError):
        await policy.call("x", Script(_connect()), replay_safe=True)
    await until(lambda: policy.breaker.state is BreakerState.HALF_OPEN)
    async with _slot_held(policy):  # the first trial
        await never_sent(policy)
        second_trial = policy.breaker.acquire()  # not refused: the place was given back
        policy.breaker.record_ignored(second_trial)
    assert policy.breaker.state is BreakerState.HALF_OPEN


class Signer:
    """A signer answering "ok" after `seconds`, or never (`hung`), through the call metrics."""

    def __init__(self, seconds: float = 0.0, *, hung: bool = False) -> None:
        self.seconds = seconds
        self.hung = hung
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self.called.set()
        with observe_signer_call(signer="eu", endpoint="get_credential", headers={}):
            if self.hung:
                await asyncio.Event().wait()
            await asyncio.sleep(self.seconds)
        return "ok"


@pytest.fixture
def no_collection() -> Iterator[None]:
    """No cyclic garbage collection until the test ends.

    The tests counting outcomes send calls under deadlines of 0.1 s, MIN_ATTEMPT_SECONDS
    more than too short to send one. A full collection of the suite's heap takes 40-90 ms
    (measured): landing between a deadline's start and its call, it left the call NoTimeLeft.
    """
    collecting = gc.isenabled()
    gc.disable()
    yield
    if collecting:
        gc.enable()


@pytest.fixture
def telemetry(no_collection: None) -> Iterator[GatewayMetrics]:
    """Metrics bound as the current request's telemetry, so signer calls are counted.

    Its tests time short deadlines: no collection pauses them (`no_collection`).
    """
    metrics = GatewayMetrics()
    token = telemetry_var.set(Telemetry(metrics))
    yield metrics
    telemetry_var.reset(token)


def _policy_counting(metrics: GatewayMetrics, **overrides) -> SignerPolicy:
    values = {"max_attempts": 1, "breaker_consecutive_failures": 3, **overrides}
    return SignerPolicy("eu", ResilienceSettings(**values), metrics=metrics)


def _outcomes(metrics: GatewayMetrics) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "gateway_signer_calls_total":
                found[sample.labels["outcome"]] = sample.value
    return found


async def _call_within(policy: SignerPolicy, seconds: float, signer: Signer) -> str:
    """One call of `signer` under a request deadline of `seconds`, as an issuer makes it."""
    async with request_deadline(seconds) as deadline:
        return await policy.call("get_credential", signer, replay_safe=True, deadline=deadline.at)


async def test_hung_signer_opens_the_breaker_under_deadlines_shorter_than_the_attempt(
    telemetry,
):
    """Cut by 0.1 s deadlines, a hung signer trips the breaker once silent a whole attempt."""
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.3)
    hung = Signer(hung=True)
    loop = asyncio.get_running_loop()
    async with LoopLateness() as lateness:
        started, late_before = loop.time(), lateness.total()
        cuts = 0
        while policy.breaker.state is BreakerState.CLOSED and cuts < 20:
            request_started, late_at_request = loop.time(), lateness.total()
            with pytest.raises(DeadlineExceeded):
                await _call_within(policy, 0.1, hung)
            # The caller's 504 comes in its budget, however late a loaded machine made it.
            assert loop.time() - request_started < 0.2 + lateness.since(late_at_request)
            cuts += 1
        assert policy.breaker.state is BreakerState.OPEN
        # Not before the signer had been silent for an attempt timeout, then three in a row.
        took = loop.time() - started
        assert 0.3 + 2 * 0.1 <= took < 0.3 + 4 * 0.1 + lateness.since(late_before)
    assert _outcomes(telemetry) == {"deadline": cuts - 3, "timeout": 3}
    with pytest.raises(BreakerOpen):
        await _call_within(policy, 0.1, hung)
    assert hung.calls == cuts  # the refusal sent nothing


async def test_short_deadlines_do_not_open_the_breaker_of_an_answering_signer(telemetry):
    """Impatient callers' cuts are ignored while a slower signer keeps answering the others."""
    # The cuts between two answers add up to 0.3 s: 0.7 s to spare for a late loop.
    policy = _policy_counting(telemetry, attempt_timeout_seconds=1.0)
    slow = Signer(0.3)
    patient = [asyncio.create_task(_call_within(policy, 2.0, slow))]
    impatient = 0
    for _ in range(12):  # 3.6 s of cuts: more than three attempt timeouts
        await asyncio.sleep(0.1)
        patient.append(asyncio.create_task(_call_within(policy, 2.0, slow)))
        for _ in range(3):
            with pytest.raises(DeadlineExceeded):
                await _call_within(policy, 0.05 + MIN_ATTEMPT_SECONDS, slow)
            impatient += 1
    assert await asyncio.gather(*patient) == ["ok"] * len(patient)
    assert policy.breaker.state is BreakerState.CLOSED
    assert _outcomes(telemetry) == {"ok": len(patient), "deadline": impatient}


async def _answered(policy: SignerPolicy, slow: Signer) -> None:
    assert await _call_within(policy, 2.0, slow) == "ok"


async def _answered_then_cut(policy: SignerPolicy, slow: Signer) -> None:
    await _answered(policy, slow)
    with pytest.raises(DeadlineExceeded):  # one impatient caller
        await _call_within(policy, 0.1, slow)


async def _cancelled_on_the_wire(policy: SignerPolicy, slow: Signer) -> None:
    call = asyncio.create_task(_call_within(policy, 2.0, slow))
    await slow.called.wait()
    call.cancel()  # as a failing sibling part cancels it
    with pytest.raises(asyncio.CancelledError):
        await call


BEFORE_THE_QUIET = {
    "answered": (_answered, {"ok": 1}),
    "cut": (_answered_then_cut, {"ok": 1, "deadline": 1}),
    "cancelled": (_cancelled_on_the_wire, {"cancelled": 1}),
}


@pytest.mark.parametrize("before", BEFORE_THE_QUIET.values(), ids=BEFORE_THE_QUIET)
async def test_a_burst_of_short_deadlines_after_a_quiet_spell_is_not_a_failure(telemetry, before):
    """A slow, healthy signer idle for a while: a burst of cuts is ignored, whatever came before.

    The last call before the quiet spell was answered, cut by its caller's deadline, or
    cancelled: with nothing on the wire the signer had nothing to answer, so it is not silent.
    """
    last_call, outcomes = before
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.5)
    slow = Signer(0.3)
    await last_call(policy, slow)
    await asyncio.sleep(0.6)  # quiet: longer than an attempt timeout
    burst = [_call_within(policy, 0.1, slow) for _ in range(10)]
    results = await asyncio.gather(*burst, return_exceptions=True)
    assert all(isinstance(r, DeadlineExceeded) for r in results)
    assert policy.breaker.state is BreakerState.CLOSED
    assert _outcomes(telemetry) == {**outcomes, "deadline": outcomes.get("deadline", 0) + 10}


async def _cut_until_open(policy: SignerPolicy, seconds: float, *, pause: float = 0.0) -> int:
    """Calls to a hung signer under `seconds` deadlines, `pause` apart, until the breaker opens."""
    hung = Signer(hung=True)
    cuts = 0
    while policy.breaker.state is BreakerState.CLOSED and cuts < 10:
        with pytest.raises(DeadlineExceeded):
            await _call_within(policy, seconds, hung)
        cuts += 1
        await asyncio.sleep(pause)
    assert policy.breaker.state is BreakerState.OPEN
    return cuts


async def test_silence_adds_up_the_time_on_the_wire_across_quiet_spells(telemetry):
    """A hung signer behind short calls with pauses between: only the time waited counts."""
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.55)
    # Between the cuts nothing is on the wire: not silence, and no answer either.
    await _cut_until_open(policy, 0.2, pause=0.4)
    # Waited 0.2 s, 0.4 s (0.15 s to spare for a late loop; with the pause, 0.8 s), then
    # 0.6 s: silent from the third cut, and three open it.
    assert _outcomes(telemetry) == {"deadline": 2, "timeout": 3}


async def test_a_signer_answering_429_between_short_deadlines_is_not_silent(telemetry):
    """Each answer, a refusal to work included, ends the silence: the cuts between are ignored."""
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.3)

    async def throttling() -> str:
        await asyncio.sleep(0.05)
        raise SignerThrottledError(
            "429", signer="eu", endpoint="get_credential", status_code=429, retry_after=None
        )

    for _ in range(6):  # 0.9 s on the wire in all: three attempt timeouts
        with pytest.raises(SignerThrottledError):
            await policy.call("get_credential", throttling, replay_safe=True)
        with pytest.raises(DeadlineExceeded):
            await _call_within(policy, 0.1, Signer(0.3))
    assert policy.breaker.state is BreakerState.CLOSED
    assert _outcomes(telemetry) == {"deadline": 6}


async def test_hung_signer_under_overlapping_short_calls_opens_the_breaker(telemetry):
    """Calls sent while others still wait do not restart the silence: it counts from the first."""
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.3)
    hung = Signer(hung=True)
    calls = []
    while policy.breaker.state is BreakerState.CLOSED and len(calls) < 20:
        calls.append(asyncio.create_task(_call_within(policy, 0.15, hung)))
        await asyncio.sleep(0.05)  # a new call every 50 ms: always one on the wire
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert policy.breaker.state is BreakerState.OPEN
    assert all(isinstance(r, DeadlineExceeded | BreakerOpen) for r in results)
    assert _outcomes(telemetry)["timeout"] == 3


async def _left_after(policy: SignerPolicy, slow: Signer, seconds: float) -> None:
    call = asyncio.create_task(_call_within(policy, 2.0, slow))
    await asyncio.sleep(seconds)
    call.cancel()  # its caller left, as the gateway's HTTP protocol cancels its request
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_callers_that_leave_do_not_make_a_slow_signer_silent(telemetry):
    """Attempts cancelled for callers who left are no waiting: the impatient cuts are ignored.

    A caller arrives every 0.1 s and leaves after 0.2 s, before the 0.4 s signer answers, so
    some attempt is always on the wire and none is answered; the four impatient cuts between
    them wait 0.4 s in all, half an attempt timeout (the other half for a loaded machine,
    whose late loop lengthens each cut), while the leavers' 1.6 s on the wire are twice one.
    """
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.8)
    slow = Signer(0.4)
    leavers = []
    for tick in range(16):
        leavers.append(asyncio.create_task(_left_after(policy, slow, 0.2)))
        if tick >= 6 and tick % 3 == 0:
            with pytest.raises(DeadlineExceeded):  # an impatient caller, cut in 0.1 s
                await _call_within(policy, 0.1, slow)
        else:
            await asyncio.sleep(0.1)
    await asyncio.gather(*leavers)
    assert policy.breaker.state is BreakerState.CLOSED
    assert await _call_within(policy, 2.0, slow) == "ok"
    assert _outcomes(telemetry) == {"cancelled": 16, "deadline": 4, "ok": 1}


async def test_silence_from_before_the_breaker_opened_does_not_reopen_it(telemetry):
    """A trial cut by an impatient caller is judged on the silence since the breaker moved."""
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.3, breaker_open_seconds=0.1)
    cuts = await _cut_until_open(policy, 0.1)
    await until(lambda: policy.breaker.state is BreakerState.HALF_OPEN)
    with pytest.raises(DeadlineExceeded):  # the signer recovered, but answers in 0.3 s
        await _call_within(policy, 0.1, Signer(0.3))
    assert policy.breaker.state is BreakerState.HALF_OPEN
    assert _outcomes(telemetry) == {"deadline": cuts - 3 + 1, "timeout": 3}


def test_a_signer_unanswering_for_exactly_an_attempt_timeout_is_silent():
    """Waiting of exactly attempt_timeout is silence: a patient caller's attempt ends there."""
    policy, _ = _policy(attempt_timeout_seconds=0.5)
    assert not policy.signer_silent(10.25, 10.0)  # on the wire for half a timeout
    assert policy.signer_silent(10.5, 10.0)  # for exactly one


async def test_a_cut_is_judged_once_however_long_the_attempt_takes_to_end(telemetry):
    """An attempt cancelled for a caller that left stays cancelled, its clean-up however long.

    The call metric judges the cut as the signer call ends; the policy records it after the
    attempt's clean-up (closing its connection, say), by when the attempt's timeout has
    passed. Both say "cancelled": nothing is held against the signer.
    """
    policy = _policy_counting(
        telemetry, attempt_timeout_seconds=0.2, breaker_consecutive_failures=1
    )
    sent = asyncio.Event()

    async def closing_slowly() -> str:
        try:
            with observe_signer_call(signer="eu", endpoint="get_credential", headers={}):
                sent.set()
                await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.25)  # the clean-up, past the attempt's own timeout
        return "never"

    call = asyncio.create_task(policy.call("get_credential", closing_slowly, replay_safe=True))
    await sent.wait()
    call.cancel()  # its caller left, well inside the attempt's timeout
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _outcomes(telemetry) == {"cancelled": 1}
    assert policy.breaker.state is BreakerState.CLOSED


async def test_an_attempt_timing_out_on_its_own_counts_as_a_timeout(telemetry):
    """An attempt cut by attempt_timeout is labelled "timeout", as the breaker counts it."""
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.1)
    with pytest.raises(SignerTimeoutError):
        await _call_within(policy, 2.0, Signer(hung=True))
    assert _outcomes(telemetry) == {"timeout": 1}


async def test_a_cancelled_attempt_is_neither_a_timeout_nor_a_deadline(telemetry):
    """An attempt cancelled from outside (a failing sibling) is "cancelled" and not counted."""
    policy = _policy_counting(
        telemetry, attempt_timeout_seconds=0.6, breaker_consecutive_failures=1
    )
    hung = Signer(hung=True)
    with pytest.raises(DeadlineExceeded):
        await _call_within(policy, 0.3, hung)  # the signer is silent from here
    call = asyncio.create_task(_call_within(policy, 2.0, hung))
    await asyncio.sleep(0.45)  # silent 0.75 s, past an attempt timeout; the call's own: 0.9 s
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert _outcomes(telemetry) == {"deadline": 1, "cancelled": 1}
    assert policy.breaker.state is BreakerState.CLOSED


async def test_attempt_never_outlives_the_deadline_after_waiting_for_a_slot():
    """A call that waited 0.2 s for a bulkhead slot still ends at its 0.35 s deadline."""
    policy, _ = _policy(
        attempt_timeout_seconds=5.0, max_in_flight=1, max_pending=1, max_wait_seconds=1.0
    )
    loop = asyncio.get_running_loop()
    holder = asyncio.create_task(policy.call("x", Signer(0.2), replay_safe=True))
    await asyncio.sleep(0)
    async with LoopLateness() as lateness:
        started, late_before = loop.time(), lateness.total()
        with pytest.raises(SignerTimeoutError):
            await policy.call("x", Signer(hung=True), replay_safe=False, deadline=started + 0.35)
        # At the deadline, however late a loaded machine made it, not 0.35 s after the slot.
        assert loop.time() - started < 0.45 + lateness.since(late_before)
    assert await holder == "ok"


async def test_too_little_time_left_sends_nothing_and_is_no_signer_failure() -> None:
    """Under MIN_ATTEMPT_SECONDS left: NoTimeLeft, nothing sent, the breaker unmoved."""
    policy, metrics = _policy(breaker_consecutive_failures=1)
    loop = asyncio.get_running_loop()
    untouched = Script()
    with pytest.raises(NoTimeLeft):
        await policy.call(
            "x", untouched, replay_safe=True, deadline=loop.time() + MIN_ATTEMPT_SECONDS / 2
        )
    assert untouched.calls == 0
    assert policy.breaker.state is BreakerState.CLOSED
    assert _sample(metrics, "gateway_signer_shed_total", signer="eu") == 0


async def test_a_wait_for_a_slot_cut_by_the_deadline_is_not_a_shed() -> None:
    """Waiting for a slot until the deadline is the deadline's cut; until max_wait, a shed."""
    policy, metrics = _policy(
        max_in_flight=1, max_pending=1, max_wait_seconds=0.4, attempt_timeout_seconds=5.0
    )
    loop = asyncio.get_running_loop()
    async with _slot_held(policy), LoopLateness() as lateness:
        started, late_before = loop.time(), lateness.total()
        with pytest.raises(NoTimeLeft):
            await policy.call("x", Script(), replay_safe=True, deadline=started + 0.1)
        # Ended at the deadline, however late a loaded machine made it, not at max_wait.
        assert 0.1 <= loop.time() - started < 0.2 + lateness.since(late_before)
        assert _sample(metrics, "gateway_signer_shed_total", signer="eu") == 0
        with pytest.raises(BulkheadFull):
            await policy.call("x", Script(), replay_safe=True, deadline=loop.time() + 5)
        assert _sample(metrics, "gateway_signer_shed_total", signer="eu") == 1
    assert policy.breaker.state is BreakerState.CLOSED


async def test_a_retry_that_sent_nothing_spends_no_budget():
    """A retry the breaker refuses, or that is cancelled in its backoff, gives its budget back.

    The budget bounds the load retries add to a signer; spent on retries never sent, it
    refused real ones for a whole window after an outage while
    `gateway_signer_retries_total` showed none.
    """
    one_retry = {"retry_budget_ratio": 0.0, "retry_budget_min_per_second": 0.1}  # per 10 s
    policy, _ = _policy(breaker_consecutive_failures=1, max_attempts=2, **one_retry)
    with pytest.raises(BreakerOpen):
        await policy.call("get_credential", Script(_connect()), replay_safe=True)
    assert policy.budget.balance() == 1

    policy, _ = _policy(backoff_base_seconds=5.0, backoff_max_seconds=5.0, **one_retry)
    script = Script(_connect())
    call = asyncio.create_task(policy.call("get_credential", script, replay_safe=True))
    await until(lambda: script.calls == 1)
    await asyncio.sleep(0.05)  # in its backoff now, its retry paid for
    assert policy.budget.balance() == 0
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert policy.budget.balance() == 1


async def test_a_retry_sent_keeps_its_budget_spent():
    """A retry that went out counts against the budget, whatever its answer."""
    policy, _ = _policy(retry_budget_ratio=0.0, retry_budget_min_per_second=0.1)
    with pytest.raises(SignerConnectError):
        await policy.call("x", Script(_connect(), _connect(), _connect()), replay_safe=True)
    assert policy.budget.balance() == 0


def test_breaker_transitions_are_logged_an_opening_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An opening is what an operator must see: WARNING; half-open and closed are INFO."""
    caplog.set_level(logging.INFO, logger="signing_gateway.resilience")
    now = [1000.0]
    policy = SignerPolicy(
        "eu",
        ResilienceSettings(breaker_open_seconds=5.0, breaker_trial_calls=1),
        clock=lambda: now[0],
    )
    permit = policy.breaker.acquire()
    for _ in range(policy.settings.breaker_consecutive_failures):
        policy.breaker.record_failure(permit)
    now[0] += 5.0
    policy.breaker.record_success(policy.breaker.acquire())
    records = [
        (r.levelname, r.getMessage(), getattr(r, "signer", None), getattr(r, "breaker", None))
        for r in caplog.records
    ]
    assert records == [
        ("WARNING", "circuit breaker open", "eu", "open"),
        ("INFO", "circuit breaker half-open", "eu", "half-open"),
        ("INFO", "circuit breaker closed", "eu", "closed"),
    ]


def test_a_signers_retry_after_is_waited_out_with_jitter_on_top() -> None:
    """The callers a signer told to come back in 0.1 s do not all come back at that instant."""
    policy, _ = _policy(backoff_base_seconds=0.05, backoff_max_seconds=0.05)
    throttled = SignerThrottledError(
        "429", signer="eu", endpoint="x", status_code=429, retry_after=0.1
    )
    delays = []
    for _ in range(20):
        plan = policy.retry_delay(throttled, attempt=0, time_left=None, replay_safe=True)
        assert plan is not None
        delays.append(plan.delay)
    assert all(0.1 <= delay <= 0.15 for delay in delays)
    assert max(delays) - min(delays) > 0.025


async def test_the_readiness_snapshot_shows_calls_in_flight_and_waiting() -> None:
    """/readyz shows the calls holding a slot and those queued for one, each as it is."""
    policy, _ = _policy(max_in_flight=1, max_pending=2)
    async with _slot_held(policy):
        queued = [asyncio.create_task(policy.call("x", Script(), replay_safe=True)) for _ in "ab"]
        await until(lambda: policy.bulkhead.pending == 2)
        snapshot = policy.snapshot()
        assert (snapshot["inFlight"], snapshot["pending"]) == (1, 2)
    assert await asyncio.gather(*queued) == ["ok", "ok"]
    assert policy.snapshot() == {
        "breaker": "closed",
        "breakerRetryAfterSeconds": 0,
        "inFlight": 0,
        "pending": 0,
        "retryBudget": policy.settings.retry_budget_min_per_second
        * policy.settings.retry_budget_window_seconds
        + policy.settings.retry_budget_ratio * 3,  # three calls, no retry
    }


async def test_a_full_bulkhead_under_a_deadline_is_a_shed_not_the_deadlines_cut() -> None:
    """No queue to wait in: a 503 shed at once, however near the deadline, not a 504."""
    policy, metrics = _policy(max_in_flight=1, max_pending=0, max_wait_seconds=1.0)
    loop = asyncio.get_running_loop()
    async with _slot_held(policy):
        with pytest.raises(BulkheadFull):
            await policy.call("x", Script(), replay_safe=True, deadline=loop.time() + 0.5)
    assert _sample(metrics, "gateway_signer_shed_total", signer="eu") == 1


async def test_a_first_attempt_is_no_retry() -> None:
    """Calls answered at the first attempt count no retry, under any reason."""
    policy, metrics = _policy()
    assert await policy.call("x", Script(), replay_safe=True) == "ok"
    retries = [
        sample
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "gateway_signer_retries_total"
    ]
    assert retries == []


async def test_an_attempt_is_cut_at_its_own_timeout() -> None:
    """With no deadline, a hung attempt ends attempt_timeout_seconds after it was sent."""
    policy, _ = _policy(attempt_timeout_seconds=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(SignerTimeoutError):
        await policy.call("issue", _hang, replay_safe=False)
    assert 0.2 <= loop.time() - started < 0.3


def test_the_readiness_snapshot_shows_the_time_left_open_to_the_millisecond() -> None:
    """/readyz says when an open breaker lets a probe through, not that time in whole seconds."""
    now = [1000.0]
    policy = SignerPolicy("eu", ResilienceSettings(breaker_open_seconds=5.0), clock=lambda: now[0])
    permit = policy.breaker.acquire()
    for _ in range(policy.settings.breaker_consecutive_failures):
        policy.breaker.record_failure(permit)
    now[0] += 0.25
    snapshot = policy.snapshot()
    assert (snapshot["breaker"], snapshot["breakerRetryAfterSeconds"]) == ("open", 4.75)


async def test_answered_calls_end_a_run_of_failures_and_close_a_half_open_breaker() -> None:
    """An answer is the breaker's success: it breaks a run of failures, and trials close it."""
    now = [1000.0]
    policy = SignerPolicy(
        "eu",
        ResilienceSettings(
            max_attempts=1,
            breaker_consecutive_failures=2,
            breaker_open_seconds=5.0,
            breaker_trial_calls=2,
        ),
        clock=lambda: now[0],
    )
    for _ in range(3):  # failure, answer, failure: never two in a row
        with pytest.raises(SignerConnectError):
            await policy.call("x", Script(_connect()), replay_safe=True)
        assert await policy.call("x", Script(), replay_safe=True) == "ok"
    assert policy.breaker.state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(SignerConnectError):
            await policy.call("x", Script(_connect()), replay_safe=True)
    assert policy.breaker.state is BreakerState.OPEN
    now[0] += 5.0
    assert await policy.call("x", Script(), replay_safe=True) == "ok"
    assert policy.breaker.state is BreakerState.HALF_OPEN  # one trial answered of two
    assert await policy.call("x", Script(), replay_safe=True) == "ok"
    assert policy.breaker.state is BreakerState.CLOSED


async def test_a_deadline_cut_is_logged_a_counted_one_as_a_warning(
    telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """An ignored cut is logged at INFO; one counted against a silent signer at WARNING."""
    caplog.set_level(logging.INFO, logger="signing_gateway.resilience")
    policy = _policy_counting(telemetry, attempt_timeout_seconds=0.35)
    hung = Signer(hung=True)
    for _ in range(2):  # waited 0.2 s, then 0.4 s: silent at the second cut
        with pytest.raises(DeadlineExceeded):
            await _call_within(policy, 0.2, hung)
    cuts = [
        (r.levelname, getattr(r, "outcome", None), getattr(r, "endpoint", None))
        for r in caplog.records
        if r.getMessage().startswith("signer attempt cut by the request deadline")
    ]
    assert cuts == [
        ("INFO", "deadline", "get_credential"),
        ("WARNING", "timeout", "get_credential"),
    ]


def test_the_backoff_ceiling_doubles_with_each_retry_of_a_call() -> None:
    """A call's later retries wait longer: the jitter's ceiling is base · 2^n, up to the cap."""
    policy, _ = _policy(
        max_attempts=5,
        backoff_base_seconds=0.1,
        backoff_max_seconds=0.6,
        retry_budget_min_per_second=100,  # every planned retry is paid for
    )
    for attempt, ceiling in enumerate([0.1, 0.2, 0.4, 0.6]):
        delays = []
        for _ in range(50):
            plan = policy.retry_delay(_connect(), attempt=attempt, time_left=None, replay_safe=True)
            assert plan is not None
            delays.append(plan.delay)
        assert ceiling / 2 < max(delays) <= ceiling


async def test_only_a_first_attempt_sent_earns_a_share_of_a_retry() -> None:
    """Calls the breaker, the bulkhead or the deadline refused deposit nothing in the budget.

    The budget is a share of the first attempts a signer was sent. Counting refused calls
    too, an outage behind an open breaker filled it with calls never sent, and the signer
    met that many more retries when it came back.
    """
    policy, _ = _policy(
        retry_budget_ratio=1.0,
        retry_budget_min_per_second=0.0,
        max_in_flight=1,
        max_pending=0,
        breaker_consecutive_failures=1,
        max_attempts=1,
    )
    loop = asyncio.get_running_loop()
    async with _slot_held(policy):  # one first attempt sent: one retry earned
        await _shed(policy)
    assert policy.budget.balance() == 1
    with pytest.raises(NoTimeLeft):
        await policy.call("x", Script(), replay_safe=True, deadline=loop.time())
    assert policy.budget.balance() == 1
    with pytest.raises(SignerConnectError):
        await policy.call("x", Script(_connect()), replay_safe=True)  # sent: opens the breaker
    assert policy.budget.balance() == 2
    for _ in range(3):
        with pytest.raises(BreakerOpen):
            await policy.call("x", Script(), replay_safe=True)
    assert policy.budget.balance() == 2


async def test_a_finished_call_leaves_no_attempt_for_the_signer_call_metric() -> None:
    """After a call, answered or cut, the metric no longer reads its attempt.

    A later call in the same task outside the policy would otherwise be judged, when
    cancelled, by the cut of an attempt long over.
    """
    policy, _ = _policy()
    assert await policy.call("x", Script(), replay_safe=True) == "ok"
    assert attempt_var.get() is None
    with pytest.raises(SignerTimeoutError):
        await policy.call("x", _hang, replay_safe=False)
    assert attempt_var.get() is None
