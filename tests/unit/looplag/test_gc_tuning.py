"""GC pause timing, the timed collection schedule, and the count-based threshold."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import pytest
import respx
from pydantic import ValidationError

from signing_gateway.runtime.gc_tuning import (
    BACKSTOP_THRESHOLDS,
    GcPauses,
    GcSchedule,
    gc_threshold0,
)
from signing_gateway.settings import LoopLagSettings
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    make_settings,
    make_test_keys,
    running_gateway,
)

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


def test_pauses_are_counted_per_generation_while_installed():
    """A forced full collection shows up under gen2 with a positive pause; none after uninstall."""
    pauses = GcPauses()
    pauses.install()
    try:
        gc.collect(2)
    finally:
        pauses.uninstall()
    snapshot = pauses.snapshot()
    assert snapshot["gen2"]["collections"] >= 1
    assert snapshot["gen2"]["maxSeconds"] > 0
    gc.collect(2)
    assert pauses.snapshot()["gen2"]["collections"] == snapshot["gen2"]["collections"]


def test_unreachable_objects_found_are_counted_per_generation():
    """`collected` in /readyz gc adds up what each generation's collections found (cycles)."""
    pauses = GcPauses()
    for generation, collected in ((1, 3), (1, 4), (2, 5)):
        pauses._callback("start", {"generation": generation})
        pauses._callback("stop", {"generation": generation, "collected": collected})
    snapshot = pauses.snapshot()
    assert [snapshot[f"gen{i}"]["collected"] for i in range(3)] == [0, 7, 5]
    assert [snapshot[f"gen{i}"]["collections"] for i in range(3)] == [0, 2, 1]


def test_pause_totals_and_the_longest_are_kept_per_generation(monkeypatch):
    """Each pause is stop minus start: they add up to the total, the longest is the maximum."""
    clock = iter([10.0, 10.002, 20.0, 20.005, 30.0, 30.001])
    monkeypatch.setattr("signing_gateway.runtime.gc_tuning.time.perf_counter", lambda: next(clock))
    pauses = GcPauses()
    for _ in range(3):
        pauses._callback("start", {"generation": 0})
        pauses._callback("stop", {"generation": 0, "collected": 0})
    gen0 = pauses.snapshot()["gen0"]
    assert (gen0["collections"], gen0["totalSeconds"], gen0["maxSeconds"]) == (3, 0.008, 0.005)


def test_installing_twice_times_each_collection_once():
    """Installed twice, one callback counts each collection once; uninstalled, none is left."""
    pauses = GcPauses()
    pauses.install()
    pauses.install()
    try:
        assert gc.callbacks.count(pauses._callback) == 1
        gc.collect(2)
        assert pauses.snapshot()["gen2"]["collections"] == 1
    finally:
        pauses.uninstall()
    assert pauses._callback not in gc.callbacks


def test_threshold_is_set_for_the_block_and_restored():
    """gc_threshold0 sets generation 0's threshold, keeps the others, and restores all."""
    before = gc.get_threshold()
    with gc_threshold0(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.isenabled()
    assert gc.get_threshold() == before


def test_none_leaves_the_threshold_alone():
    """None means Python's own thresholds."""
    before = gc.get_threshold()
    with gc_threshold0(None):
        assert gc.get_threshold() == before


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _schedule(clock: _Clock, collected: list[int], in_flight: list[int], **overrides):
    values = {
        "young_interval": 0.05,
        "middle_every": 2,
        "full_interval": 60.0,
        "quiet_in_flight": 32,
        "in_flight": lambda: in_flight[0],
        "collect": collected.append,
        "clock": clock,
    }
    values.update(overrides)
    return GcSchedule(**values)


def test_ticks_collect_the_young_generation_and_every_nth_generation_one():
    """Generation 0 each tick, generation 1 every `middle_every`-th, no full one before due."""
    clock, collected = _Clock(), []
    schedule = _schedule(clock, collected, [0], middle_every=3)
    for _ in range(9):
        clock.now += 0.05
        schedule.tick()
    assert collected == [0, 0, 1, 0, 0, 1, 0, 0, 1]


def test_a_due_full_collection_waits_for_a_quiet_moment():
    """Due, but 500 requests in flight: young collections go on; at 32 in flight it runs."""
    clock, collected, in_flight = _Clock(), [], [500]
    schedule = _schedule(clock, collected, in_flight)
    clock.now += 60.0
    assert schedule.tick() == 0
    clock.now += 30.0
    assert schedule.tick() == 1
    in_flight[0] = 32
    clock.now += 0.05
    assert schedule.tick() == 2
    assert schedule.snapshot()["fullCollections"] == {"quiet": 1, "overdue": 0}
    clock.now += 0.05
    assert schedule.tick() in (0, 1)  # the interval starts again from the full collection


def test_an_overdue_full_collection_runs_under_any_load():
    """A second interval past due, the full collection runs with 10,000 requests in flight."""
    clock, collected = _Clock(), []
    schedule = _schedule(clock, collected, [10_000])
    clock.now += 119.9
    assert schedule.tick() != 2
    clock.now += 0.1
    assert schedule.tick() == 2
    assert collected[-1] == 2
    assert schedule.snapshot()["fullCollections"] == {"quiet": 0, "overdue": 1}
    assert schedule.snapshot()["secondsSinceFull"] == 0
    clock.now += 1.25
    assert schedule.snapshot()["secondsSinceFull"] == 1.25  # to the millisecond


def test_freezing_ticks_walk_nothing_and_full_collections_unfreeze_first():
    """young="freeze": ticks freeze; a full collection unfreezes, collects, freezes again."""
    clock, calls, in_flight = _Clock(), [], [500]
    schedule = _schedule(
        clock, [], in_flight, young="freeze",
        collect=lambda generation: calls.append(f"collect {generation}"),
        freeze=lambda: calls.append("freeze"), unfreeze=lambda: calls.append("unfreeze"),
    )  # fmt: skip
    for _ in range(3):
        clock.now += 0.05
        assert schedule.tick() is None
    assert calls == ["freeze"] * 3
    clock.now += 60.0
    in_flight[0] = 0
    assert schedule.tick() == 2
    assert calls[3:] == ["unfreeze", "collect 2", "freeze"]
    snapshot = schedule.snapshot()
    assert snapshot["young"] == "freeze"
    assert snapshot["frozenTicks"] == 3
    assert snapshot["fullCollections"] == {"quiet": 1, "overdue": 0}


def test_a_failing_full_collection_still_freezes_again():
    """An exception from the full collection leaves the objects frozen, not walked by ticks."""
    clock, calls = _Clock(), []

    def collect(generation: int) -> None:
        raise RuntimeError("callback failed")

    schedule = _schedule(
        clock, [], [0], young="freeze", collect=collect,
        freeze=lambda: calls.append("freeze"), unfreeze=lambda: calls.append("unfreeze"),
    )  # fmt: skip
    clock.now += 60.0
    with pytest.raises(RuntimeError):
        schedule.tick()
    assert calls == ["unfreeze", "freeze"]


def test_a_frozen_reference_cycle_is_freed_by_the_next_full_collection():
    """With the real collector: a cycle frozen by a tick survives it and dies at the full one."""

    class Node:
        def __init__(self) -> None:
            self.me = self

    clock = _Clock()
    schedule = GcSchedule(
        young_interval=0.05, middle_every=1, full_interval=60.0, quiet_in_flight=0,
        in_flight=lambda: 0, young="freeze", clock=clock,
    )  # fmt: skip
    try:
        node = Node()
        alive = weakref.ref(node)
        del node
        clock.now += 0.05
        schedule.tick()
        gc.collect()  # walks nothing frozen: the cycle is still there
        assert alive() is not None
        clock.now += 60.0
        assert schedule.tick() == 2
        assert alive() is None
    finally:
        gc.unfreeze()


def test_nonsense_schedules_are_refused():
    """A zero interval, no generation-1 collections, a full interval under one tick."""
    clock = _Clock()
    for overrides in (
        {"young_interval": 0}, {"middle_every": 0}, {"full_interval": 0.01}, {"young": "skip"},
    ):  # fmt: skip
        with pytest.raises(ValueError):
            _schedule(clock, [], [0], **overrides)


async def _ticks_seen(schedule: GcSchedule, seen: list[int], count: int) -> None:
    """Start the schedule, wait (5 s at most) until `seen` holds `count` ticks, stop it."""
    schedule.start()
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while len(seen) < count:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    finally:
        await schedule.stop()


async def test_start_ticks_on_the_loop_with_backstop_thresholds_and_stop_restores():
    """Running: ticks collect, only a generation-0 backstop by count; stopped: thresholds back."""
    before = gc.get_threshold()
    collected: list[int] = []
    schedule = GcSchedule(
        young_interval=0.01,
        middle_every=2,
        full_interval=60.0,
        quiet_in_flight=0,
        in_flight=lambda: 0,
        collect=collected.append,
    )
    schedule.start()
    assert gc.get_threshold() == BACKSTOP_THRESHOLDS
    await _ticks_seen(schedule, collected, 4)  # starts again: idempotent, thresholds kept
    assert gc.get_threshold() == before
    assert collected[:4] == [0, 1, 0, 1]
    ticks = len(collected)
    await asyncio.sleep(0.05)
    assert len(collected) == ticks
    await schedule.stop()  # idempotent


async def test_stop_unfreezes_what_the_ticks_froze():
    """Stopped, a freezing schedule leaves nothing frozen; a collecting one unfreezes nothing.

    Before, `stop` restored the thresholds only: everything the ticks froze stayed in the
    permanent generation, out of reach of every later collection.
    """
    calls: list[str] = []
    schedule = GcSchedule(
        young_interval=0.01, middle_every=1, full_interval=60.0, quiet_in_flight=0,
        in_flight=lambda: 0, young="freeze", collect=lambda _: calls.append("collect"),
        freeze=lambda: calls.append("freeze"), unfreeze=lambda: calls.append("unfreeze"),
    )  # fmt: skip
    await _ticks_seen(schedule, calls, 2)
    assert calls[-1] == "unfreeze"
    assert set(calls[:-1]) == {"freeze"}
    await schedule.stop()  # idempotent: nothing more to undo
    assert calls.count("unfreeze") == 1

    collecting: list[str] = []
    schedule = GcSchedule(
        young_interval=0.01, middle_every=1, full_interval=60.0, quiet_in_flight=0,
        in_flight=lambda: 0, collect=lambda _: collecting.append("collect"),
        unfreeze=lambda: collecting.append("unfreeze"),
    )  # fmt: skip
    await _ticks_seen(schedule, collecting, 2)
    assert "unfreeze" not in collecting


async def test_stop_leaves_the_real_collector_with_nothing_frozen():
    """With the real collector: ticks froze the young objects, and after stop none are frozen."""
    gc.unfreeze()  # from nothing frozen, whatever ran before
    frozen_by_ticks: list[int] = []

    def freeze() -> None:
        gc.freeze()
        frozen_by_ticks.append(gc.get_freeze_count())

    schedule = GcSchedule(
        young_interval=0.01, middle_every=1, full_interval=60.0, quiet_in_flight=0,
        in_flight=lambda: 0, young="freeze", freeze=freeze,
    )  # fmt: skip
    try:
        await _ticks_seen(schedule, frozen_by_ticks, 2)
        assert frozen_by_ticks[0] > 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_a_failing_collection_is_logged_and_the_schedule_goes_on(caplog):
    """An exception from a tick (a broken gc callback, say) does not end the schedule."""
    calls: list[int] = []

    def collect(generation: int) -> None:
        calls.append(generation)
        if len(calls) == 1:
            raise RuntimeError("callback failed")

    schedule = GcSchedule(
        young_interval=0.01, middle_every=2, full_interval=60.0, quiet_in_flight=0,
        in_flight=lambda: 0, collect=collect,
    )  # fmt: skip
    await _ticks_seen(schedule, calls, 3)
    assert "scheduled garbage collection failed" in caplog.text


def test_settings_refuse_a_full_interval_shorter_than_a_tick():
    """The full interval is at least one young interval; one equal to it the schedule takes too."""
    with pytest.raises(ValidationError):
        LoopLagSettings(gc_young_interval_seconds=1.0, gc_full_interval_seconds=0.5)
    assert LoopLagSettings(gc_young_interval_seconds=0.5, gc_full_interval_seconds=0.5)
    schedule = _schedule(_Clock(), [], [0], young_interval=0.5, full_interval=0.5)
    assert schedule.full_interval == schedule.young_interval


async def _readyz_gc(settings) -> dict:
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        mock.route(host="gateway.test").pass_through()
        mock.get(f"{EU_SIGNER_URL}/healthz").respond(200, json={"status": "ok"})
        mock.get(f"{DOMESTIC_SIGNER_URL}/healthz").respond(200, json={"status": "ok"})
        async with running_gateway(settings) as client:
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                details = (await client.get("/readyz")).json()["gc"]
                if "schedule" not in details or details["schedule"]["ticks"] >= 2:
                    return details
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)


async def test_the_gateway_freezes_on_the_timer_and_shows_it_in_readyz(tmp_path):
    """By default the gateway ticks; /readyz shows the schedule and the backstop thresholds."""
    before = gc.get_threshold()
    details = await _readyz_gc(make_settings(make_test_keys(tmp_path)))
    assert details["thresholds"] == list(BACKSTOP_THRESHOLDS)
    assert details["schedule"]["young"] == "freeze"
    assert details["schedule"]["youngIntervalSeconds"] == 0.05
    assert details["schedule"]["frozenTicks"] >= 2
    assert "collected" in details["gen2"]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0  # shutdown unfroze everything


async def test_collecting_ticks_walk_generations_0_and_1(tmp_path):
    """gc_young "collect": each tick collects generations 0 and 1, nothing is frozen by ticks."""
    settings = make_settings(make_test_keys(tmp_path))
    settings = settings.model_copy(
        update={"loop_lag": settings.loop_lag.model_copy(update={"gc_young": "collect"})}
    )
    details = await _readyz_gc(settings)
    assert details["schedule"]["young"] == "collect"
    assert details["schedule"]["middleEvery"] == 1  # generations 0 and 1 every tick
    assert details["schedule"]["frozenTicks"] == 0
    assert details["gen1"]["collections"] >= 2


async def test_the_gateways_schedule_is_the_one_its_settings_give(tmp_path):
    """Every timed-mode setting reaches the schedule /readyz shows."""
    lag = LoopLagSettings(
        gc_young="collect",
        gc_young_interval_seconds=0.02,
        gc_middle_every=3,
        gc_full_interval_seconds=45.0,
        gc_full_quiet_in_flight=7,
    )
    details = await _readyz_gc(make_settings(make_test_keys(tmp_path), loop_lag=lag))
    schedule = {key: details["schedule"][key] for key in ("young", "youngIntervalSeconds")}
    schedule |= {key: details["schedule"][key] for key in ("middleEvery", "fullIntervalSeconds")}
    assert schedule == {
        "young": "collect",
        "youngIntervalSeconds": 0.02,
        "middleEvery": 3,
        "fullIntervalSeconds": 45.0,
    }
    assert details["schedule"]["quietInFlight"] == 7


async def test_without_the_timer_the_gateway_collects_by_count(tmp_path):
    """gc_mode "count": no schedule, generation 0 at gc_threshold0."""
    before = gc.get_threshold()
    settings = make_settings(
        make_test_keys(tmp_path),
        loop_lag=LoopLagSettings(gc_mode="count", gc_threshold0=12_345),
    )
    details = await _readyz_gc(settings)
    assert "schedule" not in details
    assert details["thresholds"] == [12_345, *before[1:]]
    assert gc.get_threshold() == before


def test_the_operations_guide_gives_the_schedules_defaults():
    """The tick, the full interval (and its overdue bound) and the quiet bound it names."""
    lag = LoopLagSettings()
    guide = " ".join(OPERATIONS.read_text("utf-8").split())
    assert f"together every {lag.gc_young_interval_seconds * 1000:g} ms" in guide
    assert f"`gc_full_interval_seconds` ({lag.gc_full_interval_seconds:g} s)" in guide
    assert f"(every {2 * lag.gc_full_interval_seconds / 60:g} minutes)" in guide
    assert f"`gc_full_quiet_in_flight` ({lag.gc_full_quiet_in_flight})" in guide


def test_the_benchmarks_give_the_backstop_thresholds():
    """docs/benchmarks.md names the thresholds the schedule installs as its backstop."""
    figures = " / ".join(f"{value:,}" for value in BACKSTOP_THRESHOLDS)
    benchmarks = " ".join((OPERATIONS.parent / "benchmarks.md").read_text("utf-8").split())
    assert f"as a backstop (thresholds {figures})" in benchmarks


async def test_the_first_full_collection_is_due_a_full_interval_after_start():
    """Time spent before `start` (building the app) does not make a full collection due."""
    clock, collected = _Clock(), []
    schedule = _schedule(clock, collected, [0])
    clock.now += 10 * schedule.full_interval  # a schedule built long before it starts
    schedule.start()
    try:
        assert schedule.tick() == 0
        clock.now += schedule.full_interval
        assert schedule.tick() == 2
    finally:
        await schedule.stop()
