"""JWKS parsing and the remote key set's refresh rules."""

from __future__ import annotations

import httpx
import pytest

from signing_gateway.security.jwks import JwksError, JwksKeys, RemoteJwks
from signing_gateway.security.tokens import LocalTokenIssuer


def _issuer(kid: str) -> LocalTokenIssuer:
    return LocalTokenIssuer(issuer="i", audience="a", kid=kid)


def test_symmetric_keys_are_never_used():
    """An `oct` (HMAC) key in a JWKS is ignored; a set of only such keys is refused."""
    with pytest.raises(JwksError, match="no usable"):
        JwksKeys({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]})


def test_private_keys_are_refused():
    """A JWKS that publishes a private key is refused outright."""
    jwk = _issuer("p").jwks()["keys"][0]
    with pytest.raises(JwksError, match="private"):
        JwksKeys({"keys": [{**jwk, "d": "AAAA"}]})


def test_key_is_bound_to_its_algorithm():
    """An EC key published for ES256 is not handed out for RS256 or PS256."""
    keys = JwksKeys(_issuer("k").jwks())
    assert keys.key_for("k", "ES256") is not None
    assert keys.key_for("k", "RS256") is None
    assert keys.key_for("other", "ES256") is None


class Idp:
    """A JWKS endpoint whose key set can be rotated; counts fetches."""

    def __init__(self, issuer: LocalTokenIssuer) -> None:
        self.jwks = issuer.jwks()
        self.fetches = 0

    def handler(self, _: httpx.Request) -> httpx.Response:
        self.fetches += 1
        return httpx.Response(200, json=self.jwks)


async def test_unknown_kid_refreshes_at_most_once_per_interval():
    """Unknown kids trigger one fetch, then none until min_refresh_interval has passed."""
    idp = Idp(_issuer("old"))
    now = [1000.0]
    async with httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)) as http:
        remote = RemoteJwks(
            http,
            "https://idp.test/jwks",
            refresh_interval=3600,
            min_refresh_interval=30,
            fetch_timeout=2,
            clock=lambda: now[0],
        )
        await remote.start()
        assert idp.fetches == 1
        now[0] += 31
        idp.jwks = _issuer("new").jwks()
        assert (await remote.keys_for("new")).has("new")
        assert idp.fetches == 2
        for _ in range(10):
            assert not (await remote.keys_for("attacker-chosen")).has("attacker-chosen")
        assert idp.fetches == 2
        now[0] += 31
        await remote.keys_for("attacker-chosen")
        assert idp.fetches == 3
        await remote.stop()


async def test_failed_refresh_keeps_the_keys():
    """When the provider fails, the keys already loaded keep verifying tokens."""
    idp = Idp(_issuer("k"))
    now = [0.0]
    async with httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)) as http:
        remote = RemoteJwks(
            http, "https://idp.test/jwks", refresh_interval=3600, min_refresh_interval=1,
            fetch_timeout=2, clock=lambda: now[0],
        )  # fmt: skip
        await remote.start()
        idp.jwks = {"keys": []}
        now[0] += 5
        keys = await remote.keys_for("unknown")
        assert keys.has("k")
        await remote.stop()


async def test_start_fails_without_a_key_set():
    """An unreachable or empty JWKS at start-up stops the gateway from starting."""

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    async with httpx.AsyncClient(transport=httpx.MockTransport(broken)) as http:
        remote = RemoteJwks(
            http, "https://idp.test/jwks", refresh_interval=60, min_refresh_interval=1,
            fetch_timeout=1,
        )  # fmt: skip
        with pytest.raises(JwksError):
            await remote.start()
