"""Signer-call metrics against a real fake-signer process, on both HTTP transports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from signing_gateway.settings import SignerSettings, TrustSettings
from tests.api.bodies import eu_vaccination
from tests.api.observability.scrape import scrape
from tests.support.fake_signer_process import FakeSignerProcess, running_fake_signer
from tests.support.gateway import make_settings, running_gateway

DEFAULT_CONTROL = {"latencyMs": 0, "jitterMs": 0, "errorRate": 0, "fault": None, "capacity": None}


@pytest.fixture(scope="module")
def fake_signer() -> Iterator[FakeSignerProcess]:
    """One real fake signer (EU and domestic) for the module."""
    with running_fake_signer("--role", "all") as signer:
        yield signer


@pytest.fixture(params=["httpx", "aiohttp"])
async def gateway_on(
    request: pytest.FixtureRequest, fake_signer: FakeSignerProcess
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(gateway client, fake-signer control client) with the gateway on the given transport."""
    async with httpx.AsyncClient(base_url=fake_signer.base_url, timeout=10) as control:
        (await control.put("/_control", json=DEFAULT_CONTROL)).raise_for_status()
        signer = SignerSettings(url=fake_signer.base_url, transport=request.param)
        settings = make_settings(
            eu_signer=signer,
            domestic_signer=signer,
            trust=TrustSettings(fetch_from_signers=True),
        )
        async with running_gateway(settings) as client:
            yield client, control
        (await control.put("/_control", json=DEFAULT_CONTROL)).raise_for_status()


async def test_successful_call_is_counted_and_timed(gateway_on):
    """A signed credential counts one "ok" get_credential call with one duration sample."""
    client, _ = gateway_on
    response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 200, response.text

    result = await scrape(client)
    labels = {"signer": "eu", "endpoint": "get_credential"}
    assert result.value("gateway_signer_calls_total", **labels, outcome="ok") == 1
    assert result.total("gateway_signer_calls_total", **labels) == 1
    assert result.value("gateway_signer_call_duration_seconds_count", **labels, outcome="ok") == 1
    assert result.value("gateway_signer_in_flight", signer="eu") == 0


async def test_rejected_call_is_counted_as_rejected(gateway_on):
    """A 4xx from the signer counts one "rejected" call and no "ok" one."""
    client, control = gateway_on
    fault = {"fault": "status=400", "faultCount": 1}
    (await control.put("/_control", json=fault)).raise_for_status()
    response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 502

    result = await scrape(client)
    labels = {"signer": "eu", "endpoint": "get_credential"}
    assert result.value("gateway_signer_calls_total", **labels, outcome="rejected") == 1
    assert result.value("gateway_signer_calls_total", **labels, outcome="ok") == 0


async def test_connection_reset_is_counted_per_transport(gateway_on):
    """A reset connection counts as "connection_lost" on either transport, never as "ok"."""
    client, control = gateway_on
    fault = {"fault": "reset", "faultCount": -1}
    (await control.put("/_control", json=fault)).raise_for_status()
    response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 502

    result = await scrape(client)
    labels = {"signer": "eu", "endpoint": "get_credential"}
    lost = result.value("gateway_signer_calls_total", **labels, outcome="connection_lost")
    assert lost >= 1  # retries (if configured) add attempts, each counted
    assert result.total("gateway_signer_calls_total", **labels) == lost
    assert result.value("gateway_signer_in_flight", signer="eu") == 0


async def test_unverifiable_credential_is_counted(gateway_on):
    """A credential with a bad signature is withheld and counted by signer and reason."""
    client, control = gateway_on
    fault = {"fault": "bad-signature", "faultCount": 1}
    (await control.put("/_control", json=fault)).raise_for_status()
    response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 502

    result = await scrape(client)
    assert result.total("gateway_credential_verification_failures_total", signer="eu") == 1
    assert result.label_values("gateway_credential_verification_failures_total", "reason")
