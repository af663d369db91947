"""The fault matrix: each signer failure mode against a real fake signer, end to end.

For every fault: the status the caller gets, that it arrives within the deadline (plus a
margin), breaker and bulkhead state, what the signer saw, and that /healthz stayed fast.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import orjson
import pytest

from signing_gateway.api import examples
from tests.contract.resilience.conftest import (
    DEADLINE,
    MARGIN,
    HealthWatch,
    breaker,
    control,
    gateway_for,
    metric,
    seen,
)
from tests.support.fake_signer_process import running_fake_signer

pytestmark = pytest.mark.timeout(60)

PROBLEM = "application/problem+json"


def _attributes() -> dict[str, str]:
    return dict(examples.DOMESTIC_ATTRIBUTES, validFrom=str(int(time.time())))


async def _timed(client: httpx.AsyncClient, method: str, path: str, **kw: Any):
    started = time.monotonic()
    response = await client.request(method, path, **kw)
    return response, time.monotonic() - started


async def _dcc(client: httpx.AsyncClient):
    return await _timed(client, "POST", "/v1/dcc", json=examples.EU_VACCINATION)


async def _issue_with_session(client: httpx.AsyncClient, domestic_fake, fault: str | None):
    """Open a session (no fault), then send /issue with `fault` on the signer's next call."""
    prepared = await client.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    out = prepared.json()
    nonce = orjson.loads(base64.b64decode(out["prepareIssueMessage"]))["issuerNonce"]
    commitment = base64.b64encode(orjson.dumps({"issuerNonce": nonce, "proof": "app"})).decode()
    if fault is not None:
        control(domestic_fake, fault=fault, faultCount=1)
    body = {
        "stoken": out["stoken"],
        "issueCommitmentMessage": commitment,
        "credentialsAttributes": [_attributes()],
    }
    return await _timed(client, "POST", "/v1/domestic/issue", json=body)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    return body


async def test_signer_down_answers_503_then_the_breaker_opens(fakes, domestic_fake):
    """Refused connections: retried within budget, then 503; the breaker opens, /readyz fails."""
    with running_fake_signer("--role", "eu") as doomed:
        async with gateway_for(
            doomed.base_url, domestic_fake.base_url, eu={"breaker_consecutive_failures": 3}
        ) as client:
            doomed.stop()
            async with HealthWatch(client) as health:
                first, took = await _dcc(client)
                _problem(first, 503)
                assert int(first.headers["retry-after"]) >= 1
                assert took < DEADLINE + MARGIN
                retries = await metric(
                    client, "gateway_signer_retries_total", signer="eu", reason="connect"
                )
                assert retries == 2  # 3 attempts, the budget floor allows them
                assert await breaker(client, "eu-signer") == "open"
                fast, took = await _dcc(client)
                _problem(fast, 503)
                assert took < 0.1  # refused by the open breaker, nothing sent
                assert 1 <= int(fast.headers["retry-after"]) <= 2
                ready = await client.get("/readyz")
                assert ready.status_code == 503
            health.assert_fast()


async def test_signer_slower_than_the_deadline_gives_504_in_time(fakes, eu_fake):
    """A signer slower than the deadline: 504 within it, attempts cancelled at the signer."""
    control(eu_fake, latencyMs=3000)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url) as client:
        async with HealthWatch(client) as health:
            response, took = await _dcc(client)
        health.assert_fast()
        _problem(response, 504)
        assert took < DEADLINE + MARGIN
    outcomes = seen(eu_fake, "get_credential")
    assert outcomes.get("ok", 0) == 0
    assert 1 <= sum(outcomes.values()) <= 3  # at most max_attempts, never more


async def test_caller_may_ask_for_a_shorter_deadline(fakes, eu_fake):
    """X-Request-Timeout below the setting cuts the request at the caller's budget."""
    control(eu_fake, latencyMs=3000)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url, deadline=5.0) as client:
        started = time.monotonic()
        response = await client.post(
            "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": "0.3"}
        )
        took = time.monotonic() - started
    _problem(response, 504)
    assert 0.25 < took < 0.3 + MARGIN


async def test_hang_once_is_retried_for_get_credential(fakes, eu_fake):
    """A hung get_credential attempt times out and is retried (replay-safe): 200 in time."""
    control(eu_fake, fault="hang", faultCount=1)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url) as client:
        async with HealthWatch(client) as health:
            response, took = await _dcc(client)
        health.assert_fast()
    assert response.status_code == 200, response.text
    assert took < DEADLINE + MARGIN
    outcomes = seen(eu_fake, "get_credential")
    assert outcomes.get("ok") == 1
    assert sum(outcomes.values()) == 2


async def test_hang_on_issue_is_never_replayed(fakes, domestic_fake):
    """A hung /issue is not sent again (single-use nonce): 504 in time, the signer saw one."""
    async with gateway_for(fakes[0].base_url, domestic_fake.base_url) as client:
        async with HealthWatch(client) as health:
            response, took = await _issue_with_session(client, domestic_fake, "hang")
        health.assert_fast()
    _problem(response, 504)
    assert took < DEADLINE + MARGIN
    assert sum(seen(domestic_fake, "issue").values()) == 1


async def test_connection_reset_is_retried_only_where_safe(fakes, eu_fake, domestic_fake):
    """A reset get_credential is retried to 200; a reset /issue is answered 502 unreplayed."""
    control(eu_fake, fault="reset", faultCount=1)
    async with gateway_for(eu_fake.base_url, domestic_fake.base_url) as client:
        async with HealthWatch(client) as health:
            dcc, took = await _dcc(client)
            issue, _ = await _issue_with_session(client, domestic_fake, "reset")
        health.assert_fast()
    assert dcc.status_code == 200, dcc.text
    assert took < DEADLINE + MARGIN
    assert seen(eu_fake, "get_credential") == {"fault:reset": 1, "ok": 1}
    _problem(issue, 502)
    assert sum(seen(domestic_fake, "issue").values()) == 1


async def test_server_errors_are_not_retried_and_open_the_breaker(fakes, eu_fake):
    """500s give 502 without retry; after 3 in a row the breaker answers 503 without calling."""
    control(eu_fake, fault="status=500", faultCount=-1)
    async with gateway_for(
        eu_fake.base_url, fakes[1].base_url, eu={"breaker_consecutive_failures": 3}
    ) as client:
        async with HealthWatch(client) as health:
            for _ in range(3):
                response, took = await _dcc(client)
                _problem(response, 502)
                assert took < DEADLINE + MARGIN
            assert await breaker(client, "eu-signer") == "open"
            refused, took = await _dcc(client)
            assert (await client.get("/readyz")).status_code == 503
        health.assert_fast()
    _problem(refused, 503)
    assert took < 0.1
    assert sum(seen(eu_fake, "get_credential").values()) == 3


async def test_breaker_probes_half_open_and_closes_when_the_signer_recovers(fakes, eu_fake):
    """After the open period, trial calls reach the recovered signer and close the breaker."""
    control(eu_fake, fault="status=500", faultCount=2)
    async with gateway_for(
        eu_fake.base_url,
        fakes[1].base_url,
        eu={
            "breaker_consecutive_failures": 2,
            "breaker_open_seconds": 0.3,
            "breaker_trial_calls": 1,
        },
    ) as client:
        for _ in range(2):
            _problem((await _dcc(client))[0], 502)
        assert await breaker(client, "eu-signer") == "open"
        deadline = time.monotonic() + 2
        state = "open"
        while state == "open" and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polling until the open period ends
            state = await breaker(client, "eu-signer")
        assert await breaker(client, "eu-signer") == "half-open"
        response, _ = await _dcc(client)
        assert response.status_code == 200, response.text
        assert await breaker(client, "eu-signer") == "closed"
        assert (
            await metric(
                client, "gateway_signer_breaker_transitions_total", signer="eu", to="closed"
            )
            == 1
        )


async def test_429_storm_is_not_retried_without_retry_after(fakes, eu_fake):
    """429 without Retry-After: 503 at once, one call each, and the breaker stays closed."""
    control(eu_fake, fault="status=429", faultCount=-1)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url) as client:
        async with HealthWatch(client) as health:
            results = await asyncio.gather(*(_dcc(client) for _ in range(8)))
            assert await breaker(client, "eu-signer") == "closed"
        health.assert_fast()
    for response, took in results:
        _problem(response, 503)
        assert response.headers["retry-after"] == "1"
        assert took < DEADLINE
    assert seen(eu_fake, "get_credential") == {"fault:status": 8}


async def test_503_retry_after_is_honoured_when_it_fits(fakes, eu_fake):
    """503 Retry-After: 0 is retried to 200; Retry-After: 5 (past the deadline) is passed on."""
    control(eu_fake, fault="status=503;retry-after=0", faultCount=1)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url) as client:
        ok, took = await _dcc(client)
        assert ok.status_code == 200, ok.text
        assert took < DEADLINE
        assert sum(seen(eu_fake, "get_credential").values()) == 2
        control(eu_fake, fault="status=503;retry-after=5", faultCount=1)
        later, took = await _dcc(client)
    _problem(later, 503)
    assert later.headers["retry-after"] == "5"
    assert took < 0.3
    assert sum(seen(eu_fake, "get_credential").values()) == 3


@pytest.mark.parametrize(
    ("fault", "slug"),
    [
        ("malformed", "signer-bad-response"),
        ("malformed=shape", "signer-bad-response"),
        ("bad-signature", "credential-verification-failed"),
        ("wrong-kid", "credential-verification-failed"),
    ],
)
async def test_bad_answers_give_502_without_retry(fakes, eu_fake, fault, slug):
    """Malformed bodies and unverifiable credentials: 502, the signer asked exactly once."""
    control(eu_fake, fault=fault, faultCount=-1)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url) as client:
        async with HealthWatch(client) as health:
            response, took = await _dcc(client)
        health.assert_fast()
    body = _problem(response, 502)
    assert body["type"].endswith(slug)
    assert "HC1:" not in response.text
    assert took < DEADLINE
    assert sum(seen(eu_fake, "get_credential").values()) == 1


async def test_slow_body_past_the_deadline_gives_504(fakes, eu_fake):
    """A body trickling out past the deadline is cut: 504 in time; a short trickle is fine."""
    async with gateway_for(eu_fake.base_url, fakes[1].base_url) as client:
        control(eu_fake, fault="slow-body=100", faultCount=1)
        ok, _ = await _dcc(client)
        assert ok.status_code == 200, ok.text
        control(eu_fake, fault="slow-body=3000", faultCount=-1)
        async with HealthWatch(client) as health:
            response, took = await _dcc(client)
        health.assert_fast()
    _problem(response, 504)
    assert took < DEADLINE + MARGIN


async def test_signer_capacity_rejections_are_retried_after_retry_after(fakes, eu_fake):
    """Fake at capacity 2 (reject): its 429 Retry-After 1 is honoured within a 3 s deadline."""
    control(eu_fake, capacity=2, overflow="reject", latencyMs=300)
    async with gateway_for(eu_fake.base_url, fakes[1].base_url, deadline=3.0) as client:
        async with HealthWatch(client) as health:
            results = await asyncio.gather(*(_dcc(client) for _ in range(6)))
            retries = await metric(client, "gateway_signer_retries_total", reason="throttled")
        health.assert_fast()
    statuses = sorted(r.status_code for r, _ in results)
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 4
    assert all(took < 3.0 + MARGIN for _, took in results)
    outcomes = seen(eu_fake, "get_credential")
    assert outcomes.get("rejected", 0) >= 1
    assert eu_fake.stats()["peakInFlight"] <= 2
    # Budget: floor 1/s x 10 s + 20 % of 6 requests; never more than 2 retries per request.
    assert 1 <= retries <= min(10 + 0.2 * 6, 12)


async def test_full_bulkhead_sheds_at_once(fakes, eu_fake):
    """Gateway bulkhead 2 in flight + 1 pending: the rest get 503 Retry-After at once."""
    control(eu_fake, latencyMs=700)
    async with gateway_for(
        eu_fake.base_url,
        fakes[1].base_url,
        eu={
            "max_in_flight": 2,
            "max_pending": 1,
            "max_wait_seconds": 0.4,
            "attempt_timeout_seconds": 0.95,
        },
    ) as client:
        async with HealthWatch(client) as health:
            results = await asyncio.gather(*(_dcc(client) for _ in range(8)))
            shed = await metric(client, "gateway_signer_shed_total", signer="eu")
            ready = await client.get("/readyz")
        health.assert_fast()
    ok = [took for r, took in results if r.status_code == 200]
    refused = [(r, took) for r, took in results if r.status_code != 200]
    assert len(ok) == 2
    assert len(refused) == 6
    for response, _ in refused:
        _problem(response, 503)
        assert response.headers["retry-after"] == "1"
    tooks = sorted(took for _, took in refused)
    assert all(took < 0.25 for took in tooks[:5])  # shed at once, the queue being full
    assert 0.4 <= tooks[5] < 0.7  # the queued one waited max_wait, then was shed
    assert shed == 6
    assert eu_fake.stats()["peakInFlight"] <= 2
    assert ready.status_code == 200  # shedding is not unreadiness
