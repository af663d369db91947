"""The EU signer's breaker seen through the API when callers' deadlines cut its attempts."""

from __future__ import annotations

import asyncio
import time

import httpx
import respx

from signing_gateway.api import examples
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import SlowCall, eu_signing
from tests.support.gateway import EU_SIGNER_URL, SignerKeys, make_settings, running_gateway
from tests.support.loop_lateness import LoopLateness

ATTEMPT_TIMEOUT = 0.5
FAILURES_TO_OPEN = 3
LABELS = {"signer": "eu", "endpoint": "get_credential"}


def _settings(keys: SignerKeys):
    resilience = ResilienceSettings(
        attempt_timeout_seconds=ATTEMPT_TIMEOUT, breaker_consecutive_failures=FAILURES_TO_OPEN
    )
    eu = SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, resilience=resilience)
    return make_settings(keys, eu_signer=eu)


async def _post(client: httpx.AsyncClient, budget: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(
        "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": budget}
    )
    return response, time.monotonic() - started


async def test_hung_signer_opens_the_breaker_under_short_caller_timeouts(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """0.2 s callers against a hung signer: 504s until it is silent an attempt, then 503s."""
    hung = SlowCall(3600)
    signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=hung)
    async with running_gateway(_settings(test_keys)) as client, LoopLateness() as lateness:
        cut = 0
        while cut < 20:
            late_before = lateness.total()
            response, took = await _post(client, "0.2")
            # Bounds on `took` allow for however late a loaded machine made the loop.
            allowance = lateness.since(late_before)
            if response.status_code != 504:
                break
            assert_problem(response, 504, "deadline-exceeded")
            assert took < 0.4 + allowance
            cut += 1
        # Silent from the first call: cuts count from 0.5 s on, and three open the breaker.
        assert FAILURES_TO_OPEN + 1 <= cut <= FAILURES_TO_OPEN + 3
        assert_problem(response, 503, "signer-unavailable")
        assert int(response.headers["retry-after"]) >= 1
        assert took < 0.1 + allowance  # refused at once
        assert hung.started == cut  # nothing sent once open
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["signers"]["eu-signer"]["breaker"] == "open"
        metrics = await scrape(client)
        assert metrics.value("gateway_signer_calls_total", **LABELS, outcome="timeout") == 3
        deadline_cuts = metrics.value("gateway_signer_calls_total", **LABELS, outcome="deadline")
        assert deadline_cuts == cut - FAILURES_TO_OPEN


async def test_short_caller_timeouts_do_not_open_the_breaker_of_a_slow_signer(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """One caller's 0.1 s cuts are ignored while a 0.3 s signer answers the patient callers."""
    signing = SlowCall(0.3, then=eu_signing(test_keys))
    signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=signing)
    async with running_gateway(_settings(test_keys)) as client:
        patient = [asyncio.create_task(_post(client, "5"))]
        impatient = 0
        for _ in range(10):  # about twice the attempt timeout
            await asyncio.sleep(0.1)
            patient.append(asyncio.create_task(_post(client, "5")))
            for _ in range(2):
                response, _ = await _post(client, "0.1")
                assert_problem(response, 504, "deadline-exceeded")
                impatient += 1
        for response, _ in await asyncio.gather(*patient):
            assert response.status_code == 200, response.text
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["signers"]["eu-signer"]["breaker"] == "closed"
        metrics = await scrape(client)
        assert metrics.value("gateway_signer_calls_total", **LABELS, outcome="ok") == len(patient)
        # Every impatient call that reached the signer was cut by its deadline, and counted so.
        # On a loaded machine one may spend its 0.1 s before the call: it reaches no signer.
        reached = signing.started - len(patient)
        assert reached >= impatient // 2
        deadline_cuts = metrics.value("gateway_signer_calls_total", **LABELS, outcome="deadline")
        assert deadline_cuts == reached
        assert metrics.value("gateway_signer_calls_total", **LABELS, outcome="timeout") == 0


async def test_open_breaker_tells_callers_the_time_it_has_left_open(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """An open breaker's 503 says when it turns half-open (rounded up), not the minimum 1 s."""
    signers.post(f"{EU_SIGNER_URL}/get_credential").respond(500, text="boom")
    resilience = ResilienceSettings(
        max_attempts=1, breaker_consecutive_failures=1, breaker_open_seconds=30
    )
    eu = SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, resilience=resilience)
    async with running_gateway(make_settings(test_keys, eu_signer=eu)) as client:
        failed = await client.post("/v1/dcc", json=examples.EU_VACCINATION)
        assert_problem(failed, 502, "signer-bad-response")
        refused = await client.post("/v1/dcc", json=examples.EU_VACCINATION)
    assert_problem(refused, 503, "signer-unavailable")
    assert refused.headers["retry-after"] == "30"
