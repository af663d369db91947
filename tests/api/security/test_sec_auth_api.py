"""Caller authentication and permissions on the public API."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import orjson
import pytest
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.settings import Settings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.security.conftest import AUDIENCE, ISSUER, bearer
from tests.api.signer_mocks import MockedSigners, commitment, eu_signing
from tests.support.gateway import SignerKeys, make_settings, running_gateway

V1_CALLS = [
    ("POST", "/v1/dcc"),
    ("POST", "/v1/domestic/static"),
    ("POST", "/v1/domestic/prepare-issue"),
    ("POST", "/v1/domestic/issue"),
    ("POST", "/v1/print"),
    ("POST", "/v1/credentials"),
    ("GET", "/v1/keys"),
]


def _metric(text: str, reason: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'gateway_auth_failures_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(("method", "path"), V1_CALLS)
async def test_every_v1_route_needs_a_token(secured, mocked: MockedSigners, method, path):
    """Every /v1 route answers 401 problem+json with a bare Bearer challenge without a token."""
    response = await secured.request(method, path, json={} if method == "POST" else None)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="signing-gateway"'
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
async def test_operational_routes_stay_open(secured, path):
    """Health, readiness, metrics and the API docs answer without a token."""
    response = await secured.get(path)
    assert response.status_code in {200, 503}, response.text
    assert response.status_code != 401


async def test_valid_token_signs(secured, mocked: MockedSigners, full_token):
    """A valid token with the scope gets its DCC signed."""
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(full_token))
    assert response.status_code == 200, response.text
    assert mocked.get_credential.call_count == 1


def _bad_tokens(issuer: LocalTokenIssuer) -> dict[str, tuple[str, str]]:
    now = time.time()
    other = LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE)  # same kid, another key
    public_pem = issuer.jwks()["keys"][0]
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60},
        key=None,
        algorithm="none",
    )
    return {
        "expired": (issuer.mint(now=now - 3600, ttl_seconds=60), "expired"),
        "future": (issuer.mint(now=now + 600), "not-yet-valid"),
        "audience": (issuer.mint(aud="someone-else"), "wrong-audience"),
        "issuer": (issuer.mint(iss="https://evil.test/"), "wrong-issuer"),
        "null-issuer": (  # PyJWT's encode checks iss: the payload is signed as it stands
            jwt.PyJWS().encode(
                orjson.dumps({"iss": None, "aud": AUDIENCE, "sub": "x", "exp": now + 60}),
                issuer.key,
                algorithm="ES256",
                headers={"kid": issuer.kid},
            ),
            "missing-claim",
        ),
        "signature": (other.mint(), "bad-signature"),
        "none": (unsigned, "algorithm"),
        "hmac-with-public-key": (
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60},
                key=str(public_pem["x"]).encode() * 2,
                algorithm="HS256",
                headers={"kid": issuer.kid},
            ),
            "algorithm",
        ),
        "unknown-kid": (
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60},
                issuer.key,
                algorithm="ES256",
                headers={"kid": "rotated-away"},
            ),
            "unknown-key",
        ),
        "iat-not-a-number": (
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60, "iat": "abc"},
                issuer.key,
                algorithm="ES256",
                headers={"kid": issuer.kid},
            ),
            "invalid",
        ),
        "garbage": ("not.a.token", "malformed"),
        "no-subject": (issuer.mint(sub=""), "missing-claim"),
        "no-subject-claim": (
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60},
                issuer.key,
                algorithm="ES256",
                headers={"kid": issuer.kid},
            ),
            "missing-claim",
        ),
        "no-expiry": (
            jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x"},
                issuer.key,
                algorithm="ES256",
                headers={"kid": issuer.kid},
            ),
            "missing-claim",
        ),
        "huge": ("a" * 10_000, "malformed"),
        "huge-but-signed": (issuer.mint(note="a" * 10_000), "malformed"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "future",
        "audience",
        "issuer",
        "null-issuer",
        "signature",
        "none",
        "hmac-with-public-key",
        "unknown-kid",
        "iat-not-a-number",
        "garbage",
        "no-subject",
        "no-subject-claim",
        "no-expiry",
        "huge",
        "huge-but-signed",
    ],
)
async def test_bad_tokens_are_refused(secured, mocked: MockedSigners, token_issuer, case):
    """Expired, early, foreign, forged, unsigned, HMAC, malformed tokens: 401 invalid_token."""
    token, reason = _bad_tokens(token_issuer)[case]
    before = _metric((await secured.get("/metrics")).text, reason)
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    body = assert_problem(response, 401, "unauthenticated")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token[:40] not in response.text
    assert token[:40] not in body["detail"]
    assert mocked.signing_calls() == 0
    after = _metric((await secured.get("/metrics")).text, reason)
    assert after == before + 1


@pytest.mark.parametrize("valid_first", [True, False])
async def test_a_repeated_authorization_field_is_refused_before_authentication(
    secured, mocked: MockedSigners, full_token, valid_first
):
    """Two Authorization fields: 400 naming it, whichever holds the valid token; no signer.

    A proxy in front may authenticate the other one than the gateway would take.
    """
    tokens = [f"Bearer {full_token}", "Bearer not-a-token"]
    fields = [("Authorization", token) for token in (tokens if valid_first else tokens[::-1])]
    before = (await secured.get("/metrics")).text
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=fields)
    body = assert_problem(response, 400, "bad-request")
    assert "Authorization header field is repeated" in body["detail"]
    assert full_token[:40] not in response.text
    assert "www-authenticate" not in response.headers
    assert mocked.signing_calls() == 0
    after = (await secured.get("/metrics")).text
    assert _metric(after, "malformed") == _metric(before, "malformed")  # never authenticated


async def test_leeway_accepts_slight_clock_skew(secured, mocked: MockedSigners, token_issuer):
    """A token that expired 10 s ago is still accepted within the 30 s leeway."""
    token = token_issuer.mint(scopes=["keys:read"], now=time.time() - 70, ttl_seconds=60)
    response = await secured.get("/v1/keys", headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_token_of_exactly_the_size_limit_is_accepted(
    test_keys: SignerKeys, mocked: MockedSigners, token_issuer, auth_settings
):
    """auth.max_token_bytes is the longest token checked: one byte less refuses it as malformed."""
    token = token_issuer.mint(scopes=["keys:read"])
    for limit, status in [(len(token), 200), (len(token) - 1, 401)]:
        auth = auth_settings.model_copy(update={"max_token_bytes": limit})
        async with running_gateway(make_settings(test_keys, auth=auth)) as client:
            response = await client.get("/v1/keys", headers=bearer(token))
            assert response.status_code == status, response.text
            metrics = (await client.get("/metrics")).text
            assert _metric(metrics, "malformed") == (1 if status == 401 else 0)


@pytest.mark.parametrize(
    ("path", "body", "scopes", "missing"),
    [
        ("/v1/dcc", eu_vaccination, ["domestic:sign"], "dcc:sign"),
        ("/v1/domestic/static", None, ["dcc:sign"], "domestic:sign"),
        ("/v1/domestic/prepare-issue", None, ["dcc:sign", "keys:read"], "domestic:sign"),
        ("/v1/keys", None, ["dcc:sign", "domestic:sign"], "keys:read"),
    ],
)
async def test_missing_scope_is_forbidden(  # noqa: PLR0917 - fixtures and parameters
    secured, mocked: MockedSigners, token_issuer, path, body, scopes, missing
):
    """A valid token without the route's scope gets 403 insufficient_scope naming it."""
    token = token_issuer.mint(scopes=scopes)
    if path == "/v1/domestic/static":
        payload = {"credentialAttributes": domestic_attributes()}
    else:
        payload = body() if body else None
    method = "GET" if path == "/v1/keys" else "POST"
    before = _metric((await secured.get("/metrics")).text, "insufficient-scope")
    response = await secured.request(method, path, json=payload, headers=bearer(token))
    assert_problem(response, 403, "forbidden")
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="signing-gateway", error="insufficient_scope", scope="{missing}"'
    )
    assert mocked.signing_calls() == 0
    after = _metric((await secured.get("/metrics")).text, "insufficient-scope")
    assert after == before + 1


async def test_print_needs_the_scope_of_each_part(secured, mocked: MockedSigners, token_issuer):
    """/v1/print needs dcc:sign for a European part, domestic:sign for a domestic one."""
    eu_only = bearer(token_issuer.mint(scopes=["dcc:sign"]))
    both = {"domestic": domestic_attributes(), "european": eu_test()}
    refused = await secured.post("/v1/print", json=both, headers=eu_only)
    assert_problem(refused, 403, "forbidden")
    assert mocked.signing_calls() == 0
    allowed = await secured.post("/v1/print", json={"european": eu_test()}, headers=eu_only)
    assert allowed.status_code == 200, allowed.text


async def test_credentials_need_only_the_scope_of_the_parts_they_hold(
    secured, mocked: MockedSigners, token_issuer
):
    """Pin that /v1/credentials asks dcc:sign only of a request with European parts.

    A domestic-only request carries an empty `european` list: a caller holding domestic:sign
    alone has its session's credentials issued, as one holding dcc:sign alone has EU ones.
    """
    domestic_only = bearer(token_issuer.mint(scopes=["domestic:sign"]))
    stoken = (await secured.post("/v1/domestic/prepare-issue", headers=domestic_only)).json()
    body = {
        "stoken": stoken["stoken"],
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
    }
    domestic = await secured.post("/v1/credentials", json=body, headers=domestic_only)
    assert domestic.status_code == 200, domestic.text
    eu_only = bearer(token_issuer.mint(scopes=["dcc:sign"]))
    european = await secured.post(
        "/v1/credentials", json={"european": [eu_test()]}, headers=eu_only
    )
    assert european.status_code == 200, european.text
    assert (mocked.issue.call_count, mocked.get_credential.call_count) == (1, 1)


@pytest.mark.parametrize(
    ("held", "missing"), [("dcc:sign", "domestic:sign"), ("domestic:sign", "dcc:sign")]
)
async def test_credentials_with_both_kinds_need_both_scopes(
    secured, mocked: MockedSigners, token_issuer, held, missing
):
    """Pin that /v1/credentials holding both kinds of part needs both scopes, as /v1/print.

    The 403 comes before the session is taken: the stoken still issues afterwards.
    """
    both_scopes = bearer(token_issuer.mint(scopes=["dcc:sign", "domestic:sign"]))
    stoken = (await secured.post("/v1/domestic/prepare-issue", headers=both_scopes)).json()
    body = {
        "stoken": stoken["stoken"],
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
        "european": [eu_test()],
    }
    one_scope = bearer(token_issuer.mint(scopes=[held]))
    refused = await secured.post("/v1/credentials", json=body, headers=one_scope)
    assert_problem(refused, 403, "forbidden")
    assert refused.headers["www-authenticate"] == (
        f'Bearer realm="signing-gateway", error="insufficient_scope", scope="{missing}"'
    )
    assert (mocked.issue.call_count, mocked.get_credential.call_count) == (0, 0)
    issued = await secured.post("/v1/credentials", json=body, headers=both_scopes)
    assert issued.status_code == 200, issued.text


#: A combined request with one kind of part, and the scope of the other kind.
OTHER_KINDS_SCOPE: dict[str, tuple[str, dict[str, Any], str]] = {
    "print-eu": ("/v1/print", {"european": eu_test()}, "domestic:sign"),
    "print-domestic": ("/v1/print", {"domestic": domestic_attributes()}, "dcc:sign"),
    "credentials-eu": ("/v1/credentials", {"european": [eu_test()]}, "domestic:sign"),
    "credentials-domestic": (
        "/v1/credentials",
        {"stoken": "s", "issueCommitmentMessage": "e30=", "domestic": [domestic_attributes()]},
        "dcc:sign",
    ),
}


@pytest.mark.parametrize("case", OTHER_KINDS_SCOPE.values(), ids=OTHER_KINDS_SCOPE.keys())
async def test_a_combined_part_needs_its_own_scope(
    secured, mocked: MockedSigners, token_issuer, case
):
    """The other kind's scope does not do, whichever combined route carries the part."""
    path, body, scope = case
    token = bearer(token_issuer.mint(scopes=[scope]))
    assert_problem(await secured.post(path, json=body, headers=token), 403, "forbidden")
    assert mocked.signing_calls() == 0


async def test_a_combined_part_refused_its_scope_is_counted_and_logged(
    secured, mocked: MockedSigners, token_issuer, json_log: Callable[[], list[dict[str, Any]]]
):
    """A 403 for a part's own scope counts as `insufficient-scope` and names the subject.

    The route checks it after reading the body (its needs show only there): the refusal must
    be counted and logged as the one its dependency makes before the body.
    """
    token = bearer(token_issuer.mint(subject="backend-4", scopes=["domestic:sign"]))
    before = _metric((await secured.get("/metrics")).text, "insufficient-scope")
    response = await secured.post("/v1/print", json={"european": eu_test()}, headers=token)
    assert_problem(response, 403, "forbidden")
    assert _metric((await secured.get("/metrics")).text, "insufficient-scope") == before + 1
    forbidden = [r for r in json_log() if r.get("security_event") == "auth-forbidden"]
    assert [(r["subject"], r["path"], r["missing_scope"]) for r in forbidden] == [
        ("backend-4", "/v1/print", "dcc:sign")
    ]
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("path", ["/v1/print", "/v1/credentials"])
@pytest.mark.parametrize("scopes", [["keys:read"], []], ids=["keys-read", "no-scope"])
async def test_combined_routes_refuse_callers_without_signing_scopes_before_the_body(
    secured, mocked: MockedSigners, token_issuer, path, scopes
):
    """A caller who may sign nothing gets 403, not the 422 its body would earn."""
    token = bearer(token_issuer.mint(scopes=scopes))
    response = await secured.post(path, json={"bogus": 1}, headers=token)
    problem = assert_problem(response, 403, "forbidden")
    assert problem["detail"] == "the token lacks one of the scopes: domestic:sign dcc:sign"
    assert response.headers["www-authenticate"] == (
        'Bearer realm="signing-gateway", error="insufficient_scope", scope="domestic:sign dcc:sign"'
    )
    assert mocked.signing_calls() == 0


async def test_iat_that_is_no_number_is_reported_as_invalid(secured, token_issuer):
    """An iat that is not a number is an invalid token, not one "issued in the future"."""
    token, _ = _bad_tokens(token_issuer)["iat-not-a-number"]
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    problem = assert_problem(response, 401, "unauthenticated")
    assert "future" not in problem["detail"]
    assert "future" not in response.headers["www-authenticate"]


async def test_credentials_eu_only_needs_only_dcc_scope(
    secured, mocked: MockedSigners, token_issuer
):
    """/v1/credentials with only European parts is allowed with dcc:sign alone."""
    token = bearer(token_issuer.mint(scopes=["dcc:sign"]))
    response = await secured.post("/v1/credentials", json={"european": [eu_test()]}, headers=token)
    assert response.status_code == 200, response.text


async def test_scope_claim_may_be_a_list(secured, mocked: MockedSigners, token_issuer):
    """A `scope` claim given as a JSON list grants the same permissions as a string."""
    token = token_issuer.mint(scope=["keys:read"])
    response = await secured.get("/v1/keys", headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_a_scope_list_grants_only_its_text_entries(
    secured, mocked: MockedSigners, token_issuer
):
    """Entries of a `scope` list that are not text (a number, an object, null) grant nothing."""
    token = token_issuer.mint(scope=["keys:read", 7, {"dcc:sign": True}, None])
    response = await secured.get("/v1/keys", headers=bearer(token))
    assert response.status_code == 200, response.text
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    assert_problem(response, 403, "forbidden")
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("claim", [{"keys:read": True}, 7, True], ids=["object", "number", "true"])
async def test_a_scope_claim_neither_text_nor_list_grants_nothing(
    secured, mocked: MockedSigners, token_issuer, claim
):
    """A `scope` claim that is neither a string nor a list grants no scope at all: 403."""
    response = await secured.get("/v1/keys", headers=bearer(token_issuer.mint(scope=claim)))
    assert_problem(response, 403, "forbidden")


@pytest.mark.parametrize("separator", ["\t", "\n", "\x1f", "\x85", "\u00a0", "\u2003"], ids=repr)
async def test_scopes_are_separated_by_spaces_only(
    secured, mocked: MockedSigners, token_issuer, separator
):
    """A scope string is split at spaces (RFC 6749 3.3), not at any other white space.

    Split as Python splits white space, `x<U+00A0>keys:read`, one scope to the identity
    provider, granted `keys:read`.
    """
    spaced = await secured.get("/v1/keys", headers=bearer(token_issuer.mint(scope="x  keys:read ")))
    assert spaced.status_code == 200, spaced.text
    token = token_issuer.mint(scope=f"x{separator}keys:read")
    response = await secured.get("/v1/keys", headers=bearer(token))
    assert_problem(response, 403, "forbidden")


def test_jwt_mode_needs_keys_audience_and_issuer():
    """Settings refuse auth.mode=jwt without a JWKS, audience and issuer (serve will not start)."""
    with pytest.raises(ValidationError, match="caller authentication is not configured"):
        Settings(auth=AuthSettings(mode="jwt", audience="a"))


def test_disabled_auth_refused_in_production():
    """Settings refuse auth.mode=disabled when environment is production."""
    with pytest.raises(ValidationError, match=r"auth\.mode=disabled is for local use"):
        Settings(environment="production", auth=AuthSettings(mode="disabled"))


def test_plain_http_jwks_url_refused():
    """A JWKS URL over plain http to a non-loopback host is refused."""
    with pytest.raises(ValidationError, match="https"):
        AuthSettings(jwks_url="http://idp.example/jwks", audience="a", issuer="i")


def test_settings_from_environment_need_auth(monkeypatch):
    """`serve` reads settings from the environment; without auth settings it refuses to start."""
    monkeypatch.delenv("SIGNING_GATEWAY_AUTH__MODE", raising=False)
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    assert Settings().auth.mode == "disabled"


async def test_unauthenticated_client_gets_no_signer_url(secured):
    """A 401 names neither a signer nor the JWKS location."""
    response = await secured.post("/v1/dcc", json={}, headers=bearer("x.y.z"))
    assert "signer.test" not in response.text
    assert "jwks" not in response.text.lower()


async def test_openapi_declares_bearer_security(secured):
    """The OpenAPI document declares the bearer scheme on /v1 operations."""
    spec = (await secured.get("/openapi.json")).json()
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())
    # The scheme keeps the name clients know it by, on every /v1 operation.
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    operations = [
        op for path, ops in spec["paths"].items() if path.startswith("/v1") for op in ops.values()
    ]
    assert operations
    assert all(op["security"] == [{"HTTPBearer": []}] for op in operations)
    assert spec["paths"]["/v1/dcc"]["post"]["security"]
    assert {"401", "403", "413", "415"} <= spec["paths"]["/v1/dcc"]["post"]["responses"].keys()
    # Every /v1 operation checks the bearer token and its scope: both refusals are documented.
    assert all({"401", "403"} <= op["responses"].keys() for op in operations)


@pytest.mark.parametrize("client_claim", ["client_id", "azp"])
async def test_caller_reaches_the_audit_record(
    secured, mocked: MockedSigners, token_issuer, audit_file, client_claim
):
    """The token's subject and client (`client_id`, or OIDC's `azp`) are the issuance's caller."""
    token = token_issuer.mint(subject="backend-1", scopes=["dcc:sign"], **{client_claim: "cc-x"})
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    assert response.status_code == 200
    text = audit_file.read_text()
    assert '"caller":"backend-1"' in text
    assert '"clientId":"cc-x"' in text


@pytest.mark.parametrize(
    ("claims", "client"),
    [
        ({"client_id": None, "azp": "cc-y"}, "cc-y"),
        ({"client_id": "", "azp": "cc-y"}, "cc-y"),
        ({"client_id": 7, "azp": "cc-y"}, "cc-y"),
        ({"client_id": "cc-x", "azp": "cc-y"}, "cc-x"),
        ({"client_id": None, "azp": ""}, None),
    ],
    ids=["null", "empty", "number", "both", "neither"],
)
async def test_a_client_id_that_names_no_client_leaves_the_record_to_azp(
    secured, mocked: MockedSigners, token_issuer, audit_file, *, claims, client
):
    """A `client_id` claim that is null, empty or not text names no client: `azp` is read.

    Before, such a `client_id` hid the `azp` beside it, and the record named no client.
    """
    token = token_issuer.mint(subject="backend-1", scopes=["dcc:sign"], **claims)
    response = await secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(token))
    assert response.status_code == 200
    [record] = [orjson.loads(line) for line in audit_file.read_bytes().splitlines()]
    assert record["clientId"] == client


async def test_no_token_error_description_leaks_nothing(secured):
    """The challenge's description is one of a fixed set, not the token content."""
    response = await secured.get("/v1/keys", headers=bearer("eyJhbGciOiJub25lIn0.e30."))
    assert_problem(response, 401)
    challenge = response.headers["www-authenticate"]
    assert "e30" not in challenge


async def test_a_request_at_its_signer_holds_no_copy_of_its_token(
    secured, mocked: MockedSigners, full_token: str, test_keys: SignerKeys
):
    """While a request waits on its signer, nothing of its authentication holds the token text.

    FastAPI keeps a dependency's result until the request ends; `HTTPBearer`'s was a model
    holding the token (about 1 KB a request with a long token, for as long as the signer
    takes). The gateway's own bearer dependency hands over the caller only.
    """
    at_signer = asyncio.Event()
    release = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        at_signer.set()
        await release.wait()
        return eu_signing(test_keys)(request)

    mocked.get_credential.mock(side_effect=held)
    sent = asyncio.create_task(
        secured.post("/v1/dcc", json=eu_vaccination(), headers=bearer(full_token))
    )
    await asyncio.wait_for(at_signer.wait(), timeout=10)
    held_models = [o for o in gc.get_objects() if isinstance(o, HTTPAuthorizationCredentials)]
    release.set()
    response = await sent
    assert response.status_code == 200, response.text
    assert held_models == []


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
async def test_the_bearer_scheme_is_read_in_any_case(secured, full_token, scheme):
    """The scheme name is case-insensitive (RFC 9110 11.1): `bearer <token>` authenticates."""
    response = await secured.get("/v1/keys", headers={"Authorization": f"{scheme} {full_token}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("sent", ["basic", "token", "bare", "query"])
async def test_a_token_sent_other_than_as_a_bearer_field_is_missing(secured, full_token, sent):
    """A token under another scheme, alone, or in the query is no token: 401 `missing`.

    Only `Authorization: Bearer` carries one; the query (`access_token`, RFC 6750 2.3) would put
    it in access logs.
    """
    headers, params = {}, {}
    if sent == "query":
        params["access_token"] = full_token
    else:
        headers["Authorization"] = {"basic": "Basic ", "token": "Token ", "bare": ""}[sent]
        headers["Authorization"] += full_token
    before = _metric((await secured.get("/metrics")).text, "missing")
    response = await secured.get("/v1/keys", headers=headers, params=params)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="signing-gateway"'
    assert _metric((await secured.get("/metrics")).text, "missing") == before + 1


async def test_the_bearer_scheme_without_a_token_is_no_token(secured):
    """`Authorization: Bearer` with nothing after it is 401 `missing`: a bare challenge.

    RFC 6750 3.1 gives no error code to a request that carries no token; `invalid_token` would
    tell the caller its token was refused.
    """
    before = _metric((await secured.get("/metrics")).text, "missing")
    response = await secured.get("/v1/keys", headers={"Authorization": "Bearer"})
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="signing-gateway"'
    assert _metric((await secured.get("/metrics")).text, "missing") == before + 1
