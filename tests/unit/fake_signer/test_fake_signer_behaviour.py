"""Pure rules of the fake's behaviour: fault grammar, latency model, capacity gate, control."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from fake_signer.behaviour import Behaviour, CapacityGate, FaultSpec, FaultSpecError
from fake_signer.settings import MAX_LATENCY_MS, FakeSignerSettings


@pytest.mark.parametrize(
    ("text", "kind", "arg", "options"),
    [
        ("delay=250", "delay", "250", {}),
        ("status=503;retry-after=7", "status", "503", {"retry-after": "7"}),
        ("reset", "reset", None, {}),
        ("hang", "hang", None, {}),
        ("malformed", "malformed", None, {}),
        ("malformed=shape", "malformed", "shape", {}),
        ("bad-signature", "bad-signature", None, {}),
        ("wrong-kid", "wrong-kid", None, {}),
        ("slow-body=1000", "slow-body", "1000", {}),
        (" Status = 429 ; Retry-After = 2 ", "status", "429", {"retry-after": "2"}),
        ("delay=0", "delay", "0", {}),
        ("status=200", "status", "200", {}),
        ("status=599", "status", "599", {}),
    ],
)
def test_fault_specs_parse(text, kind, arg, options):
    """Every fault kind of the grammar parses, with its argument and options."""
    spec = FaultSpec.parse(text)
    assert (spec.kind, spec.arg, spec.options) == (kind, arg, options)
    assert FaultSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    ["", "boom", "delay", "delay=x", "delay=-5", "delay=inf", "status=99", "status=600",
     "status=101", "status=²²²",
     "status=503;retry-after=soon", "status=503;color=red", "hang=1", "reset;x=1",
     "malformed=weird", "slow-body", "status=503;noequals", "status=199", "wrong-kid=1",
     "bad-signature=1", "delay=5;retry-after=1", "slow-body=5;retry-after=1"],
)  # fmt: skip
def test_invalid_fault_specs_are_refused(text):
    """Specs outside the grammar raise FaultSpecError."""
    with pytest.raises(FaultSpecError):
        FaultSpec.parse(text)


def test_status_of_more_digits_than_int_takes_is_a_fault_spec_error():
    """A status of thousands of digits is refused by the grammar, not by int()'s digit limit."""
    for code in ("5" * 4301, "0" * 4297 + "1503"):
        with pytest.raises(FaultSpecError, match="not a final HTTP status"):
            FaultSpec.parse(f"status={code}")
    assert FaultSpec.parse("status=" + "0" * 4400 + "503").status == 503
    assert FaultSpec.parse("status=0200").status == 200


@pytest.mark.parametrize("seconds", ["1.5", "1e3", "-1", " ", "\u0663", "inf"])
def test_retry_after_must_be_whole_seconds(seconds):
    """A Retry-After no client reads (RFC 9110 delay-seconds are digits) is refused, not sent."""
    with pytest.raises(FaultSpecError, match="retry-after"):
        FaultSpec.parse(f"status=503;retry-after={seconds}")
    assert FaultSpec.parse("status=503;retry-after=0").options == {"retry-after": "0"}


def test_retry_after_is_at_most_ten_digits():
    """Pin that a Retry-After of thousands of digits is refused rather than sent as a header."""
    assert FaultSpec.parse("status=503;retry-after=9999999999").options == {
        "retry-after": "9999999999"
    }
    for seconds in ("1" + "0" * 10, "9" * 5000, "0" * 11):
        with pytest.raises(FaultSpecError, match=r"retry-after of \d+ digits: at most 10"):
            FaultSpec.parse(f"status=503;retry-after={seconds}")


async def settle(condition):
    """Let other tasks run until `condition()` holds, failing after a bounded number of turns."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    pytest.fail("condition never held")


async def full_gate_with_a_waiter():
    """A gate of capacity 1 whose slot is taken, and a task queued for it."""
    gate = CapacityGate(1)
    assert gate.try_acquire()
    waiter = asyncio.create_task(gate.acquire())
    await settle(lambda: gate.queued == 1)
    return gate, waiter


def behaviour(**kwargs):
    """A Behaviour built from settings keywords."""
    return Behaviour(FakeSignerSettings(**kwargs))


def test_latency_fixed_ignores_jitter():
    """Fixed latency is exactly latency_ms (plus the extra delay)."""
    model = behaviour(latency_ms=100, jitter_ms=50, latency_distribution="fixed")
    assert {model.latency_seconds() for _ in range(20)} == {0.1}
    assert model.latency_seconds(extra_ms=50) == pytest.approx(0.15)


def test_latency_uniform_stays_in_range_and_is_seeded():
    """Uniform draws stay within latency ± jitter and repeat with the same seed."""
    draws = [behaviour(latency_ms=100, jitter_ms=20, seed=3).latency_seconds() for _ in range(2)]
    assert draws[0] == draws[1]
    model = behaviour(latency_ms=100, jitter_ms=20, seed=3)
    values = [model.latency_seconds() for _ in range(500)]
    assert 0.08 <= min(values) < max(values) <= 0.12


def test_latency_lognormal_has_the_configured_mean_and_spread():
    """Lognormal draws have mean latency_ms and standard deviation jitter_ms (roughly)."""
    model = behaviour(latency_ms=100, jitter_ms=30, latency_distribution="lognormal", seed=1)
    values = [model.latency_seconds() * 1000 for _ in range(20000)]
    assert statistics.fmean(values) == pytest.approx(100, rel=0.03)
    assert statistics.stdev(values) == pytest.approx(30, rel=0.1)
    assert min(values) > 0


async def test_gate_queues_in_fifo_order_and_counts_peak():
    """A full gate hands slots over in arrival order; peak never exceeds capacity."""
    gate = CapacityGate(2)
    order = []

    async def worker(name, release):
        await gate.acquire()
        order.append(name)
        await release.wait()
        gate.release()

    releases = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(worker(i, releases[i])) for i in range(5)]
    await settle(lambda: gate.queued == 3)
    assert gate.in_flight == 2
    for event in releases:
        event.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert gate.peak == 2
    assert gate.in_flight == 0


async def test_gate_cancelled_waiter_gives_up_its_place():
    """Cancelling a queued request removes it without leaking a slot."""
    gate, waiter = await full_gate_with_a_waiter()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.release()
    assert (gate.in_flight, gate.queued) == (0, 0)
    assert gate.try_acquire()


async def test_gate_capacity_raise_wakes_waiters():
    """Raising the capacity (or making it unlimited) lets queued requests in at once."""
    gate = CapacityGate(1)
    assert gate.try_acquire()
    waiters = [asyncio.create_task(gate.acquire()) for _ in range(3)]
    await settle(lambda: gate.queued == 3)
    gate.capacity = None
    await asyncio.gather(*waiters)
    assert gate.in_flight == 4


def test_control_update_and_fault_counting():
    """Control updates change only given fields; faults count down and -1 lasts until cleared."""
    model = behaviour(latency_ms=5, capacity=4)
    model.update({"errorRate": 0.25, "fault": "reset", "faultCount": 2})
    assert model.describe() == {
        "latencyMs": 5, "jitterMs": 0, "latencyDistribution": "uniform", "capacity": 4,
        "overflow": "queue", "errorRate": 0.25, "fault": "reset", "faultCount": 2,
    }  # fmt: skip
    assert [str(model.take_fault()) for _ in range(3)] == ["reset", "reset", "None"]
    model.update({"fault": "hang", "faultCount": -1, "capacity": None})
    assert model.gate.capacity is None
    assert all(model.take_fault() is not None for _ in range(10))
    model.update({"fault": None})
    assert model.take_fault() is None
    with pytest.raises(ValueError, match="unknown fault kind"):
        model.update({"fault": "melt"})
    with pytest.raises(ValueError, match="faultCount"):
        model.update({"faultCount": -2})


def test_latency_uniform_around_zero_spreads_upwards():
    """The uniform draw with latency 0 and jitter 100 lies in 0-100 ms, not always at 0."""
    spread = behaviour(latency_ms=0, jitter_ms=100, seed=1)
    draws = [spread.latency_seconds() for _ in range(200)]
    assert all(0.0 <= d <= 0.1 for d in draws)
    assert sum(d > 0 for d in draws) > 50


async def test_gate_waiter_cancelled_as_a_slot_frees_ends_cancelled():
    """A queued waiter cancelled in the same turn a slot is released ends with CancelledError."""
    gate = CapacityGate(1)
    assert gate.try_acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await settle(lambda: gate.queued == 2)
    first.cancel()
    gate.release()  # wakes past the cancelled waiter to the second, in the same turn
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert (gate.in_flight, gate.queued) == (1, 0)


@pytest.mark.parametrize(
    ("pending", "body", "message"),
    [
        (None, {"faultCount": 5}, "faultCount needs a fault"),
        ("reset", {"fault": None, "faultCount": 5}, "faultCount needs a fault"),
        ("reset", {"fault": "hang", "faultCount": 0}, "faultCount 0"),
        ("reset", {"faultCount": 0}, "faultCount 0"),
    ],
)
def test_control_refuses_fault_counts_that_fault_nothing(pending, body, message):
    """A faultCount without a fault, or of 0, is refused and leaves a pending fault as it was."""
    model = behaviour()
    if pending is not None:
        model.update({"fault": pending, "faultCount": 2})
    before = model.describe()
    with pytest.raises(ValueError, match=message):
        model.update(body)
    assert model.describe() == before


def test_control_fault_count_alone_recounts_the_pending_fault():
    """A faultCount without `fault` sets how many more requests the pending fault hits."""
    model = behaviour()
    model.update({"fault": "reset"})
    model.update({"faultCount": 3})
    assert [str(model.take_fault()) for _ in range(4)] == ["reset", "reset", "reset", "None"]


@pytest.mark.parametrize("field", ["latencyMs", "jitterMs"])
def test_control_refuses_an_infinite_latency(field):
    """An infinite latency or jitter (every signing would hang) is refused and changes nothing."""
    model = behaviour(latency_ms=5, jitter_ms=1)
    before = model.describe()
    with pytest.raises(ValueError, match=field):
        model.update({field: float("inf")})
    assert model.describe() == before


def test_peak_is_the_most_in_flight_ever_and_restarts_from_the_live_count():
    """Peak stays at the most in flight since the last reset, which restarts it from now."""
    gate = CapacityGate(None)
    for _ in range(3):
        assert gate.try_acquire()
    gate.release()
    gate.release()
    assert gate.try_acquire()
    assert (gate.in_flight, gate.peak) == (2, 3)
    gate.reset_peak()
    assert gate.peak == 2
    gate.release()
    assert gate.peak == 2


async def test_gate_slot_handed_to_a_waiter_cancelled_before_it_runs_is_passed_on():
    """A slot handed over to a waiter that is cancelled before it resumes is not lost."""
    gate, waiter = await full_gate_with_a_waiter()
    gate.release()  # hands the slot to the waiter, which has not run yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (gate.in_flight, gate.queued) == (0, 0)
    assert gate.try_acquire()


async def test_gate_cancelled_waiter_stops_counting_as_queued_at_once():
    """/_stats `queued` drops a waiter the moment it is cancelled, before it unwinds."""
    gate, waiter = await full_gate_with_a_waiter()
    waiter.cancel()  # cancels the future it waits on now; the task unwinds on its next turn
    assert gate.queued == 0
    with pytest.raises(asyncio.CancelledError):
        await waiter


@pytest.mark.parametrize("mean", [0.1, 3, 100, 2500])
def test_latency_lognormal_without_jitter_is_exactly_the_latency(mean):
    """Lognormal with jitter 0 waits latency_ms exactly, as fixed does."""
    model = behaviour(latency_ms=mean, latency_distribution="lognormal", seed=1)
    assert model.latency_seconds() == mean / 1000


def test_latency_lognormal_at_zero_mean_is_zero():
    """Lognormal with latency 0 (no positive mean to draw around) waits nothing, whatever jitter."""
    model = behaviour(latency_ms=0, jitter_ms=50, latency_distribution="lognormal", seed=1)
    assert model.latency_seconds() == 0


def test_error_rate_zero_leaves_the_seeded_latencies_alone():
    """Without an error rate no draw is spent on errors: seeded latencies repeat as without."""
    alone = behaviour(latency_ms=100, jitter_ms=50, seed=5)
    expected = [alone.latency_seconds() for _ in range(5)]
    model = behaviour(latency_ms=100, jitter_ms=50, seed=5)
    drawn = []
    for _ in range(5):
        assert not model.random_error()
        drawn.append(model.latency_seconds())
    assert drawn == expected


def test_control_updates_jitter_and_distribution():
    """`jitterMs` and `latencyDistribution` via control change the draws and the state shown."""
    model = behaviour(latency_ms=100, seed=2)
    model.update({"jitterMs": 40, "latencyDistribution": "lognormal"})
    state = model.describe()
    assert (state["jitterMs"], state["latencyDistribution"]) == (40, "lognormal")
    assert len({model.latency_seconds() for _ in range(10)}) == 10
    model.update({"latencyDistribution": "fixed"})
    assert {model.latency_seconds() for _ in range(10)} == {0.1}


def test_control_seed_restarts_the_draws_and_null_unseeds_them():
    """`seed` restarts that seed's draws; `"seed": null` goes back to an unseeded source."""
    model = behaviour(latency_ms=100, jitter_ms=50, seed=3)
    seeded = [model.latency_seconds() for _ in range(3)]
    model.update({"seed": 3})
    assert [model.latency_seconds() for _ in range(3)] == seeded
    model.update({"seed": 3})
    model.update({"seed": None})
    # Three unseeded draws equal to the seeded ones by chance: odds far below 2**-100.
    assert [model.latency_seconds() for _ in range(3)] != seeded


@pytest.mark.parametrize(
    "body",
    [
        {"capacity": True},
        {"errorRate": True},
        {"latencyMs": True},
        {"jitterMs": False},
        {"fault": "hang", "faultCount": True},
        {"seed": True},
        {"latencyMs": "200"},
        {"capacity": "3"},
    ],
)
def test_control_takes_numbers_only_as_json_numbers(body):
    """`true` is not capacity 1 nor an error rate of 1, nor "200" a latency: refused, unchanged."""
    model = behaviour(latency_ms=5, capacity=4)
    before = model.describe()
    with pytest.raises(ValueError, match="valid"):
        model.update(body)
    assert model.describe() == before


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("latency_ms", 200),
        ("jitter_ms", 40),
        ("latency_distribution", "fixed"),
        ("error_rate", 1),
        ("fault_count", 2),
    ],
)
def test_control_refuses_the_python_names_of_its_fields(name, value):
    """Pin that only the documented camelCase names are taken: `latency_ms` is an unknown field.

    Before, pydantic's `populate_by_name` took the Python names too, beside the documented ones.
    """
    model = behaviour(latency_ms=5)
    model.update({"fault": "reset", "faultCount": 3})
    before = model.describe()
    with pytest.raises(ValueError, match=f"{name}\n  Extra inputs are not permitted"):
        model.update({name: value})
    assert model.describe() == before


def test_control_takes_an_integer_for_a_float_field():
    """A whole JSON number is a latency or rate like its float form."""
    model = behaviour()
    model.update({"latencyMs": 200, "errorRate": 1, "jitterMs": 3.5})
    state = model.describe()
    assert (state["latencyMs"], state["errorRate"], state["jitterMs"]) == (200, 1, 3.5)


@pytest.mark.parametrize("kind", ["delay", "slow-body"])
def test_a_wait_beyond_ten_minutes_is_no_fault_spec(kind):
    """Pin that `delay=1e300` is refused, not taken as a hang in disguise; 10 minutes is taken."""
    assert FaultSpec.parse(f"{kind}=600000").milliseconds == MAX_LATENCY_MS
    for arg in ("600000.5", "1e300", "1" + "0" * 400):
        with pytest.raises(FaultSpecError, match="from 0 to 600000"):
            FaultSpec.parse(f"{kind}={arg}")


@pytest.mark.parametrize("arg", ["1_000", "\u0663", "\uff15", "+5", "nan", "0x10", "5ms"])
def test_a_wait_is_an_ascii_decimal_number(arg):
    """Pin that `delay` reads ASCII decimals only, as `status` does: float() took "1_000" or "٣"."""
    with pytest.raises(FaultSpecError, match="needs a number"):
        FaultSpec.parse(f"delay={arg}")
    for text, ms in [("5", 5), ("2.5", 2.5), (".5", 0.5), ("5.", 5), ("1e3", 1000), ("1E-1", 0.1)]:
        assert FaultSpec.parse(f"slow-body={text}").milliseconds == ms


@pytest.mark.parametrize("field", ["latencyMs", "jitterMs"])
def test_control_refuses_a_latency_beyond_ten_minutes(field):
    """Pin that a finite latency or jitter past 10 minutes is refused and changes nothing."""
    model = behaviour(latency_ms=5, jitter_ms=1)
    before = model.describe()
    for value in (MAX_LATENCY_MS + 1, 1e300):
        with pytest.raises(ValueError, match=field):
            model.update({field: value})
    assert model.describe() == before
    model.update({field: MAX_LATENCY_MS})
    assert model.describe()[field] == MAX_LATENCY_MS


@pytest.mark.parametrize("distribution", ["uniform", "lognormal"])
def test_a_latency_draw_is_never_beyond_ten_minutes(distribution):
    """Pin that latency + jitter, or a lognormal tail, draws no wait past 10 minutes."""
    model = behaviour(
        latency_ms=MAX_LATENCY_MS if distribution == "uniform" else 100_000,
        jitter_ms=MAX_LATENCY_MS,
        latency_distribution=distribution,
        seed=1,
    )
    draws = [model.latency_seconds() for _ in range(2000)]
    assert max(draws) == MAX_LATENCY_MS / 1000
    assert model.latency_seconds(extra_ms=5) <= (MAX_LATENCY_MS + 5) / 1000


@pytest.mark.parametrize(("mean", "jitter"), [(1e-300, 1), (5e-324, 1), (1e-200, 600_000)])
def test_latency_lognormal_of_a_tiny_mean_draws_a_number(mean, jitter):
    """Pin that a tiny positive mean beside a jitter draws waits, not OverflowError or NaN."""
    model = behaviour(latency_ms=mean, jitter_ms=jitter, latency_distribution="lognormal", seed=1)
    draws = [model.latency_seconds() for _ in range(200)]
    assert all(0 <= draw <= MAX_LATENCY_MS / 1000 for draw in draws)
