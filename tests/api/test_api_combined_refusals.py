"""An EU part refused at once fails /v1/print and /v1/credentials before the domestic call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test
from tests.api.signer_mocks import MockedSigners, commitment
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    running_gateway,
)

KEPT = "the issuance session was not used: retry with the same stoken"

# One attempt per call, a breaker that opens on one failure and stays open, one slot, no queue.
REFUSING = ResilienceSettings(
    max_attempts=1,
    breaker_consecutive_failures=1,
    # Open for less than a session's 60 s: a Retry-After reaching its end says to start again.
    breaker_open_seconds=30,
    max_in_flight=1,
    max_pending=0,
)


def _refusing(url: str) -> SignerSettings:
    return SignerSettings(url=url, allow_plain_http=True, resilience=REFUSING)


@pytest.fixture
async def gateway(test_keys: SignerKeys, signers) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose two signers refuse calls at once as soon as they can (`REFUSING`)."""
    refusing = {"eu_signer": EU_SIGNER_URL, "domestic_signer": DOMESTIC_SIGNER_URL}
    settings = make_settings(test_keys, **{k: _refusing(url) for k, url in refusing.items()})
    async with running_gateway(settings) as client:
        yield client


@asynccontextmanager
async def _eu_refusing(
    gateway: httpx.AsyncClient, mocked: MockedSigners, how: str
) -> AsyncIterator[str]:
    """Inside the block the EU signer's calls are refused at once; yields the detail's words."""
    eu_sign = mocked.get_credential.side_effect
    if how == "breaker-open":
        mocked.get_credential.mock(return_value=httpx.Response(500, text="boom"), side_effect=None)
        assert (await gateway.post("/v1/dcc", json=eu_test())).status_code == 502
        mocked.get_credential.mock(side_effect=eu_sign)
        yield "calls are paused"
        return
    at_signer, release = asyncio.Event(), asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        at_signer.set()
        await release.wait()
        return eu_sign(request)

    mocked.get_credential.mock(side_effect=held)
    holder = asyncio.create_task(gateway.post("/v1/dcc", json=eu_test()))
    await asyncio.wait_for(at_signer.wait(), timeout=5)  # the only EU slot is taken
    try:
        yield "at capacity"
    finally:
        release.set()
        assert (await holder).status_code == 200


REFUSALS = ["breaker-open", "bulkhead-full"]


@pytest.mark.parametrize("how", REFUSALS)
async def test_credentials_refused_by_the_eu_policy_keep_the_stoken(
    gateway, mocked: MockedSigners, how
):
    """An EU part refused before sending: 503, /issue never sent, the same stoken then issues."""
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    body: dict[str, Any] = {
        "stoken": prepared.json()["stoken"],
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
        "european": [eu_test()],
    }
    async with _eu_refusing(gateway, mocked, how) as why:
        first = await gateway.post("/v1/credentials", json=body)
    problem = assert_problem(first, 503, "signer-unavailable")
    assert problem["part"] == "european[0]"
    assert why in problem["detail"]
    assert KEPT in problem["detail"]
    assert mocked.issue.call_count == 0
    domestic_only = {**body, "european": []}
    retry = await gateway.post("/v1/credentials", json=domestic_only)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("how", REFUSALS)
async def test_print_refused_by_the_eu_policy_signs_no_static_proof(
    gateway, mocked: MockedSigners, how
):
    """/v1/print with its EU part refused before sending: 503, nothing signed to throw away."""
    body = {"domestic": domestic_attributes(), "european": eu_test()}
    async with _eu_refusing(gateway, mocked, how) as why:
        response = await gateway.post("/v1/print", json=body)
    problem = assert_problem(response, 503, "signer-unavailable")
    assert problem["part"] == "european"
    assert why in problem["detail"]
    assert mocked.issue_static.call_count == 0
