"""Security records as written: their message in `event`, their slug in `security_event`."""

from __future__ import annotations

from typing import Any

import httpx

from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.bodies import eu_vaccination
from tests.api.security.conftest import bearer
from tests.api.signer_mocks import MockedSigners, eu_signing
from tests.support.gateway import SignerKeys

REQUEST_ID = "sec-log-7"


def _security_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "signing_gateway.security"]


async def test_a_refused_token_is_logged_with_its_message_and_slug(secured, json_log):
    """A request without a token: "caller refused", security event auth-failed, its reason."""
    response = await secured.post("/v1/dcc", json={}, headers={"X-Request-ID": REQUEST_ID})
    assert response.status_code == 401
    [record] = _security_records(json_log())
    assert record["event"] == "caller refused"
    assert record["security_event"] == "auth-failed"
    assert (record["reason"], record["path"]) == ("missing", "/v1/dcc")
    assert record["request_id"] == REQUEST_ID


async def test_a_missing_scope_is_logged_with_its_message_and_slug(
    secured, token_issuer: LocalTokenIssuer, json_log
):
    """A token without the route's scope: "caller lacks scope", security event auth-forbidden."""
    token = token_issuer.mint(subject="backend-2", scopes=["keys:read"])
    response = await secured.post("/v1/dcc", json={}, headers=bearer(token))
    assert response.status_code == 403
    [record] = _security_records(json_log())
    assert record["event"] == "caller lacks scope"
    assert record["security_event"] == "auth-forbidden"
    assert record["subject"] == "backend-2"
    assert (record["reason"], record["missing_scope"], record["path"]) == (
        "insufficient-scope",
        "dcc:sign",
        "/v1/dcc",
    )


async def test_an_unverifiable_credential_is_logged_with_its_message_and_slug(
    gateway: httpx.AsyncClient, mocked: MockedSigners, test_keys: SignerKeys, json_log
):
    """A DCC whose signature fails: the withholding is logged in words and by slug."""
    mocked.get_credential.mock(side_effect=eu_signing(test_keys, tamper_signature=True))
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 502
    [record] = _security_records(json_log())
    assert record["event"] == (
        "signer returned a credential that failed verification; not released"
    )
    assert record["security_event"] == "credential-verification-failed"
    assert (record["signer"], record["reason"]) == ("eu", "bad-signature")
    assert record["level"] == "warning"
