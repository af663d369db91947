"""The caller's X-Request-Timeout and the remaining budget sent to the signer."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from signing_gateway.api import examples
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test
from tests.api.signer_mocks import MockedSigners, SlowCall, commitment, failing_eu_signer
from tests.support.gateway import SignerKeys, make_settings, running_gateway


async def test_signer_gets_the_remaining_budget(gateway, signers):
    """Each attempt carries X-Request-Deadline-Ms: what is left of the caller's budget."""
    seen = failing_eu_signer(signers)
    response = await gateway.post(
        "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": "0.5"}
    )
    assert response.status_code == 502
    budget = int(seen[0].headers["X-Request-Deadline-Ms"])
    assert 300 < budget <= 500


async def test_caller_cannot_ask_for_more_than_the_setting(test_keys, signers):
    """A caller asking for 60 s gets the configured 2 s."""
    seen = failing_eu_signer(signers)
    async with running_gateway(make_settings(test_keys, request_deadline_seconds=2.0)) as client:
        response = await client.post(
            "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": "60"}
        )
    assert response.status_code == 502
    assert 1500 < int(seen[0].headers["X-Request-Deadline-Ms"]) <= 2000


@pytest.mark.parametrize(
    "value", ["soon", "0", "-1", "nan", "inf", "1_0", "+5", ".5", b"\xa05", "1e999"]
)
async def test_malformed_request_timeout_is_refused(gateway, signers, value):
    """An unreadable X-Request-Timeout is a 400 `bad-request`, and no signer is called.

    Decimal digits only: Python's `float()` would take `1_0` as ten seconds, and `+5`, `.5`
    or a no-break space before the number, which the OpenAPI `number` does not allow.
    """
    seen = failing_eu_signer(signers)
    response = await gateway.post(
        "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": value}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/bad-request")  # as every other malformed request
    assert "X-Request-Timeout" in response.json()["detail"]
    assert seen == []


@pytest.mark.parametrize("values", [("60", "0.5"), ("0.5", "0.5")])
async def test_repeated_request_timeout_is_refused(gateway, signers, values):
    """Two X-Request-Timeout lines are a 400 `bad-request`, as one line holding both is.

    RFC 9110 reads repeated lines of a field as one comma-separated value, which is no number:
    taking either would drop the bound the other asked for. No signer is called.
    """
    seen = failing_eu_signer(signers)
    combined = await gateway.post(
        "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": ", ".join(values)}
    )
    response = await gateway.post(
        "/v1/dcc",
        json=examples.EU_VACCINATION,
        headers=[("X-Request-Timeout", value) for value in values],
    )
    assert (combined.status_code, response.status_code) == (400, 400), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/bad-request")
    assert response.json()["detail"] == (
        "X-Request-Timeout must be a positive number of seconds, given once"
    )
    assert seen == []


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_health_ignores_the_request_timeout_header(gateway, path):
    """Probes do no signer work, so even an unreadable X-Request-Timeout does not fail them."""
    response = await gateway.get(path, headers={"X-Request-Timeout": "soon"})
    assert response.status_code == 200


async def test_readiness_ignores_the_request_timeout_header(gateway):
    """/readyz, which passes every middleware, answers its state despite a bad header."""
    response = await gateway.get("/readyz", headers={"X-Request-Timeout": "soon"})
    assert "dependencies" in response.json()


async def _signing_body(client: httpx.AsyncClient, route: str) -> dict[str, Any] | None:
    """A valid body for `route`, with a fresh session where the route takes one."""
    if route in {"/v1/domestic/issue", "/v1/credentials"}:
        prepared = await client.post("/v1/domestic/prepare-issue")
        assert prepared.status_code == 200, prepared.text
        session = {"stoken": prepared.json()["stoken"], "issueCommitmentMessage": commitment()}
        if route == "/v1/credentials":
            return {**session, "domestic": [domestic_attributes()], "european": [eu_test()]}
        return {**session, "credentialsAttributes": [domestic_attributes()]}
    return {
        "/v1/dcc": eu_test(),
        "/v1/domestic/static": {"credentialAttributes": domestic_attributes()},
        "/v1/domestic/prepare-issue": None,
        "/v1/print": {"domestic": domestic_attributes(), "european": eu_test()},
    }[route]


@pytest.mark.parametrize(
    "route",
    [
        "/v1/dcc",
        "/v1/domestic/static",
        "/v1/domestic/prepare-issue",
        "/v1/domestic/issue",
        "/v1/print",
        "/v1/credentials",
    ],
)
async def test_the_configured_deadline_alone_cuts_every_signing_route(
    test_keys: SignerKeys, mocked: MockedSigners, route: str
):
    """Without X-Request-Timeout, `request_deadline_seconds` answers hung signers with a 504.

    The attempt timeout (10 s) is far off: the answer is the request deadline's, in time.
    """
    async with running_gateway(make_settings(test_keys, request_deadline_seconds=0.3)) as client:
        body = await _signing_body(client, route)
        hung = SlowCall(5.0)
        for signer in (
            mocked.get_credential,
            mocked.prepare_issue,
            mocked.issue,
            mocked.issue_static,
        ):
            signer.mock(side_effect=hung)
        started = time.monotonic()
        response = await client.post(route, json=body)
        took = time.monotonic() - started
    assert_problem(response, 504, "deadline-exceeded")
    assert took < 1.5
    assert hung.started == hung.cancelled >= 1
