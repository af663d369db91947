"""Tokens checked against a JWKS URL: refetches on unknown kids, slow and malformed key sets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import respx

from signing_gateway.security.settings import ALL_SCOPES, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.assertions import assert_problem
from tests.api.bodies import eu_vaccination
from tests.api.security.conftest import AUDIENCE, ISSUER, bearer
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway

JWKS_URL = "https://idp.test/jwks"
#: The longest a request waits on a refetch.
FETCH_TIMEOUT = 4.0
#: An unknown kid may trigger a refetch right after start-up (the default waits 30 s).
MIN_REFRESH_INTERVAL = 0.001


class Idp:
    """The identity provider's JWKS endpoint: answers `jwks` at once at start-up, then as told."""

    def __init__(self, jwks: dict[str, Any], *, slow: bool = False) -> None:
        self.jwks = jwks
        self.slow = slow
        self.down = False  # answers 503 from now on
        self.fetches = 0
        self.refetching = asyncio.Event()
        self.release = asyncio.Event()

    async def answer(self, _: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.fetches > 1:
            self.refetching.set()
            if self.slow:  # slower than the fetch timeout: it answers when the test lets it
                await self.release.wait()
        if self.down:
            return httpx.Response(503, json=self.jwks)
        return httpx.Response(200, json=self.jwks)


def _remote_auth() -> AuthSettings:
    return AuthSettings(
        jwks_url=JWKS_URL,
        audience=AUDIENCE,
        issuer=ISSUER,
        jwks_fetch_timeout_seconds=FETCH_TIMEOUT,
        jwks_min_refresh_interval_seconds=MIN_REFRESH_INTERVAL,
    )


def _issuer(kid: str) -> LocalTokenIssuer:
    return LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid=kid)


def _token(issuer: LocalTokenIssuer) -> str:
    return issuer.mint(subject="backend-1", scopes=list(ALL_SCOPES))


async def test_valid_token_is_answered_while_unknown_kids_wait_on_a_slow_refetch(
    signers: respx.MockRouter, mocked: MockedSigners, test_keys: SignerKeys, token_issuer
):
    """Unknown-kid requests waiting on a slow JWKS refetch hold no CPU permit: others go on."""
    idp = Idp(token_issuer.jwks(), slow=True)
    signers.get(JWKS_URL).mock(side_effect=idp.answer)
    settings = make_settings(test_keys, auth=_remote_auth())
    forged = _token(_issuer("no-such-kid"))  # its signature is never looked at
    async with running_gateway(settings) as client:
        waiting = [
            asyncio.create_task(client.get("/v1/keys", headers=bearer(forged)))
            for _ in range(2 * settings.loop_lag.cpu_permits)
        ]
        try:
            async with asyncio.timeout(2):
                await idp.refetching.wait()
            started = time.perf_counter()
            response = await client.post(
                "/v1/dcc", json=eu_vaccination(), headers=bearer(_token(token_issuer))
            )
            elapsed = time.perf_counter() - started
        finally:
            idp.release.set()
            refused = await asyncio.gather(*waiting)
    assert response.status_code == 200, response.text
    assert elapsed < FETCH_TIMEOUT / 4
    for answer in refused:
        assert_problem(answer, 401, "unauthenticated")
    assert idp.fetches == 2  # one shared refetch for every unknown kid


async def test_malformed_kid_in_a_refetched_jwks_skips_only_that_key(
    signers: respx.MockRouter, mocked: MockedSigners, test_keys: SignerKeys, token_issuer
):
    """A key with a non-string kid is skipped: the rest of the set applies, unknown kids get 401."""
    idp = Idp(token_issuer.jwks())
    signers.get(JWKS_URL).mock(side_effect=idp.answer)
    settings = make_settings(test_keys, auth=_remote_auth())
    rotated = _issuer("rotated")
    malformed = {**_issuer("other").jwks()["keys"][0], "kid": ["rotated-2"]}
    async with running_gateway(settings) as client:
        # The provider withdraws the old key and publishes a new one next to a malformed one.
        idp.jwks = {"keys": [*rotated.jwks()["keys"], malformed]}
        accepted = await client.get("/v1/keys", headers=bearer(_token(rotated)))
        assert accepted.status_code == 200, accepted.text
        withdrawn = await client.get("/v1/keys", headers=bearer(_token(token_issuer)))
        unknown = await client.get("/v1/keys", headers=bearer(_token(_issuer("nobody"))))
    assert_problem(withdrawn, 401, "unauthenticated")
    assert_problem(unknown, 401, "unauthenticated")


async def test_an_identity_provider_down_refuses_only_the_kids_it_cannot_confirm(
    signers: respx.MockRouter, mocked: MockedSigners, test_keys: SignerKeys, token_issuer
):
    """Pin what a failed refetch does to requests: known kids go on, unknown ones get 401.

    The keys held stay in force, so the outage locks no caller out; a token whose kid the
    provider might have published meanwhile is refused as an unknown key, after one refetch,
    and the gateway itself answers no 5xx for the provider's failure.
    """
    idp = Idp(token_issuer.jwks())
    signers.get(JWKS_URL).mock(side_effect=idp.answer)
    settings = make_settings(test_keys, auth=_remote_auth())
    async with running_gateway(settings) as client:
        idp.down = True
        rotated = _issuer("rotated")
        idp.jwks = rotated.jwks()  # in its 503's body: never taken
        unknown = await client.get("/v1/keys", headers=bearer(_token(rotated)))
        known = await client.get("/v1/keys", headers=bearer(_token(token_issuer)))
    problem = assert_problem(unknown, 401, "unauthenticated")
    assert problem["detail"] == "the token's signing key is unknown"
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    assert known.status_code == 200, known.text
    assert idp.fetches == 2


async def test_a_request_waiting_on_a_refetch_when_the_gateway_stops_is_answered_503(
    signers: respx.MockRouter, mocked: MockedSigners, test_keys: SignerKeys, token_issuer
):
    """Pin the answer of a request whose shared refetch the shutdown cancels: shutting-down.

    Stopping the key source cancels the fetch under every request waiting on it; such a
    request ends as any request cancelled at shutdown does, never a 500, a 401 or a hang.
    """
    idp = Idp(token_issuer.jwks(), slow=True)
    signers.get(JWKS_URL).mock(side_effect=idp.answer)
    settings = make_settings(test_keys, auth=_remote_auth())
    gateway = running_gateway(settings)
    client = await gateway.__aenter__()
    waiting = asyncio.create_task(client.get("/v1/keys", headers=bearer(_token(_issuer("new")))))
    stopping: asyncio.Task[Any] | None = None
    try:
        async with asyncio.timeout(2):
            await idp.refetching.wait()
        stopping = asyncio.create_task(gateway.__aexit__(None, None, None))
        async with asyncio.timeout(FETCH_TIMEOUT / 2):
            answer = await waiting
    finally:
        idp.release.set()
        await (stopping or gateway.__aexit__(None, None, None))
    assert_problem(answer, 503, "shutting-down")
    assert answer.headers["connection"] == "close"
