"""The verifier on a token checked in full: the claim scopes come from, a source without keys."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.errors import AuthenticationFailed
from signing_gateway.security.jwks import JwksError, JwksKeys
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer

AUDIENCE = "signing-gateway"
ISSUER = "https://idp.test/"


class FixedKeys:
    """A key source holding one key set, or (None) none at all, as a JWKS URL before its fetch."""

    def __init__(self, keys: JwksKeys | None) -> None:
        self.keys = keys

    async def keys_for(self, kid: str | None) -> JwksKeys:  # noqa: ARG002 - one set
        if self.keys is None:
            raise JwksError("no JWKS loaded")
        return self.keys


@pytest.fixture
def issuer() -> LocalTokenIssuer:
    """The token issuer of a test."""
    return LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE)


def _verifier(issuer: LocalTokenIssuer | None, **settings: str) -> TokenVerifier:
    keys = None if issuer is None else JwksKeys(issuer.jwks())
    auth = AuthSettings(audience=AUDIENCE, issuer=ISSUER, **settings)
    return TokenVerifier(auth, FixedKeys(keys))


async def test_a_key_source_without_keys_refuses_every_token_as_no_keys(issuer: LocalTokenIssuer):
    """With no key set to look in, a token is refused 401 `no-keys`, not as an unknown key."""
    with pytest.raises(AuthenticationFailed) as refused:
        await _verifier(None).verify(issuer.mint(scopes=["keys:read"]))
    assert (refused.value.status, refused.value.reason) == (401, "no-keys")


async def test_scopes_are_read_from_the_claim_the_settings_name(issuer: LocalTokenIssuer):
    """With `auth.scope_claim` set, that claim grants the scopes, and `scope` grants none."""
    verifier = _verifier(issuer, scope_claim="permissions")
    token = issuer.mint(scopes=["dcc:sign"], permissions="keys:read domestic:sign")
    caller = await verifier.verify(token)
    assert caller.scopes == {"keys:read", "domestic:sign"}


def test_a_minted_token_is_valid_from_now_for_its_lifetime(issuer: LocalTokenIssuer):
    """The local issuer's token: issued and valid from `now`, expiring `ttl_seconds` later."""
    token = issuer.mint(now=1_000_000.7, ttl_seconds=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (1_000_000, 1_000_000, 1_000_060)


class _CountingKeys(FixedKeys):
    """`FixedKeys` that counts how often it was asked."""

    def __init__(self, keys: JwksKeys | None) -> None:
        super().__init__(keys)
        self.asked = 0

    async def keys_for(self, kid: str | None) -> JwksKeys:
        self.asked += 1
        return await super().keys_for(kid)


def _with_header(token: str, header: dict[str, object]) -> str:
    """`token` with its header replaced by `header` (the signature no longer fits)."""
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return ".".join([encoded, *token.split(".")[1:]])


@pytest.mark.parametrize("kid", [None, 7, 1.5, True, ["k"], {"k": 1}])
async def test_a_kid_that_is_not_a_string_is_malformed_before_any_key_is_looked_up(
    issuer: LocalTokenIssuer, kid: object
):
    """Pin PyJWT's refusal of a non-string kid (the verifier has no check of its own)."""
    keys = _CountingKeys(JwksKeys(issuer.jwks()))
    verifier = TokenVerifier(AuthSettings(audience=AUDIENCE, issuer=ISSUER), keys)
    token = _with_header(issuer.mint(scopes=["keys:read"]), {"alg": "ES256", "kid": kid})
    with pytest.raises(AuthenticationFailed) as refused:
        await verifier.verify(token)
    assert (refused.value.status, refused.value.reason) == (401, "malformed")
    assert keys.asked == 0


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
async def test_a_time_claim_that_is_no_finite_number_is_refused_401(
    issuer: LocalTokenIssuer, claim: str, value: float
):
    """A signed token whose exp, iat or nbf reads `Infinity` or `NaN` is refused, not a 500.

    Python's JSON reader takes both, and the verifier keeps `int()` of each time claim, which
    raises OverflowError or ValueError on them: PyJWT refuses them first (a claim that is no
    integer), and this holds it there.
    """
    token = issuer.mint(scopes=["keys:read"], **{claim: value})
    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()
    assert f'"{claim}":{json.dumps(value)}' in payload.replace(" ", "")
    with pytest.raises(AuthenticationFailed) as refused:
        await _verifier(issuer).verify(token)
    assert (refused.value.status, refused.value.reason) == (401, "invalid")


@pytest.mark.parametrize("alg", [["ES256"], {"ES256": True}])
async def test_an_algorithm_that_is_not_a_string_is_refused_401(
    issuer: LocalTokenIssuer, alg: object
):
    """A header whose alg is a list or an object is refused `algorithm`, not a 500.

    PyJWT hands such a header back as it stands; looking it up in the allowed algorithms
    would raise TypeError (it cannot be hashed) without the verifier's own type check.
    """
    keys = _CountingKeys(JwksKeys(issuer.jwks()))
    verifier = TokenVerifier(AuthSettings(audience=AUDIENCE, issuer=ISSUER), keys)
    token = _with_header(issuer.mint(scopes=["keys:read"]), {"alg": alg, "kid": issuer.kid})
    with pytest.raises(AuthenticationFailed) as refused:
        await verifier.verify(token)
    assert (refused.value.status, refused.value.reason) == (401, "algorithm")
    assert keys.asked == 0


async def test_an_iat_that_is_not_a_number_is_refused_saying_so(issuer: LocalTokenIssuer):
    """An iat that is text is refused `invalid` with a detail naming the iat claim."""
    token = issuer.mint(scopes=["keys:read"], iat="yesterday")
    with pytest.raises(AuthenticationFailed) as refused:
        await _verifier(issuer).verify(token)
    assert (refused.value.reason, refused.value.detail) == (
        "invalid",
        "the token's iat claim is not a number",
    )


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", lambda now: str(now + 60)),
        ("nbf", lambda now: str(now - 60)),
        ("iat", lambda now: str(now - 60)),
        ("nbf", lambda _: True),
        ("iat", lambda _: False),
        ("exp", lambda _: True),
        ("exp", lambda now: str(now - 3600)),
        ("nbf", lambda now: str(now + 3600)),
    ],
    ids=[
        *("exp-string", "nbf-string", "iat-string", "nbf-true", "iat-false"),
        *("exp-true", "exp-past-string", "nbf-future-string"),
    ],
)
async def test_a_time_claim_that_is_not_a_json_number_is_refused_401(
    issuer: LocalTokenIssuer, claim: str, value
):
    """A NumericDate is a JSON number (RFC 7519): text or a boolean is refused `invalid`.

    PyJWT takes `int()` of the claim, so `"exp": "1796083200"` and `"iat": false` passed, and
    `"exp": true` (1) was refused as expired.
    """
    now = int(time.time())
    token = issuer.mint(scopes=["keys:read"], now=now, **{claim: value(now)})
    with pytest.raises(AuthenticationFailed) as refused:
        await _verifier(issuer).verify(token)
    assert (refused.value.status, refused.value.reason, refused.value.detail) == (
        401,
        "invalid",
        f"the token's {claim} claim is not a number",
    )


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_time_claim_with_a_fraction_is_accepted(issuer: LocalTokenIssuer, claim: str):
    """A NumericDate may hold a fraction of a second (RFC 7519 section 2): a float is taken."""
    now = int(time.time())
    stated = {"exp": now + 60.5, "nbf": now - 0.5, "iat": now - 0.25}[claim]
    token = issuer.mint(scopes=["keys:read"], now=now, **{claim: stated})
    caller = await _verifier(issuer).verify(token)
    assert caller.scopes == {"keys:read"}
