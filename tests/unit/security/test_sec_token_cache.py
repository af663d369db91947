"""The verifier's remembered tokens: a hit skips the signature, never the time or key checks."""

from __future__ import annotations

import functools
import gc
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import jwt.api_jwt
import pytest

from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.errors import AuthenticationFailed
from signing_gateway.security.jwks import JwksKeys
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer

AUDIENCE = "signing-gateway"
ISSUER = "https://idp.test/"
LEEWAY = 30


class SwappableKeys:
    """A key source whose key set a test replaces, as a JWKS refresh does."""

    def __init__(self, keys: JwksKeys) -> None:
        self.keys = keys

    async def keys_for(self, kid: str | None) -> JwksKeys:  # noqa: ARG002 - one set at a time
        return self.keys


class Clock:
    """Wall-clock seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


class DecodeSpy:
    """Counts the signature checks (`jwt.decode` calls) the verifier makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = jwt.decode

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counting)


def _issuer(kid: str = "k1") -> LocalTokenIssuer:
    return LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE, kid=kid)


def _settings(**overrides: Any) -> AuthSettings:
    return AuthSettings(audience=AUDIENCE, issuer=ISSUER, leeway_seconds=LEEWAY, **overrides)


@pytest.fixture
def issuer() -> LocalTokenIssuer:
    """The token issuer of a test (kid `k1`)."""
    return _issuer()


@pytest.fixture
def source(issuer: LocalTokenIssuer) -> SwappableKeys:
    """A key source holding the issuer's key set."""
    return SwappableKeys(JwksKeys(issuer.jwks()))


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
    """Counts `jwt.decode` calls for the test."""
    return DecodeSpy(monkeypatch)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One fake clock for the verifier and for PyJWT's own claim checks."""
    fake = Clock()

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FakeDatetime:
            return cls.fromtimestamp(fake.now, tz=tz or UTC)

    monkeypatch.setattr(jwt.api_jwt, "datetime", FakeDatetime)
    return fake


async def _reason(verifier: TokenVerifier, token: str) -> str:
    """`accepted`, or the reason the token is refused for."""
    try:
        await verifier.verify(token)
    except AuthenticationFailed as exc:
        return exc.reason
    return "accepted"


async def test_repeated_token_skips_the_signature_check(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy
):
    """The second use of a token returns the same caller without checking its signature again."""
    verifier = TokenVerifier(_settings(), source)
    token = issuer.mint(subject="backend-1", scopes=["dcc:sign"], client_id="cc")
    first = await verifier.verify(token)
    second = await verifier.verify(token)
    assert second is first
    assert (first.subject, first.client_id, first.scopes) == ("backend-1", "cc", {"dcc:sign"})
    assert spy.calls == 1


async def test_cached_token_is_refused_once_expired(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy, clock: Clock
):
    """A cached token is accepted up to exp + leeway and refused `expired` from then on."""
    verifier = TokenVerifier(_settings(), source, clock=clock)
    token = issuer.mint(now=clock.now, ttl_seconds=60)
    await verifier.verify(token)
    clock.now += 60 + LEEWAY - 0.5
    assert await _reason(verifier, token) == "accepted"
    assert spy.calls == 1
    clock.now += 0.5
    assert await _reason(verifier, token) == "expired"
    assert await _reason(verifier, token) == "expired"
    assert spy.calls == 2  # the refusal dropped the entry: the token is checked afresh


async def test_cached_token_refused_as_not_yet_valid_is_forgotten(
    issuer: LocalTokenIssuer, source: SwappableKeys, clock: Clock
):
    """A cached token refused `not-yet-valid` (clock stepped back) is dropped like any refusal."""
    verifier = TokenVerifier(_settings(), source, clock=clock)
    token = issuer.mint(now=clock.now)
    await verifier.verify(token)
    clock.now -= LEEWAY + 1
    assert await _reason(verifier, token) == "not-yet-valid"
    assert verifier.cached_tokens == 0


def _token_with(issuer: LocalTokenIssuer, **claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "s", **claims}
    return jwt.encode(payload, issuer.key, algorithm="ES256", headers={"kid": issuer.kid})


# Offsets from the first check, in seconds, around each claim's edge with the leeway applied.
_EDGES = [-LEEWAY - 0.5, -LEEWAY, -0.5, 0.0, 59.5, LEEWAY + 59.5, LEEWAY + 60, LEEWAY + 60.5]


@pytest.mark.parametrize("claims", ["int", "float", "no-nbf", "iat-only", "late-nbf"])
@pytest.mark.parametrize("offset", _EDGES)
async def test_cached_answer_matches_pyjwt_at_every_time(
    issuer: LocalTokenIssuer, source: SwappableKeys, clock: Clock, claims: str, offset: float
):
    """At any later (or, with a clock stepped back, earlier) time a hit answers as PyJWT would."""
    start = clock.now
    times = {
        "int": {"iat": int(start), "nbf": int(start), "exp": int(start) + 60},
        "float": {"iat": start - 0.7, "nbf": start + 0.7, "exp": start + 60.7},
        "no-nbf": {"exp": int(start) + 60},
        "iat-only": {"iat": int(start) + 20, "exp": int(start) + 60},
        "late-nbf": {"iat": int(start), "nbf": int(start) + 25, "exp": int(start) + 60},
    }[claims]
    token = _token_with(issuer, **times)
    cached = TokenVerifier(_settings(), source, clock=clock)
    assert await _reason(cached, token) == "accepted"
    clock.now = start + offset
    fresh = TokenVerifier(_settings(token_cache_size=0), source, clock=clock)
    assert await _reason(cached, token) == await _reason(fresh, token)


async def test_rotated_key_set_stops_cached_tokens(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy
):
    """Once the source hands out another key set, a cached token is checked against it afresh."""
    verifier = TokenVerifier(_settings(), source)
    token = issuer.mint()
    await verifier.verify(token)
    source.keys = JwksKeys(_issuer(issuer.kid).jwks())  # same kid, another key
    assert await _reason(verifier, token) == "bad-signature"
    assert verifier.cached_tokens == 0  # refused now: no longer remembered
    source.keys = JwksKeys(_issuer("k2").jwks())  # the token's key is gone
    assert await _reason(verifier, token) == "unknown-key"
    source.keys = JwksKeys(issuer.jwks())  # the same keys, fetched again
    calls = spy.calls
    assert await _reason(verifier, token) == "accepted"
    assert spy.calls == calls + 1
    assert await _reason(verifier, token) == "accepted"
    assert spy.calls == calls + 1


async def test_a_remembered_token_keeps_no_replaced_key_set_alive(
    issuer: LocalTokenIssuer, source: SwappableKeys
):
    """Once the source holds another key set, the remembered tokens do not keep the old one.

    Each remembered token held the key set it was checked with: a JWKS URL's set is replaced
    at every refresh, so tokens never used again kept up to `token_cache_size` old sets alive.
    """
    verifier = TokenVerifier(_settings(), source)
    await verifier.verify(issuer.mint())
    replaced = weakref.ref(source.keys)
    source.keys = JwksKeys(issuer.jwks())
    gc.collect()
    assert replaced() is None
    assert verifier.cached_tokens == 1


async def test_refusals_are_not_cached(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy
):
    """A refused token is checked in full each time it comes, with the same reason."""
    verifier = TokenVerifier(_settings(), source)
    forged = _issuer(issuer.kid).mint()
    foreign = issuer.mint(aud="someone-else")
    for token, reason in [(forged, "bad-signature"), (foreign, "wrong-audience")]:
        before = spy.calls
        assert [await _reason(verifier, token) for _ in range(3)] == [reason] * 3
        assert spy.calls == before + 3


async def test_each_token_string_is_its_own_entry(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy
):
    """Two tokens of one caller are two entries; a tampered copy of a cached token is refused."""
    verifier = TokenVerifier(_settings(), source)
    first = issuer.mint(subject="a", jti="1")
    second = issuer.mint(subject="a", jti="2")
    await verifier.verify(first)
    await verifier.verify(second)
    assert spy.calls == 2
    signed, signature = first.rsplit(".", 1)
    tampered = f"{signed}.{signature[:-4]}{'BBBB' if signature.endswith('AAAA') else 'AAAA'}"
    assert await _reason(verifier, tampered) == "bad-signature"
    await verifier.verify(first)
    await verifier.verify(second)
    assert spy.calls == 3


async def test_cache_holds_at_most_its_size_and_drops_the_least_recent(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy
):
    """With room for two tokens a third evicts the one used least recently."""
    verifier = TokenVerifier(_settings(token_cache_size=2), source)
    a, b, c = (issuer.mint(jti=name) for name in "abc")
    for token in (a, b, a, c):  # b is now the least recently used
        await verifier.verify(token)
    assert spy.calls == 3
    await verifier.verify(a)
    await verifier.verify(c)
    assert spy.calls == 3
    await verifier.verify(b)
    assert spy.calls == 4
    assert verifier.cached_tokens == 2


class EvictingKeys(SwappableKeys):
    """A key source that, asked once more, first lets another request use the verifier."""

    def __init__(self, keys: JwksKeys) -> None:
        super().__init__(keys)
        self.meanwhile: Callable[[], Awaitable[object]] | None = None

    async def keys_for(self, kid: str | None) -> JwksKeys:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            await meanwhile()
        return await super().keys_for(kid)


async def test_a_remembered_token_dropped_while_its_keys_are_looked_up_is_still_accepted(
    issuer: LocalTokenIssuer,
):
    """A token evicted by another request during its key lookup is accepted, not a 500.

    The lookup may wait (a JWKS refresh): meanwhile other tokens can push it out of the cache.
    """
    source = EvictingKeys(JwksKeys(issuer.jwks()))
    verifier = TokenVerifier(_settings(token_cache_size=1), source)
    first, other = issuer.mint(subject="backend-1"), issuer.mint(subject="backend-2")
    await verifier.verify(first)
    source.meanwhile = functools.partial(verifier.verify, other)
    caller = await verifier.verify(first)
    assert caller.subject == "backend-1"
    assert verifier.cached_tokens == 1  # the other token's, which pushed it out


@pytest.mark.parametrize("size", [0, 1])
async def test_size_zero_disables_the_cache(
    issuer: LocalTokenIssuer, source: SwappableKeys, spy: DecodeSpy, size: int
):
    """With token_cache_size=0 every use of a token checks its signature."""
    verifier = TokenVerifier(_settings(token_cache_size=size), source)
    token = issuer.mint()
    for _ in range(3):
        await verifier.verify(token)
    assert spy.calls == (3 if size == 0 else 1)
    assert verifier.cached_tokens == size


def test_cache_size_is_a_setting():
    """token_cache_size defaults to 1024 and refuses a negative size."""
    assert AuthSettings().token_cache_size == 1024
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        AuthSettings(token_cache_size=-1)
