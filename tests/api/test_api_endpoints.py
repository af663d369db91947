"""Every public endpoint against mocked signers: the answers a caller sees on the happy path."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import httpx
import pytest
import respx
from jsonschema import Draft202012Validator
from pydantic import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from signing_gateway.api import examples, health
from signing_gateway.issuance import domestic as domestic_issuance
from signing_gateway.settings import (
    MAX_VALID_FROM_OFFSET_HOURS,
    MAX_VALIDITY_DAYS,
    DomesticPolicySettings,
    EuPolicySettings,
)
from tests.api.assertions import assert_problem, error_locs
from tests.api.bodies import domestic_attributes, eu_recovery, eu_test, eu_vaccination
from tests.api.readiness import readyz_when_probed
from tests.api.signer_mocks import (
    NONCE,
    MockedSigners,
    commitment,
    decode_b64_json,
    prepare_issuing,
)
from tests.support.credentials import b64
from tests.support.gateway import SignerKeys, make_settings, running_gateway


@pytest.mark.parametrize(
    ("body", "usage"),
    [(eu_vaccination(), "vaccination"), (eu_test(), "test"), (eu_recovery(), "recovery")],
    ids=["v", "t", "r"],
)
async def test_dcc_each_group(gateway, mocked: MockedSigners, test_keys: SignerKeys, body, usage):
    """/v1/dcc signs a v, t and r DCC with the DSC of its key usage and returns its kid."""
    response = await gateway.post("/v1/dcc", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["credential"].startswith("HC1:")
    assert out["keyUsage"] == usage
    assert out["kid"] == b64(test_keys.dscs[usage].kid)
    assert _signer_answer(mocked.get_credential) == (out["credential"], out["proofIdentifier"])
    assert datetime.fromisoformat(out["expirationTime"]) > datetime.now(UTC)
    assert mocked.get_credential.call_count == 1


def _signer_answer(route: respx.Route) -> tuple[str, str]:
    """The credential (or QR) and proof identifier the signer answered the route's last call."""
    answer = route.calls.last.response.json()
    return answer.get("credential", answer.get("qr")), answer["proofIdentifier"]


NEXT_YEAR = datetime.now(UTC).year + 1


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (f"{NEXT_YEAR}-05-20T00:00:00z", f"{NEXT_YEAR}-05-20T00:00:00Z"),
        (f"{NEXT_YEAR}-05-20t02:00:00+02:00", f"{NEXT_YEAR}-05-20T00:00:00Z"),
        (f"{NEXT_YEAR}-06-30T23:59:60Z", f"{NEXT_YEAR}-06-30T23:59:59Z"),
    ],
    ids=["lower-z", "lower-t", "leap-second"],
)
async def test_dcc_takes_every_rfc3339_expiration_form(gateway, mocked: MockedSigners, given, sent):
    """/v1/dcc takes an expirationTime in any RFC 3339 form; signer and caller see UTC ...Z."""
    response = await gateway.post("/v1/dcc", json=eu_vaccination(expirationTime=given))
    assert response.status_code == 200, response.text
    request = json.loads(mocked.get_credential.calls.last.request.content)
    assert (request["expirationTime"], response.json()["expirationTime"]) == (sent, sent)


async def test_domestic_static(gateway, mocked: MockedSigners):
    """/v1/domestic/static returns the signer's verified NL2 QR and proof identifier."""
    body = {"credentialAttributes": domestic_attributes()}
    response = await gateway.post("/v1/domestic/static", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["qr"].startswith("NL2:")
    assert _signer_answer(mocked.issue_static) == (out["qr"], out["proofIdentifier"])
    assert mocked.issue_static.call_count == 1


async def _prepare(gateway) -> dict:
    response = await gateway.post("/v1/domestic/prepare-issue")
    assert response.status_code == 200, response.text
    return response.json()


async def test_prepare_issue_gives_stoken_and_signer_message(gateway, mocked: MockedSigners):
    """prepare-issue answers a UUID stoken and the signer's message in base64."""
    out = await _prepare(gateway)
    assert len(out["stoken"]) == 36
    message = decode_b64_json(out["prepareIssueMessage"])
    assert message["issuerNonce"] == NONCE
    assert message["credentialAmount"] == 28


async def test_signer_messages_are_passed_on_in_standard_base64(gateway, mocked: MockedSigners):
    """The public messages are base64 of RFC 4648's first alphabet (`+`, `/`), not URL-safe."""
    # At the start of the message's JSON, three bytes apart: `~~~` encodes as `fn5+`, `???`
    # as `Pz8/`. A URL-safe encoding writes `-` and `_` there, which a strict decoder refuses.
    message = {"issuerPkId": "~~~???", "issuerNonce": NONCE, "credentialAmount": 28}
    mocked.prepare_issue.mock(return_value=httpx.Response(200, json=message), side_effect=None)
    encoded = (await _prepare(gateway))["prepareIssueMessage"]
    assert {"+", "/"} <= set(encoded)
    assert decode_b64_json(encoded) == message


async def test_issue_session(gateway, mocked: MockedSigners):
    """Issue with a fresh stoken returns one verified signature per attribute set."""
    stoken = (await _prepare(gateway))["stoken"]
    attrs = [domestic_attributes(), domestic_attributes(isPaperProof="0")]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": attrs,
    }
    response = await gateway.post("/v1/domestic/issue", json=body)
    assert response.status_code == 200, response.text
    items = decode_b64_json(response.json()["createCredentialMessages"])
    assert [item["attributes"] for item in items] == attrs
    assert all(item["issueSignatureMessage"]["issuerNonce"] == NONCE for item in items)


async def test_stoken_is_single_use(gateway, mocked: MockedSigners):
    """A stoken used once is refused with 401 the second time, without calling the signer."""
    stoken = (await _prepare(gateway))["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    assert (await gateway.post("/v1/domestic/issue", json=body)).status_code == 200
    second = await gateway.post("/v1/domestic/issue", json=body)
    assert_problem(second, 401, "stoken-invalid")
    assert second.headers["www-authenticate"].startswith("Stoken")
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("route", ["/v1/domestic/issue", "/v1/credentials"])
async def test_stoken_is_read_in_either_case(gateway, mocked: MockedSigners, route):
    """Pin that a stoken sent back in upper case names its session, once.

    A stoken is a UUID (CONTRACT.md), whose hex digits RFC 9562 reads in either case on input:
    a client that parses it as one may well send it back in upper case (Swift's `uuidString`).
    """
    stoken = (await _prepare(gateway))["stoken"]
    body: dict[str, Any] = {"stoken": stoken.upper(), "issueCommitmentMessage": commitment()}
    if route == "/v1/credentials":
        body.update(domestic=[domestic_attributes()], european=[])
    else:
        body["credentialsAttributes"] = [domestic_attributes()]
    response = await gateway.post(route, json=body)
    assert response.status_code == 200, response.text
    assert_problem(
        await gateway.post(route, json={**body, "stoken": stoken}), 401, "stoken-invalid"
    )
    assert mocked.issue.call_count == 1


async def test_unknown_stoken(gateway, mocked: MockedSigners):
    """An stoken the gateway never issued gives 401 and no signer call."""
    body = {
        "stoken": "3f1c0a4e-0000-4000-8000-000000000000",
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    assert_problem(await gateway.post("/v1/domestic/issue", json=body), 401, "stoken-invalid")
    assert mocked.issue.call_count == 0


async def test_expired_stoken(test_keys: SignerKeys, mocked: MockedSigners):
    """An stoken older than its TTL gives 401 and no signer call."""
    settings = make_settings(test_keys, domestic=DomesticPolicySettings(stoken_ttl_seconds=1))

    answer = prepare_issuing(test_keys)

    async def slow_prepare_issue(request: httpx.Request) -> httpx.Response:
        # A signer's latency, as a real one has: the session opens only once it answers.
        await asyncio.sleep(0.2)
        return answer(request)

    mocked.prepare_issue.mock(side_effect=slow_prepare_issue)
    async with running_gateway(settings) as gateway:
        stoken = (await _prepare(gateway))["stoken"]
        # The TTL is the behaviour under test, so let it pass. It started when prepare-issue
        # opened the session, before the answer came back: a little more than the TTL counted
        # from here is past it however long the answer took.
        await asyncio.sleep(1.05)
        body = {
            "stoken": stoken,
            "issueCommitmentMessage": commitment(),
            "credentialsAttributes": [domestic_attributes()],
        }
        assert_problem(await gateway.post("/v1/domestic/issue", json=body), 401, "stoken-invalid")
    assert mocked.issue.call_count == 0


async def test_print_domestic_only(gateway, mocked: MockedSigners):
    """/v1/print with only a domestic part returns a QR and european null."""
    response = await gateway.post("/v1/print", json={"domestic": domestic_attributes()})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["domestic"]["qr"].startswith("NL2:")
    assert out["european"] is None
    assert mocked.get_credential.call_count == 0


async def test_print_european_only(gateway, mocked: MockedSigners):
    """/v1/print with only a European part returns an HC1 and domestic null."""
    response = await gateway.post("/v1/print", json={"european": eu_test()})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["domestic"] is None
    assert out["european"]["credential"].startswith("HC1:")
    assert out["european"]["keyUsage"] == "test"
    assert mocked.issue_static.call_count == 0


async def test_print_both(gateway, mocked: MockedSigners):
    """/v1/print with both parts returns both, each from its own signer."""
    body = {"domestic": domestic_attributes(), "european": eu_vaccination()}
    response = await gateway.post("/v1/print", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["domestic"]["qr"].startswith("NL2:")
    assert out["european"]["credential"].startswith("HC1:")
    assert (mocked.issue_static.call_count, mocked.get_credential.call_count) == (1, 1)
    domestic, european = out["domestic"], out["european"]
    assert _signer_answer(mocked.issue_static) == (domestic["qr"], domestic["proofIdentifier"])
    assert _signer_answer(mocked.get_credential) == (
        european["credential"],
        european["proofIdentifier"],
    )


@pytest.mark.parametrize("body", [{}, {"domestic": None, "european": None}])
async def test_print_neither(gateway, mocked: MockedSigners, body):
    """/v1/print with neither part is a 422 in the rule's own words, and reaches no signer."""
    problem = assert_problem(await gateway.post("/v1/print", json=body), 422, "validation-failed")
    message = "give at least one of domestic and european"
    assert problem["errors"] == [{"loc": ["body"], "msg": message}]
    assert problem["detail"] == f"body: {message}"
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    "body", [None, b"{}", b"null", b'{"credentialAmount": 3}'], ids=["none", "{}", "null", "amount"]
)
async def test_prepare_issue_ignores_a_json_body(gateway, mocked: MockedSigners, body):
    """Pin that prepare-issue reads no body: `{}` or any JSON opens the configured session."""
    headers = {} if body is None else {"Content-Type": "application/json"}
    response = await gateway.post("/v1/domestic/prepare-issue", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert json.loads(mocked.prepare_issue.calls.last.request.content) == {"credentialAmount": 28}


async def test_prepare_issue_refuses_a_body_that_is_not_json_as_documented(
    gateway, mocked: MockedSigners
):
    """A body that is not JSON gets the 422 its OpenAPI operation lists, and no session."""
    response = await gateway.post(
        "/v1/domestic/prepare-issue",
        content=b"stoken please",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation-failed")
    assert mocked.signing_calls() == 0
    spec = (await gateway.get("/openapi.json")).json()
    assert "422" in spec["paths"]["/v1/domestic/prepare-issue"]["post"]["responses"]


async def test_credentials_domestic_and_several_eu(gateway, mocked: MockedSigners):
    """/v1/credentials returns the domestic greencard and every EU credential, in order."""
    stoken = (await _prepare(gateway))["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes(), domestic_attributes()],
        "european": [eu_vaccination(), eu_test(), eu_recovery()],
    }
    response = await gateway.post("/v1/credentials", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    items = decode_b64_json(out["domesticGreencard"]["createCredentialMessages"])
    assert len(items) == 2
    assert [c["keyUsage"] for c in out["euGreencards"]] == ["vaccination", "test", "recovery"]
    assert mocked.get_credential.call_count == 3


async def test_credentials_eu_only(gateway, mocked: MockedSigners):
    """/v1/credentials without a domestic part needs no stoken and returns a null greencard."""
    response = await gateway.post("/v1/credentials", json={"european": [eu_test()]})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["domesticGreencard"] is None
    assert len(out["euGreencards"]) == 1
    assert mocked.issue.call_count == 0


async def test_credentials_eu_only_leaves_a_session_it_was_given_open(
    gateway, mocked: MockedSigners
):
    """Pin that a stoken sent without domestic attributes is neither taken nor refused.

    The app opens a session before its backend knows whether the holder's events allow a
    domestic credential; the EU ones are signed either way, and the session stays usable.
    """
    stoken = (await _prepare(gateway))["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "domestic": [],
        "european": [eu_test()],
    }
    response = await gateway.post("/v1/credentials", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["domesticGreencard"] is None
    assert mocked.issue.call_count == 0
    issue = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    assert (await gateway.post("/v1/domestic/issue", json=issue)).status_code == 200


async def test_credentials_domestic_without_stoken(gateway, mocked: MockedSigners):
    """/v1/credentials with domestic attributes but no stoken is a 422 and reaches no signer."""
    body = {"issueCommitmentMessage": commitment(), "domestic": [domestic_attributes()]}
    body_out = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert error_locs(body_out) == [["body"]]
    assert mocked.signing_calls() == 0


_NO_PART = "give at least one domestic or european credential"
_NO_SESSION = "domestic credentials need stoken and issueCommitmentMessage"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, _NO_PART),
        ({"domestic": [], "european": []}, _NO_PART),
        ({"stoken": "0" * 36, "domestic": [domestic_attributes()]}, _NO_SESSION),
    ],
    ids=["empty", "empty-lists", "domestic-without-commitment"],
)
async def test_credentials_without_a_part_or_a_whole_session(
    gateway, mocked: MockedSigners, body, message
):
    """No part at all, or domestic parts without the commitment: 422 at the body, no signer.

    The message is the rule's, without the "Value error, " pydantic puts before a ValueError's.
    """
    problem = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert problem["errors"] == [{"loc": ["body"], "msg": message}]
    assert problem["detail"] == f"body: {message}"
    assert mocked.signing_calls() == 0


async def test_keys(gateway, test_keys: SignerKeys):
    """/v1/keys lists the DSC of each key usage and the domestic key the gateway trusts."""
    response = await gateway.get("/v1/keys")
    assert response.status_code == 200
    out = response.json()
    by_usage = {tuple(k["keyUsage"]): k for k in out["eu"]}
    for usage, dsc in test_keys.dscs.items():
        entry = by_usage[(usage,)]
        assert entry["kid"] == b64(dsc.kid)
        assert base64.b64decode(entry["certificate"]) == dsc.der
        assert entry["alg"] == "ES256"
    (domestic,) = out["domestic"]
    assert domestic["kid"] == b64(test_keys.domestic.kid)
    assert base64.b64decode(domestic["publicKey"]) == test_keys.domestic.raw_public


async def test_healthz(gateway, signers: respx.MockRouter):
    """/healthz answers 200 and touches no signer."""
    probes = signers["eu_health"].call_count + signers["domestic_health"].call_count
    response = await gateway.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    assert signers["eu_health"].call_count + signers["domestic_health"].call_count == probes
    # The outermost middleware answers it; the route (kept for the OpenAPI document) agrees.
    assert await health.healthz() == response.json()


async def test_readyz_ready(gateway):
    """/readyz answers 200 once both signer probes succeeded."""
    response = await readyz_when_probed(gateway)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["status"] == "ready"
    assert {s["status"] for s in out["dependencies"].values()} == {"up"}


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, text="boom"), httpx.ConnectError("refused")],
    ids=["500", "refused"],
)
async def test_readyz_not_ready(test_keys: SignerKeys, signers: respx.MockRouter, failure):
    """/readyz answers 503 naming the required signer whose probe failed, no URL in the body."""
    if isinstance(failure, httpx.Response):
        signers["eu_health"].mock(return_value=failure)
    else:
        signers["eu_health"].mock(side_effect=failure)
    async with running_gateway(make_settings(test_keys)) as gateway:
        response = await readyz_when_probed(gateway)
    assert response.status_code == 503
    out = response.json()
    assert out["status"] == "not-ready"
    assert out["dependencies"]["eu-signer"]["status"] == "down"
    assert out["dependencies"]["eu-signer"]["error"]
    assert out["dependencies"]["domestic-signer"]["status"] == "up"
    assert "signer.test" not in response.text


async def _try_every_example(gateway: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Send each request example of /openapi.json as it stands; each must pass validation.

    The session examples name an stoken no gateway has issued: they get 401, after validation.
    """
    spec = (await gateway.get("/openapi.json")).json()
    tried = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name, example in (media or {}).get("examples", {}).items():
                response = await gateway.request(method.upper(), path, json=example["value"])
                tried.append((path, name))
                if "stoken" in example["value"] and example["value"]["stoken"]:
                    assert_problem(response, 401, "stoken-invalid")
                else:
                    assert response.status_code == 200, (path, name, response.text)
    return tried


async def test_every_documented_example_passes_validation(gateway, mocked: MockedSigners):
    """Each request example in /openapi.json is accepted as it stands (tried from /docs)."""
    tried = await _try_every_example(gateway)
    assert len(tried) >= 5, tried


async def test_documented_examples_pass_after_31_days_of_uptime(
    gateway, mocked: MockedSigners, monkeypatch: pytest.MonkeyPatch
):
    """Examples fetched 31 days after the document was built still pass: validFrom keeps up."""
    await gateway.get("/openapi.json")  # FastAPI builds its document once, and keeps it
    later = datetime.now(UTC) + timedelta(days=31)

    class Later(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Later:
            return cls.fromtimestamp(later.timestamp(), tz=tz)

    # The wall clock of the domestic policy check, and of the examples the document serves.
    monkeypatch.setattr(domestic_issuance, "datetime", Later)
    monkeypatch.setattr(examples, "datetime", Later)
    tried = await _try_every_example(gateway)
    assert {"/v1/domestic/static", "/v1/print", "/v1/domestic/issue"} <= {p for p, _ in tried}


async def test_session_examples_say_where_a_working_body_comes_from(gateway):
    """/docs says an example naming an stoken fails as it stands, and where a real one comes from.

    Its stoken names no session, and its commitment answers another issuerNonce than a fresh
    session's: "Try it out" with it unchanged is a 401 (or, with a fresh stoken, a refusal).
    """
    spec = (await gateway.get("/openapi.json")).json()
    told = {}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name, example in (media or {}).get("examples", {}).items():
                if example["value"].get("stoken"):
                    said = f"{example['summary']}\n{example.get('description', '')}"
                    told[f"{path} {name}"] = [
                        words
                        for words in ("POST /v1/domestic/prepare-issue", "issuerNonce", "401")
                        if words not in said
                    ]
    assert told == {"/v1/domestic/issue session": [], "/v1/credentials app": []}


def _document_validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of `schema`, a part of the OpenAPI document `spec` (its refs resolved)."""
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    located = json.loads(json.dumps(schema).replace('"#/components/', '"urn:openapi#/components/'))
    return Draft202012Validator(located, registry=registry)


async def test_every_example_validates_against_its_own_schema(gateway):
    """Pin that each request example is one its documented schema accepts.

    A client generated from the document checks its requests against these schemas: an
    example outside them would be refused there though the gateway accepts it.
    """
    spec = (await gateway.get("/openapi.json")).json()
    wrong = {}
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for name, example in (media or {}).get("examples", {}).items():
                validator = _document_validator(spec, media["schema"])
                checked += 1
                if errors := [e.message for e in validator.iter_errors(example["value"])]:
                    wrong[f"{method.upper()} {path} {name}"] = errors
    assert checked >= 6
    assert wrong == {}


async def test_openapi_has_examples_for_every_body(gateway):
    """Every endpoint that takes a body documents at least one example in /openapi.json."""
    response = await gateway.get("/openapi.json")
    assert response.status_code == 200
    missing = []
    with_body = 0
    for path, operations in response.json()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if not content:
                continue
            with_body += 1
            media = content["application/json"]
            if not (media.get("examples") or media.get("example")):
                missing.append(f"{method.upper()} {path}")
    assert with_body >= 5
    assert missing == []


async def test_openapi_documents_errors_as_problem_json_only(gateway):
    """Each documented /v1 4xx/5xx has the Problem schema under problem+json, as it is sent.

    None is documented as application/json: no /v1 error answer is sent as that. (/readyz's
    503 is its JSON snapshot, not a problem.)
    """
    spec = (await gateway.get("/openapi.json")).json()
    errors = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items() if path.startswith("/v1/") else ():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    errors[f"{method.upper()} {path} {status}"] = response["content"]
    assert "POST /v1/dcc 422" in errors
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert {where: content for where, content in errors.items() if content != problem} == {}
    schemas = spec["components"]["schemas"]
    fields = schemas["Problem"]["properties"].keys()
    assert {"type", "title", "status", "detail", "requestId"} <= fields
    assert "ProblemFieldOut" in schemas


async def test_docs_page(gateway):
    """/docs serves the interactive API documentation."""
    response = await gateway.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


async def test_widest_accepted_valid_from_window_still_judges_requests(
    test_keys: SignerKeys, mocked: MockedSigners
):
    """With the largest validFrom window settings accept, requests are judged, never a 500."""
    widest = DomesticPolicySettings(
        max_valid_from_past_hours=MAX_VALID_FROM_OFFSET_HOURS,
        max_valid_from_future_hours=MAX_VALID_FROM_OFFSET_HOURS,
    )
    nine_years = 9 * 365 * 24 * 3600
    async with running_gateway(make_settings(test_keys, domestic=widest)) as gateway:
        for offset, status in [(-nine_years, 200), (nine_years, 200), (-2 * nine_years, 422)]:
            attrs = domestic_attributes(validFrom=str(int(time.time()) + offset))
            response = await gateway.post(
                "/v1/domestic/static", json={"credentialAttributes": attrs}
            )
            assert response.status_code == status, response.text
    assert mocked.issue_static.call_count == 2


@pytest.mark.parametrize(
    "field", ["vaccination_validity_days", "test_validity_hours", "recovery_validity_days"]
)
def test_an_eu_validity_past_ten_years_is_a_settings_error(field):
    """A default validity the calendar cannot add to now is refused with the settings."""
    with pytest.raises(ValidationError, match="less than or equal to"):
        EuPolicySettings(**{field: 3_000_000})


async def test_longest_accepted_eu_validity_still_signs(
    test_keys: SignerKeys, mocked: MockedSigners
):
    """With the longest default validities settings accept, the DSC caps them: 200, never 500."""
    longest = EuPolicySettings(
        vaccination_validity_days=MAX_VALIDITY_DAYS,
        test_validity_hours=MAX_VALIDITY_DAYS * 24,
        recovery_validity_days=MAX_VALIDITY_DAYS,
    )
    async with running_gateway(make_settings(test_keys, eu_policy=longest)) as gateway:
        for body in (eu_vaccination(), eu_test(), eu_recovery()):
            body.pop("expirationTime", None)
            response = await gateway.post("/v1/dcc", json=body)
            assert response.status_code == 200, response.text
    assert mocked.get_credential.call_count == 3


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/dcc/"), ("GET", "/readyz/")])
async def test_a_trailing_slash_is_not_found_not_redirected(
    gateway: httpx.AsyncClient, mocked: MockedSigners, method: str, path: str
):
    """A path with a trailing slash is unknown: 404, not a 307 to the path without it.

    That redirect's Location came from the caller's Host header, always with "http", and a
    client following it would re-send the body there.
    """
    response = await gateway.request(
        method, path, json=eu_vaccination(), headers={"Host": "elsewhere.example"}
    )
    assert_problem(response, 404)
    assert "location" not in response.headers
    assert mocked.signing_calls() == 0
