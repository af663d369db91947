"""The token type check on the public API: an ID token is no access token once it is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.assertions import assert_problem
from tests.api.bodies import eu_vaccination
from tests.api.security.conftest import bearer
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway

CHALLENGE = (
    'Bearer realm="signing-gateway", error="invalid_token", '
    'error_description="the token type is not accepted"'
)


@pytest.fixture
async def typed(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway that takes access tokens only (`auth.token_types=["at+jwt"]`)."""
    auth = auth_settings.model_copy(update={"token_types": ["at+jwt"]})
    async with running_gateway(make_settings(test_keys, auth=auth)) as client:
        yield client


async def _wrong_type_count(client: httpx.AsyncClient) -> float:
    series = 'gateway_auth_failures_total{reason="wrong-type"} '
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith(series):
            return float(line.removeprefix(series))
    raise AssertionError("no wrong-type series")


@pytest.mark.parametrize("typ", ["JWT", None], ids=["id-token-jwt", "no-typ"])
async def test_a_token_not_typed_as_an_access_token_is_refused_counted_and_logged(
    typed: httpx.AsyncClient,
    mocked: MockedSigners,
    token_issuer: LocalTokenIssuer,
    json_log,
    typ: str | None,
):
    """An ID-token-like `typ: JWT`, or none: 401 `wrong-type`, counted and logged; no signer."""
    token = token_issuer.mint(subject="app-user", scopes=["dcc:sign"], header_typ=typ)
    before = await _wrong_type_count(typed)
    response = await typed.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    body = assert_problem(response, 401, "unauthenticated")
    assert body["detail"] == "the token type is not accepted"
    assert response.headers["www-authenticate"] == CHALLENGE
    assert token[:40] not in response.text
    assert mocked.signing_calls() == 0
    assert await _wrong_type_count(typed) == before + 1
    records: list[dict[str, Any]] = [
        r for r in json_log() if r.get("security_event") == "auth-failed"
    ]
    assert [(r["event"], r["reason"], r["path"]) for r in records] == [
        ("caller refused", "wrong-type", "/v1/dcc")
    ]


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT"])
async def test_an_access_token_is_accepted_in_any_form_of_its_type(
    typed: httpx.AsyncClient, mocked: MockedSigners, token_issuer: LocalTokenIssuer, typ: str
):
    """With `at+jwt` required, a token typed so (any case, `application/` or not) signs."""
    token = token_issuer.mint(scopes=["dcc:sign"], header_typ=typ)
    response = await typed.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    assert response.status_code == 200, response.text
    assert mocked.get_credential.call_count == 1
    assert await _wrong_type_count(typed) == 0


@pytest.mark.parametrize("typ", ["JWT", None, "at+jwt"], ids=["jwt", "no-typ", "at+jwt"])
async def test_by_default_a_token_of_any_type_signs_and_wrong_type_stays_at_zero(
    secured: httpx.AsyncClient,
    mocked: MockedSigners,
    token_issuer: LocalTokenIssuer,
    typ: str | None,
):
    """Without `auth.token_types` a token's type is not checked, as before the setting."""
    token = token_issuer.mint(scopes=["dcc:sign"], header_typ=typ)
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    assert response.status_code == 200, response.text
    assert mocked.get_credential.call_count == 1
    assert await _wrong_type_count(secured) == 0
