"""The token type check (`auth.token_types`): the header's `typ`, compared as a media type."""

from __future__ import annotations

import pytest

from signing_gateway.security import auth
from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.errors import AuthenticationFailed
from signing_gateway.security.jwks import JwksKeys
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.unit.security.test_sec_token_verifier import AUDIENCE, ISSUER, FixedKeys


@pytest.fixture
def issuer() -> LocalTokenIssuer:
    """The token issuer of a test."""
    return LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE)


def _verifier(issuer: LocalTokenIssuer, token_types: list[str]) -> TokenVerifier:
    settings = AuthSettings(audience=AUDIENCE, issuer=ISSUER, token_types=token_types)
    return TokenVerifier(settings, FixedKeys(JwksKeys(issuer.jwks())))


async def _refusal(verifier: TokenVerifier, token: str) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as refused:
        await verifier.verify(token)
    return refused.value


@pytest.mark.parametrize(
    ("accepted", "typ"),
    [
        (["at+jwt"], "at+jwt"),
        (["at+jwt"], "application/at+jwt"),
        (["at+jwt"], "AT+JWT"),
        (["at+jwt"], "Application/At+Jwt"),
        (["application/at+jwt"], "at+jwt"),
        (["APPLICATION/AT+JWT"], "at+JWT"),
        (["at+jwt", "JWT"], "jwt"),
    ],
)
async def test_a_token_of_an_accepted_type_is_accepted_in_any_form_of_it(
    issuer: LocalTokenIssuer, accepted: list[str], typ: str
):
    """A `typ` is a media type: any case, its `application/` prefix there or not (RFC 7515).

    The same verifier refuses a token of another type: the form is taken by the check.
    """
    verifier = _verifier(issuer, accepted)
    caller = await verifier.verify(issuer.mint(scopes=["keys:read"], header_typ=typ))
    assert caller.scopes == {"keys:read"}
    other = issuer.mint(scopes=["keys:read"], header_typ="dpop+jwt")
    assert (await _refusal(verifier, other)).reason == "wrong-type"


@pytest.mark.parametrize(
    "typ",
    [
        "JWT",  # what an OpenID Connect ID token carries
        None,
        "at+jwt ",
        "jwt+at",
        "text/at+jwt",
        "application/application/at+jwt",
        "at+jwt;q=1",
    ],
    ids=repr,
)
async def test_a_token_of_another_type_or_none_is_refused_as_wrong_type(
    issuer: LocalTokenIssuer, typ: str | None
):
    """With `at+jwt` required, an ID token's `JWT`, no `typ` or another type is refused 401."""
    token = issuer.mint(scopes=["keys:read"], header_typ=typ)
    refused = await _refusal(_verifier(issuer, ["at+jwt"]), token)
    assert (refused.status, refused.reason, refused.detail) == (
        401,
        "wrong-type",
        "the token type is not accepted",
    )
    assert refused.headers() == {
        "WWW-Authenticate": 'Bearer realm="signing-gateway", error="invalid_token", '
        'error_description="the token type is not accepted"'
    }


async def test_a_type_matching_only_once_lowercased_beyond_ascii_is_refused(
    issuer: LocalTokenIssuer,
):
    """Media types compare in ASCII: a Kelvin sign (U+212A) lowercases to `k`, and is no `K`."""
    token = issuer.mint(scopes=["keys:read"], header_typ="to\u212aen-introspection+jwt")
    refused = await _refusal(_verifier(issuer, ["token-introspection+jwt"]), token)
    assert refused.reason == "wrong-type"


@pytest.mark.parametrize("typ", [["at+jwt"], {"at+jwt": 1}, 1, True])
async def test_a_type_that_is_not_text_is_refused_as_wrong_type(
    issuer: LocalTokenIssuer, typ: object
):
    """A `typ` that is a list, an object, a number or a boolean is refused 401, not a 500."""
    token = issuer.mint(scopes=["keys:read"], header_typ=typ)  # type: ignore[arg-type]
    refused = await _refusal(_verifier(issuer, ["at+jwt"]), token)
    assert refused.reason == "wrong-type"


@pytest.mark.parametrize("typ", ["JWT", None, "at+jwt", "anything/else"], ids=repr)
async def test_by_default_a_token_of_any_type_or_none_is_accepted(
    issuer: LocalTokenIssuer, typ: str | None
):
    """`auth.token_types` is empty unless set, and then no token is refused for its type."""
    settings = AuthSettings(audience=AUDIENCE, issuer=ISSUER)
    assert settings.token_types == []
    verifier = TokenVerifier(settings, FixedKeys(JwksKeys(issuer.jwks())))
    caller = await verifier.verify(issuer.mint(scopes=["keys:read"], header_typ=typ))
    assert caller.scopes == {"keys:read"}


def test_each_accepted_type_is_known_with_and_without_its_application_prefix() -> None:
    """Pin the forms a request's `typ`, lowercased, is looked up in.

    `application/` may be left out only where no other `/` follows (RFC 7515 4.1.9): a type
    of another top-level type is known in its one form.
    """
    assert auth.accepted_token_types(["AT+JWT", "application/JWT", "text/x-token"]) == {
        "at+jwt",
        "application/at+jwt",
        "jwt",
        "application/jwt",
        "text/x-token",
    }
    assert auth.accepted_token_types([]) == frozenset()
