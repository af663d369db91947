"""The lifespan builds readiness from the settings: probe paths, cadence, required signers."""

from __future__ import annotations

import pytest
import respx

from signing_gateway import app as app_module
from signing_gateway.app import create_app
from signing_gateway.observability.looplag import LoopLagMonitor
from signing_gateway.settings import LoopLagSettings, SignerSettings
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    frozen_test_heap,
    make_settings,
    running_gateway,
)
from tests.support.polling import until


async def test_readiness_probes_as_the_settings_say(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """Each signer's health path, whether it is required, the probes' period and budget."""
    status = signers.get(f"{EU_SIGNER_URL}/status").respond(200, json={"status": "ok"})
    settings = make_settings(
        test_keys,
        eu_signer=SignerSettings(
            url=EU_SIGNER_URL, allow_plain_http=True, required=False, health_path="/status"
        ),
        domestic_signer=SignerSettings(url=DOMESTIC_SIGNER_URL, allow_plain_http=True),
        readiness_probe_interval_seconds=0.05,
        readiness_probe_timeout_seconds=0.75,
    )
    app = create_app(settings)
    with frozen_test_heap():
        async with app.router.lifespan_context(app) as state:
            readiness = state["readiness"]
            assert {name: s.required for name, s in readiness.states.items()} == {
                "eu-signer": False,
                "domestic-signer": True,
            }
            assert (readiness._interval, readiness._timeout) == (0.05, 0.75)
            await until(lambda: status.call_count >= 3)  # probed again every 0.05 s
            assert signers["eu_health"].call_count == 0


async def test_readiness_turns_503_when_the_drain_begins(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """The drain is attached to readiness: /readyz says `draining` from the first signal."""
    settings = make_settings(test_keys)
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        assert (await client.get("/readyz")).json()["draining"] is False
        app.state.drain.begin()
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["draining"] is True


async def test_the_loop_lag_monitor_samples_and_warns_as_the_settings_say(
    test_keys: SignerKeys, signers: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
):
    """Its sampling period, warning threshold and warning period are the settings', all three."""
    built: list[LoopLagMonitor] = []

    class Recorded(LoopLagMonitor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            built.append(self)

    monkeypatch.setattr(app_module, "LoopLagMonitor", Recorded)
    lag = LoopLagSettings(interval_seconds=0.02, warn_threshold_seconds=0.3, warn_every_seconds=2.5)
    app = create_app(make_settings(test_keys, loop_lag=lag))
    with frozen_test_heap():
        async with app.router.lifespan_context(app):
            [monitor] = built
            assert (monitor.interval, monitor.warn_threshold, monitor._warn_every) == (
                0.02,
                0.3,
                2.5,
            )
