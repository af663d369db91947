"""The background readiness prober."""

from __future__ import annotations

import asyncio

from signing_gateway.observability.readiness import ReadinessMonitor


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
    await monitor.wait_first_check(limit=1)
    assert monitor.ready
    await monitor.stop()


async def test_draining_is_not_ready():
    """A draining gateway reports not ready even with every signer up."""
    monitor = ReadinessMonitor({"eu": (_up, True)}, interval=60, timeout=1)
    await monitor.check_now()
    monitor.draining = True
    assert not monitor.ready
