"""Every way a signer can fail, as the caller sees it: status, problem type, no signer detail."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import cbor2
import httpx
import orjson
import pytest

from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import (
    Handler,
    MockedSigners,
    commitment,
    domestic_issuing,
    eu_signing,
    prepare_issuing,
)
from tests.support.credentials import b64, proof_identifier, sample_dcc
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    running_gateway,
)

SIGNER_TEXT = "HSM slot 3 failed at http://eu-signer.test/internal"


def _making_attempts(keys: SignerKeys, attempts: int) -> Any:
    """An in-process gateway making at most `attempts` attempts per call to either signer."""
    policy = ResilienceSettings(max_attempts=attempts)
    settings = make_settings(
        keys,
        eu_signer=SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, resilience=policy),
        domestic_signer=SignerSettings(
            url=DOMESTIC_SIGNER_URL, allow_plain_http=True, resilience=policy
        ),
    )
    return running_gateway(settings)


@pytest.fixture
async def gateway(test_keys: SignerKeys, signers) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway making one attempt per signer call: these tests pin the mapping, not retries."""
    async with _making_attempts(test_keys, 1) as client:
        yield client


#: Each signer problem type's title, the same on every answer of that type (RFC 9457).
TITLES = {
    "signer-bad-response": "Signer answered outside its contract",
    "signer-unavailable": "Signer unavailable",
    "signer-timeout": "Signer timed out",
    "credential-verification-failed": "Signed credential failed verification",
}


def _assert_signer_problem(
    response: httpx.Response, status: int, slug: str, detail: str
) -> dict[str, Any]:
    """`assert_problem`, and the type's title and the detail the caller is given."""
    problem = assert_problem(response, status, slug)
    assert (problem["title"], problem["detail"]) == (TITLES[slug], detail)
    return problem


def _assert_no_leak(response: httpx.Response) -> None:
    text = response.text
    assert "signer.test" not in text
    assert "HSM slot" not in text
    assert "Traceback" not in text


REFUSED = "european: the signer refused the request"
FAILED = "european: the signer failed"
FAILURES = {
    "400": (httpx.Response(400, text=SIGNER_TEXT), REFUSED),
    "409": (httpx.Response(409, text=SIGNER_TEXT), REFUSED),
    "500": (httpx.Response(500, text=SIGNER_TEXT), FAILED),
    "502": (httpx.Response(502, text=SIGNER_TEXT), FAILED),
    "200-not-json": (httpx.Response(200, text=SIGNER_TEXT), FAILED),
    "200-wrong-shape": (httpx.Response(200, json={"cred": "x"}), FAILED),
    "200-not-hc1": (
        httpx.Response(200, json={"credential": "HC2:x", "proofIdentifier": "p"}),
        FAILED,
    ),
    "200-too-large": (
        httpx.Response(200, json={"credential": "HC1:" + "A" * 200_000, "proofIdentifier": "p"}),
        FAILED,
    ),
}


@pytest.mark.parametrize(("answer", "detail"), FAILURES.values(), ids=FAILURES.keys())
async def test_eu_signer_bad_answer(gateway, mocked: MockedSigners, answer, detail):
    """A signer 4xx, 5xx or malformed 2xx becomes a 502 that carries none of the signer's text.

    Only a 4xx says the signer refused the request; every other answer, that it failed.
    """
    mocked.get_credential.mock(return_value=answer, side_effect=None)
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    problem = _assert_signer_problem(response, 502, "signer-bad-response", detail)
    assert problem["part"] == "european"
    _assert_no_leak(response)


async def test_eu_signer_refusing_a_validated_request_is_logged_as_an_error(
    gateway, mocked: MockedSigners, caplog: pytest.LogCaptureFixture
):
    """A signer 4xx after our own validation is a contract mismatch: said so, and logged."""
    caplog.set_level(logging.WARNING, logger="signing_gateway")
    mocked.get_credential.mock(return_value=httpx.Response(400, text=SIGNER_TEXT), side_effect=None)
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    problem = assert_problem(response, 502, "signer-bad-response")
    assert problem["detail"] == "european: the signer refused the request"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [(r.getMessage(), r.status) for r in errors] == [
        ("signer rejected a validated request", 400)
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(500, text=SIGNER_TEXT), "SignerServerError"),
        (httpx.Response(429, text=SIGNER_TEXT), "SignerThrottledError"),
        (httpx.ConnectError("refused"), "SignerConnectError"),
        (httpx.ReadTimeout("slow"), "SignerTimeoutError"),
    ],
    ids=["500", "429", "refused", "timeout"],
)
async def test_a_failed_signer_call_is_logged_as_a_warning(
    gateway, mocked: MockedSigners, caplog: pytest.LogCaptureFixture, answer, error
):
    """A signer failing is a warning naming the signer, endpoint and error class; no error."""
    caplog.set_level(logging.DEBUG, logger="signing_gateway")
    if isinstance(answer, Exception):
        mocked.get_credential.mock(side_effect=answer)
    else:
        mocked.get_credential.mock(return_value=answer, side_effect=None)
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code in {502, 503, 504}
    [record] = [r for r in caplog.records if r.getMessage() == "signer call failed"]
    assert record.levelno == logging.WARNING
    assert (record.signer, record.endpoint, record.error) == ("eu", "get_credential", error)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", "7"), (503, "12", "12"), (429, None, "1"), (503, "0", "1")],
)
async def test_eu_signer_throttled(gateway, mocked: MockedSigners, status, retry_after, expected):
    """A signer 429/503 becomes a 503 whose Retry-After is the signer's (at least 1 s)."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    mocked.get_credential.mock(
        return_value=httpx.Response(status, text=SIGNER_TEXT, headers=headers), side_effect=None
    )
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    _assert_signer_problem(
        response,
        503,
        "signer-unavailable",
        "european: the signer is at capacity; try again later",
    )
    assert response.headers["retry-after"] == expected
    _assert_no_leak(response)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("9" * 400, "3600"), ("\u00b2".encode("latin-1"), "1"), (b"1\xb2", "1")],
    ids=["400-digits", "superscript-two", "digit-superscript-two"],
)
@pytest.mark.parametrize("status", [429, 503])
async def test_eu_signer_odd_retry_after(
    gateway, mocked: MockedSigners, status, retry_after, expected
):
    """An absurd or non-ASCII signer Retry-After still gives 503 with a bounded Retry-After."""
    mocked.get_credential.mock(
        return_value=httpx.Response(status, text=SIGNER_TEXT, headers={"Retry-After": retry_after}),
        side_effect=None,
    )
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    assert_problem(response, 503, "signer-unavailable")
    assert response.headers["retry-after"] == expected
    _assert_no_leak(response)


async def test_eu_signer_refuses_connection(gateway, mocked: MockedSigners):
    """A signer that refuses the connection gives 503 with Retry-After: 1."""
    mocked.get_credential.mock(side_effect=httpx.ConnectError("refused: eu-signer.test"))
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    _assert_signer_problem(
        response, 503, "signer-unavailable", "european: the signer cannot be reached"
    )
    assert response.headers["retry-after"] == "1"
    _assert_no_leak(response)


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_eu_signer_times_out(gateway, mocked: MockedSigners, error):
    """A signer that does not answer in time gives 504."""
    mocked.get_credential.mock(side_effect=error("timed out talking to eu-signer.test"))
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    _assert_signer_problem(
        response, 504, "signer-timeout", "european: the signer did not answer in time"
    )
    assert "retry-after" not in response.headers
    _assert_no_leak(response)


@pytest.mark.parametrize(
    ("endpoint", "route", "body"),
    [
        ("get_credential", "/v1/dcc", eu_vaccination()),
        ("issue_static", "/v1/domestic/static", {"credentialAttributes": domestic_attributes()}),
        ("prepare_issue", "/v1/domestic/prepare-issue", None),
    ],
    ids=["eu", "static", "prepare-issue"],
)
async def test_a_timed_out_call_to_an_endpoint_without_state_is_sent_again(
    test_keys: SignerKeys, mocked: MockedSigners, endpoint, route, body
):
    """A read timeout where a replay is harmless is retried: the second attempt's answer, 200.

    The signer may have acted on the first attempt, and a replay costs these endpoints at most
    a second signing or an unused nonce (docs/resilience.md, the replay-safe table), unlike
    /issue, which is never sent twice (test_api_issuance_session.py).
    """
    signer_route = getattr(mocked, endpoint)
    signer_route.mock(side_effect=[httpx.ReadTimeout("slow"), signer_route.side_effect])
    async with _making_attempts(test_keys, 2) as gateway:
        response = await gateway.post(route, json=body)
    assert response.status_code == 200, response.text
    assert signer_route.call_count == 2


async def test_eu_signer_drops_connection(gateway, mocked: MockedSigners):
    """A connection lost after sending gives 502 (the signer may have signed; nothing released)."""
    mocked.get_credential.mock(side_effect=httpx.RemoteProtocolError("eu-signer.test hung up"))
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    _assert_signer_problem(response, 502, "signer-bad-response", FAILED)
    _assert_no_leak(response)


def _float_labels(entries: dict[int, Any]) -> bytes:
    """A header or claims map with each label written as a float: 1.0 where 1 belongs."""
    return cbor2.dumps({float(label): value for label, value in entries.items()})


def _with_proof_identifier(handler: Handler, proof_identifier: str) -> Handler:
    """`handler`'s answers, with `proof_identifier` in place of the one of their signature."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={**handler(request).json(), "proofIdentifier": proof_identifier}
        )

    return answer


def _bad_credentials(keys: SignerKeys) -> dict[str, tuple[Handler, str]]:
    """Each defect: a signer answer carrying it, and the rejection reason it must be counted as."""
    other = sample_dcc()
    other["nam"] = {"fnt": "SOMEONE<ELSE"}
    other_claims = {1: "NL", 4: 0, 6: 0, -260: {1: other}}
    return {
        "bad-signature": (eu_signing(keys, tamper_signature=True), "bad-signature"),
        "wrong-kid": (eu_signing(keys, kid=b"\x01\x02\x03\x04\x05\x06\x07\x08"), "unknown-kid"),
        "payload-mismatch": (eu_signing(keys, dcc=other), "payload-mismatch"),
        "payload-altered-after-signing": (
            eu_signing(keys, tamper_payload_after_signing=True),
            "bad-signature",
        ),
        "exp-later": (eu_signing(keys, exp_shift=3600), "exp-mismatch"),
        "exp-earlier": (eu_signing(keys, exp_shift=-3600), "exp-mismatch"),
        # Issued ten minutes off our clock: past the two minutes of skew tolerated.
        "iat-ten-minutes-ago": (eu_signing(keys, iat_shift=-600), "iat-out-of-range"),
        "iat-in-ten-minutes": (eu_signing(keys, iat_shift=600), "iat-out-of-range"),
        # Signed, and exactly the request to a decoder where the last key wins and that stops
        # after the first item; another person to a verifier app that reads it otherwise.
        "hcert-claim-twice": (
            eu_signing(keys, shadow_claims={-260: {1: other}}),
            "decode-failed",
        ),
        "claims-after-payload": (
            eu_signing(keys, payload_trailer=cbor2.dumps(other_claims)),
            "decode-failed",
        ),
        # Read as the request through a Python dict; a COSE library finds no alg, kid or claim.
        "labels-as-floats": (eu_signing(keys, encode=_float_labels), "decode-failed"),
        # cbor2 resolves string references (tags 256 and 25); a reader without them cannot.
        "string-references": (
            eu_signing(keys, encode=partial(cbor2.dumps, string_referencing=True)),
            "decode-failed",
        ),
        # The test DSCs are Dutch: a credential claiming another issuing country is not theirs.
        "iss-of-another-country": (eu_signing(keys, iss="DE"), "iss-mismatch"),
        # A claim the gateway does not read: not valid before 2100, for every verifier honouring it.
        "claim-beyond-contract": (
            eu_signing(keys, extra_claims={5: 4_102_444_800}),
            "decode-failed",
        ),
        # Verifiers must refuse a critical label they do not know; the gateway read past it.
        "crit-in-protected-header": (
            eu_signing(keys, extra_header={2: [99], 99: "x"}),
            "decode-failed",
        ),
        # Which kid a verifier takes depends on its COSE library.
        "kid-in-both-headers": (
            eu_signing(keys, extra_unprotected={4: b"\x01" * 8}),
            "decode-failed",
        ),
        # A genuine credential, but not what the caller is told identifies its signature.
        "proof-identifier-of-another-signature": (
            _with_proof_identifier(eu_signing(keys), proof_identifier(b"another signature")),
            "proof-identifier-mismatch",
        ),
    }


@pytest.mark.parametrize(
    "defect",
    [
        "bad-signature",
        "wrong-kid",
        "payload-mismatch",
        "payload-altered-after-signing",
        "exp-later",
        "exp-earlier",
        "iat-ten-minutes-ago",
        "iat-in-ten-minutes",
        "hcert-claim-twice",
        "claims-after-payload",
        "labels-as-floats",
        "string-references",
        "iss-of-another-country",
        "claim-beyond-contract",
        "crit-in-protected-header",
        "kid-in-both-headers",
        "proof-identifier-of-another-signature",
    ],
)
async def test_eu_credential_failing_verification_is_withheld(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, defect
):
    """A credential that fails verification gives 502 credential-verification-failed, unreleased.

    The rejection is counted under the reason the verifier found.
    """
    handler, reason = _bad_credentials(test_keys)[defect]
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        response = handler(request)
        seen.append(response.json()["credential"])
        return response

    mocked.get_credential.mock(side_effect=answer)
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    _assert_signer_problem(
        response,
        502,
        "credential-verification-failed",
        "european: the signed credential failed verification and was not released",
    )
    assert seen
    for credential in seen:
        assert credential not in response.text
        assert credential[4:40] not in response.text
    assert "HC1:" not in response.text
    metrics = await scrape(gateway)
    rejections = "gateway_credential_verification_failures_total"
    assert metrics.value(rejections, signer="eu", reason=reason) == 1


@pytest.mark.parametrize(
    ("path", "part"), [("/v1/print", "european"), ("/v1/credentials", "european[1]")]
)
async def test_a_withheld_eu_part_of_a_combined_request_is_named(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, path, part
):
    """Pin that a combined request's credential failing verification names its own part.

    Only the vaccination DCC's credential is bent: the 502 says which of the request's parts
    to look at, as a signer failure of that part does.
    """
    good, bent = eu_signing(test_keys), eu_signing(test_keys, tamper_signature=True)

    def answer(request: httpx.Request) -> httpx.Response:
        usage = orjson.loads(request.content)["keyUsage"]
        return (bent if usage == "vaccination" else good)(request)

    mocked.get_credential.mock(side_effect=answer)
    body: dict[str, Any] = (
        {"european": eu_vaccination()}
        if path == "/v1/print"
        else {"european": [eu_test(), eu_vaccination()]}
    )
    response = await gateway.post(path, json=body)
    problem = _assert_signer_problem(
        response,
        502,
        "credential-verification-failed",
        f"{part}: the signed credential failed verification and was not released",
    )
    assert problem["part"] == part


async def test_domestic_static_bad_signature_is_withheld(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """A static QR whose signature does not cover the attributes is a 502 and not released."""

    def answer(request: httpx.Request) -> httpx.Response:
        attrs = domestic_attributes()
        qr, _ = test_keys.domestic.static_qr(attrs, signed_attrs={**attrs, "isSpecimen": "1"})
        return httpx.Response(200, json={"qr": qr, "proofIdentifier": "cHJvb2Y="})

    mocked.issue_static.mock(side_effect=answer)
    body = {"credentialAttributes": domestic_attributes()}
    response = await gateway.post("/v1/domestic/static", json=body)
    assert_problem(response, 502, "credential-verification-failed")
    assert "NL2:" not in response.text


async def test_domestic_static_qr_signed_over_other_attributes_is_withheld(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """A static QR validly signed over other attributes than asked is a 502 payload-mismatch.

    Its signature verifies over the attributes the QR itself carries: only the request shows
    that they are not the ones asked for.
    """

    def answer(request: httpx.Request) -> httpx.Response:
        asked = orjson.loads(request.content)["credentialAttributes"]
        qr, signature = test_keys.domestic.static_qr({**asked, "isSpecimen": "1"})
        return httpx.Response(200, json={"qr": qr, "proofIdentifier": proof_identifier(signature)})

    mocked.issue_static.mock(side_effect=answer)
    body = {"credentialAttributes": domestic_attributes()}
    response = await gateway.post("/v1/domestic/static", json=body)
    assert_problem(response, 502, "credential-verification-failed")
    assert "NL2:" not in response.text
    metrics = await scrape(gateway)
    rejections = "gateway_credential_verification_failures_total"
    assert metrics.value(rejections, signer="domestic", reason="payload-mismatch") == 1


#: Signature messages of an /issue answer bent out of shape: a decode-failed rejection each.
BENT_SIGNATURE_MESSAGES = {
    # Not a 500.
    "non-ascii-kid": {"kid": "\u00e9"},
    # Not released: nothing checks it.
    "member-riding-along": {"note": "unsigned"},
}


@pytest.mark.parametrize("bend", BENT_SIGNATURE_MESSAGES.values(), ids=BENT_SIGNATURE_MESSAGES)
async def test_domestic_issue_with_a_bent_signature_message_is_withheld(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, bend: dict[str, str]
):
    """A signature message out of shape in the /issue answer is a 502 decode-failed rejection."""

    def answer(request: httpx.Request) -> httpx.Response:
        response = domestic_issuing(test_keys)(request)
        items = response.json()
        items[0]["issueSignatureMessage"].update(bend)
        return httpx.Response(200, json=items)

    mocked.issue.mock(side_effect=answer)
    await _assert_issue_withheld(gateway, "decode-failed")


async def test_domestic_issue_signed_with_another_key_than_the_session_named_is_withheld(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """Pin that an /issue answer under another key than prepare-issue's issuerPkId is a 502.

    Its signatures verify with a trusted key, but the app built its commitment for the key the
    session named, and the signer was handed that session back.
    """

    def other_key(request: httpx.Request) -> httpx.Response:
        message = prepare_issuing(test_keys)(request).json()
        return httpx.Response(200, json={**message, "issuerPkId": b64(b"kid-dom")})

    mocked.prepare_issue.mock(side_effect=other_key)
    await _assert_issue_withheld(gateway, "kid-mismatch")


#: /issue answers signed with the session's key over other content than the session asked for,
#: each naming that content itself: the nonce it was signed under, or the attributes.
OTHER_SIGNED_CONTENT = {
    "nonce-mismatch": lambda _nonce, attrs: (b64(b"another nonce..."), attrs),
    "payload-mismatch": lambda nonce, attrs: (nonce, {**attrs, "isSpecimen": "1"}),
}


@pytest.mark.parametrize(("reason", "bend"), OTHER_SIGNED_CONTENT.items(), ids=OTHER_SIGNED_CONTENT)
async def test_domestic_issue_signed_over_what_the_answer_names_but_not_the_session_is_withheld(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, reason: str, bend: Any
):
    """Pin that /issue answers are checked against the session and the request, not themselves.

    Every signature verifies over the nonce and attributes its own item names; only the nonce
    of prepare-issue and the attributes sent show them to be another session's credentials.
    """

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)  # the commitment's big integers too
        nonce = body["prepareIssueMessage"]["issuerNonce"]
        signed = [bend(nonce, attrs) for attrs in body["credentialsAttributes"]]
        return httpx.Response(200, json=[test_keys.domestic.issue_item(*s) for s in signed])

    mocked.issue.mock(side_effect=answer)
    await _assert_issue_withheld(gateway, reason)


async def _assert_issue_withheld(gateway: httpx.AsyncClient, reason: str) -> None:
    """A session's /issue is a 502 naming the domestic part, counted under `reason`."""
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    body = {
        "stoken": prepared.json()["stoken"],
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    response = await gateway.post("/v1/domestic/issue", json=body)
    problem = assert_problem(response, 502, "credential-verification-failed")
    assert problem["part"] == "domestic"
    assert "issueSignatureMessage" not in response.text
    metrics = await scrape(gateway)
    rejections = "gateway_credential_verification_failures_total"
    assert metrics.value(rejections, signer="domestic", reason=reason) == 1


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (httpx.Response(500, text=SIGNER_TEXT), 502),
        (httpx.Response(415, text=SIGNER_TEXT), 502),
        (httpx.Response(503, text=SIGNER_TEXT, headers={"Retry-After": "3"}), 503),
        (httpx.Response(200, json=[]), 502),
    ],
    ids=["500", "415", "503", "malformed"],
)
async def test_domestic_signer_failures(gateway, mocked: MockedSigners, answer, status):
    """Domestic signer failures map like the EU ones and name the domestic part."""
    mocked.issue_static.mock(return_value=answer, side_effect=None)
    response = await gateway.post(
        "/v1/domestic/static", json={"credentialAttributes": domestic_attributes()}
    )
    problem = assert_problem(response, status)
    assert problem["part"] == "domestic"
    _assert_no_leak(response)


async def test_prepare_issue_signer_down(gateway, mocked: MockedSigners):
    """prepare-issue with the domestic signer unreachable is a 503 and hands out no stoken."""
    mocked.prepare_issue.mock(side_effect=httpx.ConnectError("refused"))
    response = await gateway.post("/v1/domestic/prepare-issue")
    assert_problem(response, 503, "signer-unavailable")
    assert "stoken" not in response.json()


async def test_prepare_issue_answer_for_another_amount_hands_out_no_stoken(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """Pin that a session's amount is the one asked for (and checked at /issue), or a 502.

    The app builds its commitment for the amount in the message it is handed; a signer that
    granted another would have the gateway check /issue against a limit the app never saw.
    """

    def other_amount(request: httpx.Request) -> httpx.Response:
        message = prepare_issuing(test_keys)(request).json()
        return httpx.Response(200, json={**message, "credentialAmount": 1})

    mocked.prepare_issue.mock(side_effect=other_amount)
    response = await gateway.post("/v1/domestic/prepare-issue")
    assert_problem(response, 502, "signer-bad-response")
    assert "stoken" not in response.json()


@pytest.mark.parametrize("nonce", [b"7", b"340282366920938463463374607431768211457"])
async def test_prepare_issue_answer_with_a_nonce_written_as_a_number_hands_out_no_stoken(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, nonce: bytes
):
    """Pin that an issuerNonce sent as a JSON number is a 502.

    Idemix writes it as a base64 string (gabi's big integer, docs/security.md); one written as
    a number would be read by orjson as a float past 64 bits, and passed on rounded.
    """

    def numeric_nonce(request: httpx.Request) -> httpx.Response:
        message = prepare_issuing(test_keys)(request).json()
        text = orjson.dumps({**message, "issuerNonce": "N"}).replace(b'"N"', nonce)
        return httpx.Response(200, content=text, headers={"Content-Type": "application/json"})

    mocked.prepare_issue.mock(side_effect=numeric_nonce)
    response = await gateway.post("/v1/domestic/prepare-issue")
    assert_problem(response, 502, "signer-bad-response")
    assert "stoken" not in response.json()


def _nested(depth: int) -> list[Any]:
    """A JSON value `depth` arrays deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("route", ["/v1/domestic/issue", "/v1/credentials"])
async def test_domestic_issue_answer_nested_too_deep_to_pass_on_is_a_502(
    test_keys: SignerKeys,
    signers,
    mocked: MockedSigners,
    caplog: pytest.LogCaptureFixture,
    route: str,
):
    """Pin that valid signatures in a message nested past what an answer can hold are a 502.

    The signer's messages are passed on as received, and orjson writes at most 254 levels
    while it reads 1024: when a member could ride along in the message, such an answer passed
    every check, its record said `issued` 200, and the caller got a 500 as it was written.
    """

    def answer(request: httpx.Request) -> httpx.Response:
        items = domestic_issuing(test_keys)(request).json()
        items[0]["issueSignatureMessage"]["proof"] = _nested(300)
        return httpx.Response(200, json=items)

    mocked.issue.mock(side_effect=answer)
    caplog.set_level(logging.INFO, logger="signing_gateway.audit")
    settings = make_settings(test_keys)
    async with running_gateway(settings, raise_app_exceptions=False) as gateway:
        prepared = (await gateway.post("/v1/domestic/prepare-issue")).json()
        body: dict[str, Any] = {
            "stoken": prepared["stoken"],
            "issueCommitmentMessage": commitment(),
        }
        if route == "/v1/credentials":
            body.update(domestic=[domestic_attributes()], european=[])
        else:
            body["credentialsAttributes"] = [domestic_attributes()]
        response = await gateway.post(route, json=body, headers={"X-Request-ID": "deep-1"})
    assert_problem(response, 502, "credential-verification-failed")
    logged = [r.__dict__["audit"] for r in caplog.records if r.name == "signing_gateway.audit"]
    assert [(r["outcome"], r["status"]) for r in logged if r["requestId"] == "deep-1"] == [
        ("failed", 502)
    ]
