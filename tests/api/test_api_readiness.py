"""/readyz as callers see it: its own answer, built without changing what the prober learned."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

from signing_gateway.api import examples
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.readiness import readyz_when_probed
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    running_gateway,
)

OPEN_SECONDS = 0.3


def _settings(keys: SignerKeys, *, eu_required: bool = True, domestic_required: bool = True):
    """Settings whose EU breaker opens on one failed call, for `OPEN_SECONDS`."""
    resilience = ResilienceSettings(
        breaker_consecutive_failures=1, breaker_open_seconds=OPEN_SECONDS, max_attempts=1
    )
    eu = SignerSettings(
        url=EU_SIGNER_URL, allow_plain_http=True, resilience=resilience, required=eu_required
    )
    domestic = SignerSettings(
        url=DOMESTIC_SIGNER_URL, allow_plain_http=True, required=domestic_required
    )
    return make_settings(keys, eu_signer=eu, domestic_signer=domestic)


async def _open_the_eu_breaker(gateway: httpx.AsyncClient, signers: respx.MockRouter) -> None:
    signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=httpx.ConnectError("no"))
    response = await gateway.post("/v1/dcc", json=examples.EU_VACCINATION)
    assert_problem(response, 503, "signer-unavailable")


async def test_readyz_leaves_the_probers_view_as_it_was_when_a_breaker_makes_it_503(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """An open breaker makes /readyz 503 while both probes say up; once it half-opens, 200.

    No probe runs meanwhile (the interval is an hour): the 200 comes from the prober's view
    as it stood, so answering 503 changed nothing in it.
    """
    async with running_gateway(_settings(test_keys)) as gateway:
        assert (await readyz_when_probed(gateway)).status_code == 200
        probes = signers["eu_health"].call_count
        await _open_the_eu_breaker(gateway, signers)
        for _ in range(2):
            ready = await gateway.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.headers["content-type"] == "application/json"
            out = ready.json()
            assert out["status"] == "not-ready"
            assert out["draining"] is False
            assert out["signers"]["eu-signer"]["breaker"] == "open"
            assert {s["status"] for s in out["dependencies"].values()} == {"up"}
            assert {s["consecutiveFailures"] for s in out["dependencies"].values()} == {0}
        await asyncio.sleep(OPEN_SECONDS + 0.05)
        ready = await gateway.get("/readyz")
        assert signers["eu_health"].call_count == probes
    assert ready.status_code == 200, ready.text
    assert ready.headers["content-type"] == "application/json"
    assert ready.json()["status"] == "ready"


@pytest.mark.parametrize(("optional", "status"), [("eu-signer", 200), ("domestic-signer", 503)])
async def test_an_open_breaker_counts_only_for_a_required_signer(
    test_keys: SignerKeys, signers: respx.MockRouter, optional, status
):
    """The EU breaker open: 503 while the EU signer is required, 200 when only it is optional."""
    settings = _settings(
        test_keys,
        eu_required=optional != "eu-signer",
        domestic_required=optional != "domestic-signer",
    )
    async with running_gateway(settings) as gateway:
        await readyz_when_probed(gateway)
        await _open_the_eu_breaker(gateway, signers)
        ready = await gateway.get("/readyz")
    assert ready.status_code == status, ready.text
    out = ready.json()
    assert out["status"] == ("ready" if status == 200 else "not-ready")
    assert out["signers"]["eu-signer"]["breaker"] == "open"
    assert out["dependencies"][optional]["required"] is False
