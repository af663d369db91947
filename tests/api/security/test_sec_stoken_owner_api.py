"""An issuance session belongs to the caller that opened it: another caller's stoken is unknown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from signing_gateway.security.settings import AuditSettings, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes
from tests.api.observability.scrape import scrape
from tests.api.security.conftest import bearer
from tests.api.signer_mocks import MockedSigners, commitment, domestic_issuing
from tests.support.audit import records_by_attempt
from tests.support.gateway import DOMESTIC_SIGNER_URL, SignerKeys, make_settings, running_gateway

OWNER, OTHER = "backend-1", "backend-2"
#: A stoken no gateway opened (a UUID, as the gateway's are).
UNKNOWN = "3f1c0a4e-0000-4000-8000-000000000000"
ROUTES = ["/v1/domestic/issue", "/v1/credentials"]


def _token(issuer: LocalTokenIssuer, subject: str, **claims: Any) -> dict[str, str]:
    """The Authorization header of a caller `subject` holding both signing scopes."""
    return bearer(issuer.mint(subject=subject, scopes=["domestic:sign", "dcc:sign"], **claims))


async def _open(client: httpx.AsyncClient, caller: dict[str, str]) -> str:
    prepared = await client.post("/v1/domestic/prepare-issue", headers=caller)
    assert prepared.status_code == 200, prepared.text
    stoken: str = prepared.json()["stoken"]
    return stoken


def _body(route: str, stoken: str) -> dict[str, Any]:
    """A request of `route` using the session of `stoken` for one domestic credential."""
    if route == "/v1/credentials":
        return {
            "stoken": stoken,
            "issueCommitmentMessage": commitment(),
            "domestic": [domestic_attributes()],
            "european": [],
        }
    return {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }


def _answer_as_seen(response: httpx.Response) -> tuple[Any, ...]:
    """What a refusal tells its caller, less the request id that differs from one to the next."""
    body = assert_problem(response, 401, "stoken-invalid")
    del body["requestId"]
    return body, response.headers["www-authenticate"]


@pytest.mark.parametrize("route", ROUTES)
async def test_another_callers_stoken_is_answered_as_an_unknown_one(
    secured: httpx.AsyncClient, mocked: MockedSigners, token_issuer: LocalTokenIssuer, route: str
):
    """Pin that a session serves only its opener: to another it is an unknown stoken.

    The same 401, title and detail as a stoken no gateway opened, no signer call, and the
    owner still has its session afterwards. Before, any caller with the route's scope used
    another's session (200), and its owner then got the 401.
    """
    owner, other = _token(token_issuer, OWNER), _token(token_issuer, OTHER)
    stoken = await _open(secured, owner)
    foreign = await secured.post(route, json=_body(route, stoken), headers=other)
    assert foreign.status_code == 401, f"another caller's stoken: {foreign.status_code}"
    unknown = await secured.post(route, json=_body(route, UNKNOWN), headers=other)
    assert _answer_as_seen(foreign) == _answer_as_seen(unknown)
    assert stoken not in foreign.text
    assert OWNER not in foreign.text
    assert mocked.issue.call_count == 0
    used = await secured.post(route, json=_body(route, stoken), headers=owner)
    assert used.status_code == 200, used.text
    assert mocked.issue.call_count == 1


async def test_a_caller_keeps_its_sessions_across_its_tokens(
    secured: httpx.AsyncClient, mocked: MockedSigners, token_issuer: LocalTokenIssuer
):
    """The session is the subject's, not the token's: a renewed token (same `sub`) uses it."""
    stoken = await _open(secured, _token(token_issuer, OWNER, jti="first"))
    renewed = _token(token_issuer, OWNER, jti="second", client_id="cc-backend")
    route = "/v1/domestic/issue"
    used = await secured.post(route, json=_body(route, stoken), headers=renewed)
    assert used.status_code == 200, used.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_the_audit_record_and_the_log_tell_another_callers_stoken_from_an_unknown_one(  # noqa: PLR0917 - fixtures and parameter
    secured: httpx.AsyncClient,
    mocked: MockedSigners,
    token_issuer: LocalTokenIssuer,
    audit_file: Path,
    json_log: Callable[[], list[dict[str, Any]]],
    route: str,
):
    """Pin how an operator tells the two refusals apart, the caller being told the same.

    The audit record's `cause`, a WARNING security event naming the caller that presented the
    stoken and the one that opened it (never the stoken itself), and the refusal counter.
    """
    stoken = await _open(secured, _token(token_issuer, OWNER))
    other = {**_token(token_issuer, OTHER), "X-Request-ID": "stoken-of-another"}
    assert (await secured.post(route, json=_body(route, stoken), headers=other)).status_code == 401
    assert (await secured.post(route, json=_body(route, UNKNOWN), headers=other)).status_code == 401
    records = [r for attempt in records_by_attempt(audit_file).values() for r in attempt]
    refused = [(r["caller"], r["status"], r.get("cause")) for r in records if r["status"] == 401]
    assert refused == [(OTHER, 401, "stoken-not-owned"), (OTHER, 401, "stoken-unknown")]
    written = json_log()
    [event] = [r for r in written if r.get("security_event") == "stoken-not-owned"]
    assert event["logger"] == "signing_gateway.security"
    assert event["level"] == "warning"
    assert event["event"] == "issuance session presented by another caller; refused as unknown"
    assert (event["subject"], event["owner"]) == (OTHER, OWNER)
    assert event["request_id"] == "stoken-of-another"
    assert not any(stoken in orjson.dumps(r).decode() for r in written)
    metrics = await scrape(secured)
    counted = {
        cause: metrics.value("gateway_stoken_refusals_total", cause=cause)
        for cause in ("stoken-not-owned", "stoken-unknown")
    }
    assert counted == {"stoken-not-owned": 1, "stoken-unknown": 1}
    assert mocked.issue.call_count == 0


@pytest.fixture
async def one_attempt(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings, audit_file: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway requiring tokens whose domestic signer gets one attempt per call."""
    domestic = SignerSettings(
        url=DOMESTIC_SIGNER_URL,
        allow_plain_http=True,
        resilience=ResilienceSettings(max_attempts=1),
    )
    settings = make_settings(
        test_keys,
        auth=auth_settings,
        audit=AuditSettings(file=audit_file),
        domestic_signer=domestic,
    )
    async with running_gateway(settings) as client:
        yield client


@pytest.mark.parametrize("route", ROUTES)
async def test_a_session_put_back_after_an_unsent_issue_is_still_its_openers(
    one_attempt: httpx.AsyncClient,
    mocked: MockedSigners,
    test_keys: SignerKeys,
    token_issuer: LocalTokenIssuer,
    route: str,
):
    """Pin that the put-back of a call the signer throttled keeps the session's owner.

    The retry its owner is advised works; another caller presenting it meanwhile is refused
    as for an unknown stoken, and reaches no signer.
    """
    throttled = httpx.Response(503, text="busy", headers={"Retry-After": "1"})
    mocked.issue.mock(side_effect=[throttled, domestic_issuing(test_keys)])
    owner, other = _token(token_issuer, OWNER), _token(token_issuer, OTHER)
    stoken = await _open(one_attempt, owner)
    first = await one_attempt.post(route, json=_body(route, stoken), headers=owner)
    assert (
        "retry with the same stoken" in assert_problem(first, 503, "signer-unavailable")["detail"]
    )
    foreign = await one_attempt.post(route, json=_body(route, stoken), headers=other)
    assert_problem(foreign, 401, "stoken-invalid")
    assert mocked.issue.call_count == 1
    retry = await one_attempt.post(route, json=_body(route, stoken), headers=owner)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 2
