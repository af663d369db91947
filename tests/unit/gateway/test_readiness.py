"""The background readiness prober."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.readiness import ReadinessMonitor
from tests.support.polling import until

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"


async def _up() -> None:
    return None


async def _down() -> None:
    raise ConnectionRefusedError


async def _hang() -> None:
    await asyncio.sleep(60)


async def test_ready_only_when_every_required_dependency_is_up():
    """Readiness needs every required dependency up; optional ones only show in the details."""
    monitor = ReadinessMonitor(
        {"eu": (_up, True), "domestic": (_up, True), "extra": (_down, False)},
        interval=60,
        timeout=1,
    )
    assert not monitor.ready  # nothing probed yet
    await monitor.check_now()
    assert monitor.ready
    snapshot = monitor.snapshot()
    assert snapshot["dependencies"]["extra"]["status"] == "down"
    assert snapshot["dependencies"]["extra"]["error"] == "ConnectionRefusedError"


async def test_required_dependency_down_means_not_ready():
    """A required dependency that fails its probe makes the gateway not ready."""
    monitor = ReadinessMonitor({"eu": (_down, True)}, interval=60, timeout=1)
    await monitor.check_now()
    assert not monitor.ready
    assert monitor.states["eu"].consecutive_failures == 1


async def test_hanging_probe_times_out_as_down():
    """A probe that hangs is cut at its timeout and counts as down."""
    monitor = ReadinessMonitor({"eu": (_hang, True)}, interval=60, timeout=0.05)
    async with asyncio.timeout(1):
        await monitor.check_now()
    assert monitor.states["eu"].status == "down"


async def test_background_prober_starts_and_stops():
    """The prober task probes on its own and stops cleanly."""
    monitor = ReadinessMonitor({"eu": (_up, True)}, interval=0.01, timeout=1)
    monitor.start()
    await until(lambda: monitor.ready, limit=1)
    await monitor.stop()


async def test_draining_is_not_ready():
    """A draining gateway reports not ready even with every signer up."""
    monitor = ReadinessMonitor({"eu": (_up, True)}, interval=60, timeout=1)
    await monitor.check_now()
    monitor.draining = True
    assert not monitor.ready


class _Switch:
    """A probe whose target is up or down as the test says."""

    def __init__(self, up: bool) -> None:
        self.up = up
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionRefusedError


@contextlib.asynccontextmanager
async def _started(monitor: ReadinessMonitor) -> AsyncIterator[ReadinessMonitor]:
    """The monitor's background prober, running for the block."""
    monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()


async def test_the_snapshot_shows_each_dependency_draining_and_the_details():
    """/readyz's body: per dependency its status, age, failures in a row and error class."""
    monitor = ReadinessMonitor({"eu": (_down, True)}, interval=60, timeout=1)
    monitor.add_detail("eventLoop", lambda: {"lagSeconds": 0.001})
    await monitor.check_now()
    await monitor.check_now()
    monitor.draining = True
    snapshot = monitor.snapshot()
    assert snapshot["status"] == "not-ready"
    assert snapshot["draining"] is True
    assert snapshot["eventLoop"] == {"lagSeconds": 0.001}
    eu = snapshot["dependencies"]["eu"]
    assert 0 <= eu["lastCheckedSecondsAgo"] < 1
    assert eu == {
        "status": "down",
        "required": True,
        "lastCheckedSecondsAgo": eu["lastCheckedSecondsAgo"],
        "consecutiveFailures": 2,
        "error": "ConnectionRefusedError",
    }


async def test_a_dependency_back_up_forgets_its_failures_and_error():
    """Once a probe succeeds again, nothing of the outage is left in its state."""
    probe = _Switch(up=False)
    monitor = ReadinessMonitor({"eu": (probe, True)}, interval=60, timeout=1)
    await monitor.check_now()
    probe.up = True
    await monitor.check_now()
    assert monitor.ready
    assert monitor.snapshot()["dependencies"]["eu"]["consecutiveFailures"] == 0
    assert monitor.snapshot()["dependencies"]["eu"]["error"] is None


async def test_going_down_and_coming_back_are_logged_once_each(caplog):
    """A WARNING when a dependency goes down, not one per failed probe; INFO when it is back."""
    caplog.set_level(logging.INFO, logger="signing_gateway.observability.readiness")
    probe = _Switch(up=False)
    monitor = ReadinessMonitor({"eu": (probe, True)}, interval=60, timeout=1)
    for up in (False, False, False, True, True):
        probe.up = up
        await monitor.check_now()
    logged = [(r.levelname, r.getMessage(), r.dependency) for r in caplog.records]
    assert logged == [("WARNING", "dependency down", "eu"), ("INFO", "dependency up again", "eu")]
    # The runbook's warnings-and-errors query shows the first when a signer goes down: the
    # runbook names both, where a signer's outage is looked into (docs/operations.md).
    runbook = " ".join(OPERATIONS.read_text("utf-8").split())
    for level, message, _ in logged:
        assert f"{level} `{message}`" in runbook


async def test_the_background_prober_keeps_probing():
    """A dependency that goes down after the first check is seen down by a later one."""
    probe = _Switch(up=True)
    monitor = ReadinessMonitor({"eu": (probe, True)}, interval=0.01, timeout=1)
    async with _started(monitor):
        await until(lambda: monitor.ready, limit=1)
        probe.up = False
        await until(lambda: not monitor.ready, limit=2)


async def test_a_hung_signer_holds_up_no_other_signers_probes():
    """Each dependency is probed every interval, whatever the others' probes take.

    Probed in rounds, every dependency waited for the slowest probe of its round: with one
    signer hung, the other's state was `timeout` seconds older at each /readyz, and a signer
    that went down meanwhile was seen that much later.
    """
    probes = 0

    async def counted() -> None:
        nonlocal probes
        probes += 1

    monitor = ReadinessMonitor(
        {"eu": (_hang, True), "domestic": (counted, True)}, interval=0.05, timeout=1.0
    )
    async with _started(monitor):
        await until(lambda: probes >= 4, limit=0.9)  # within the hung probe's first timeout
        assert monitor.states["eu"].status == "unknown"
        assert monitor.states["domestic"].status == "up"


async def test_starting_twice_keeps_one_prober_and_stop_ends_it():
    """A second start probes no more often, and stop leaves no prober running behind it."""
    probe = _Switch(up=True)
    monitor = ReadinessMonitor({"eu": (probe, True)}, interval=60, timeout=1)
    monitor.start()
    task = monitor._task
    monitor.start()
    assert monitor._task is task
    await until(lambda: probe.calls == 1, limit=1)
    await monitor.stop()
    assert task is not None
    assert task.done()
    assert probe.calls == 1


async def test_a_stopped_prober_can_be_started_again():
    """After stop, start runs a new prober: the dependency is probed again."""
    probe = _Switch(up=True)
    monitor = ReadinessMonitor({"eu": (probe, True)}, interval=60, timeout=1)
    async with _started(monitor):
        await until(lambda: probe.calls == 1, limit=1)
    async with _started(monitor):
        await until(lambda: probe.calls == 2, limit=1)


async def test_a_probe_raising_cancelled_error_itself_is_down_and_probing_goes_on():
    """A probe's own CancelledError (not the prober being stopped) means down, like any failure.

    Let out, it ended that dependency's watch for good: /readyz kept showing the last state,
    `up` included, however long the signer stayed away.
    """
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise asyncio.CancelledError

    monitor = ReadinessMonitor({"eu": (flaky, True)}, interval=0.01, timeout=1)
    async with _started(monitor):
        await until(lambda: calls >= 2, limit=1)
        await until(lambda: calls >= 3, limit=1)
        assert monitor._task is not None
        assert not monitor._task.done()
    assert monitor.states["eu"].status == "up"


async def test_a_probe_raising_cancelled_error_records_it_as_the_error():
    """The outage is shown with the probe's error class, the gateway not ready meanwhile."""

    async def cancelled() -> None:
        raise asyncio.CancelledError

    monitor = ReadinessMonitor({"eu": (cancelled, True)}, interval=60, timeout=1)
    await monitor.check_now()
    assert not monitor.ready
    assert monitor.states["eu"].error == "CancelledError"
    assert monitor.states["eu"].consecutive_failures == 1


async def test_stopping_while_a_probe_is_in_flight_ends_the_prober_at_once():
    """The prober's own cancellation is not taken for a probe's: stop does not wait an interval."""
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(60)

    monitor = ReadinessMonitor({"eu": (hang, True)}, interval=60, timeout=30)
    monitor.start()
    await started.wait()
    task = monitor._task
    async with asyncio.timeout(1):
        await monitor.stop()
    assert task is not None
    assert task.cancelled()
    assert monitor.states["eu"].status == "unknown"


async def test_the_age_of_the_last_check_counts_up_from_it():
    """`lastCheckedSecondsAgo` is how long ago the probe ran: a stale probe shows as old."""
    monitor = ReadinessMonitor({"eu": (_up, True)}, interval=60, timeout=1)
    await monitor.check_now()
    checked_at = monitor.states["eu"].checked_at
    assert checked_at is not None
    monitor.states["eu"].checked_at = checked_at - 2.5  # as if checked 2.5 s earlier
    age = monitor.snapshot()["dependencies"]["eu"]["lastCheckedSecondsAgo"]
    assert 2.5 <= age < 3.5


async def test_going_down_is_logged_with_the_reason_or_else_the_kind_of_failure(caplog):
    """The WARNING says why a dependency went down; a timeout, which says nothing, by its name."""
    caplog.set_level(logging.WARNING, logger="signing_gateway.observability.readiness")

    async def full_disk() -> None:
        raise OSError(28, "No space left on device")

    probes = {"audit-file": (full_disk, True), "eu": (_hang, True)}
    monitor = ReadinessMonitor(probes, interval=60, timeout=0.01)
    await monitor.check_now()
    logged = {(r.dependency, r.reason) for r in caplog.records}
    assert logged == {
        ("audit-file", "[Errno 28] No space left on device"),
        ("eu", "TimeoutError"),
    }


async def test_each_dependency_is_exported_up_or_down_at_each_scrape():
    """`gateway_dependency_up` is 0 before the first probe and while down, 1 once it answers."""
    metrics = GatewayMetrics()
    answers = {"eu": True}

    async def eu() -> None:
        if not answers["eu"]:
            raise ConnectionRefusedError

    monitor = ReadinessMonitor({"eu": (eu, True), "extra": (_down, False)}, interval=60, timeout=1)
    monitor.export(metrics.dependency_up)

    def up(name: str, required: str) -> float | None:
        labels = {"dependency": name, "required": required}
        return metrics.registry.get_sample_value("gateway_dependency_up", labels)

    assert (up("eu", "true"), up("extra", "false")) == (0.0, 0.0)  # not probed yet
    await monitor.check_now()
    assert (up("eu", "true"), up("extra", "false")) == (1.0, 0.0)
    answers["eu"] = False
    await monitor.check_now()
    assert up("eu", "true") == 0.0
    assert up("eu", "false") is None  # one series per dependency, labelled as configured
