"""Remembered tokens on the public API: one signature check per token, expiry and rotation kept."""

from __future__ import annotations

import functools
import time
from typing import Any

import httpx
import jwt
import pytest
import respx

from signing_gateway.security import setup
from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.assertions import assert_problem
from tests.api.security.conftest import AUDIENCE, ISSUER, bearer
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway

JWKS_URL = "https://idp.test/jwks"


def _failures(text: str, reason: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'gateway_auth_failures_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature the gateway checks, in order."""
    seen: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return seen


async def test_a_token_used_again_is_not_checked_again(
    secured, mocked: MockedSigners, full_token: str, decodes: list[str]
):
    """Three requests with one token: all answered, its signature checked once."""
    for _ in range(3):
        response = await secured.get("/v1/keys", headers=bearer(full_token))
        assert response.status_code == 200, response.text
    assert decodes == [full_token]


async def test_a_remembered_token_expires(
    monkeypatch: pytest.MonkeyPatch,
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    token_issuer: LocalTokenIssuer,
):
    """A token accepted (and remembered) earlier is refused `expired` once past exp + leeway."""
    now = [time.time()]
    monkeypatch.setattr(
        setup, "TokenVerifier", functools.partial(TokenVerifier, clock=lambda: now[0])
    )
    token = bearer(token_issuer.mint(scopes=["keys:read"], now=now[0], ttl_seconds=60))
    async with running_gateway(make_settings(test_keys, auth=auth_settings)) as client:
        assert (await client.get("/v1/keys", headers=token)).status_code == 200
        now[0] += 60 + auth_settings.leeway_seconds
        before = _failures((await client.get("/metrics")).text, "expired")
        response = await client.get("/v1/keys", headers=token)
        problem = assert_problem(response, 401, "unauthenticated")
        assert problem["detail"] == "the token has expired"
        assert 'error_description="the token has expired"' in response.headers["www-authenticate"]
        assert _failures((await client.get("/metrics")).text, "expired") == before + 1


@pytest.mark.parametrize(
    ("rotation", "reason"),
    [("same-kid-new-key", "bad-signature"), ("kid-withdrawn", "unknown-key")],
)
async def test_a_remembered_token_stops_with_its_key(  # noqa: PLR0917 - fixtures and parameters
    signers: respx.MockRouter,
    mocked: MockedSigners,
    test_keys: SignerKeys,
    token_issuer: LocalTokenIssuer,
    rotation: str,
    reason: str,
):
    """Once a refetched JWKS no longer holds a remembered token's key, the token is refused."""
    served = {"jwks": token_issuer.jwks()}
    signers.get(JWKS_URL).mock(side_effect=lambda _: httpx.Response(200, json=served["jwks"]))
    auth = AuthSettings(
        jwks_url=JWKS_URL,
        audience=AUDIENCE,
        issuer=ISSUER,
        jwks_min_refresh_interval_seconds=0.001,  # the next unknown kid refetches
    )
    newcomer = LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid="new")
    replaced = LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid=token_issuer.kid)
    remembered = bearer(token_issuer.mint(scopes=["keys:read"]))
    async with running_gateway(make_settings(test_keys, auth=auth)) as client:
        assert (await client.get("/v1/keys", headers=remembered)).status_code == 200
        kept = replaced.jwks()["keys"] if rotation == "same-kid-new-key" else []
        served["jwks"] = {"keys": [*newcomer.jwks()["keys"], *kept]}
        # A token with the new kid makes the gateway refetch the key set.
        fresh = await client.get("/v1/keys", headers=bearer(newcomer.mint(scopes=["keys:read"])))
        assert fresh.status_code == 200, fresh.text
        before = _failures((await client.get("/metrics")).text, reason)
        assert_problem(await client.get("/v1/keys", headers=remembered), 401, "unauthenticated")
        assert _failures((await client.get("/metrics")).text, reason) == before + 1
