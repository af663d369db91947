"""Domestic signer wire: Ed25519 simulation verified with the key from /keys, nonces, media type."""

from __future__ import annotations

import base64
import hashlib

import base45
import cbor2
import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.contract.fake_signer.signer_wire import ATTRIBUTES, JSON_HEADERS, b64d


async def domestic_key(client):
    """The published domestic key entry and the Ed25519 public key."""
    (entry,) = (await client.get("/keys")).json()["domestic"]
    assert entry["alg"] == "Ed25519"
    raw = b64d(entry["publicKey"])
    assert b64d(entry["kid"]) == hashlib.sha256(raw).digest()[:8]
    return entry, Ed25519PublicKey.from_public_bytes(raw)


async def prepare(client, amount=2):
    """Call /prepare_issue and return its message."""
    response = await client.post(
        "/prepare_issue", json={"credentialAmount": amount}, headers=JSON_HEADERS
    )
    assert response.status_code == 200
    return response.json()


def issue_body(prepared, attributes):
    """An /issue body for a prepare_issue message."""
    return {
        "prepareIssueMessage": prepared,
        "issueCommitmentMessage": {"commitments": "opaque", "issuerNonce": prepared["issuerNonce"]},
        "credentialsAttributes": attributes,
    }


async def test_issue_signatures_verify_with_published_key(client):
    """Each /issue signature verifies over the nonce and attributes with the /keys Ed25519 key."""
    entry, public_key = await domestic_key(client)
    prepared = await prepare(client, 2)
    assert prepared["issuerPkId"] == entry["kid"]
    assert len(b64d(prepared["issuerNonce"])) == 16
    assert prepared["credentialAmount"] == 2
    other = {**ATTRIBUTES, "category": "3"}
    response = await client.post(
        "/issue", json=issue_body(prepared, [ATTRIBUTES, other]), headers=JSON_HEADERS
    )
    assert response.status_code == 200
    messages = response.json()
    assert [m["attributes"] for m in messages] == [ATTRIBUTES, other]
    for message in messages:
        signed = message["issueSignatureMessage"]
        assert signed["kid"] == entry["kid"]
        assert signed["issuerNonce"] == prepared["issuerNonce"]
        data = b"NL2-issue\x00" + cbor2.dumps(
            [prepared["issuerNonce"], message["attributes"]], canonical=True
        )
        public_key.verify(b64d(signed["signature"]), data)
    with pytest.raises(InvalidSignature):
        public_key.verify(b64d(messages[0]["issueSignatureMessage"]["signature"]), b"other")


# Decimal digits: 64 and 71 bits, 2048 bits, and past the 4,300 digits Python's int() takes.
@pytest.mark.parametrize("digits", [20, 22, 617, 6000])
async def test_issue_takes_commitment_integers_of_any_size(client, digits):
    """Idemix commitments carry integers of thousands of bits, which the real signer reads."""
    prepared = await prepare(client, 1)
    number = ("8" + "0123456789" * digits)[:digits]
    body = (
        b'{"prepareIssueMessage": ' + orjson.dumps(prepared) + b', "issueCommitmentMessage": '
        b'{"issuerNonce": "'
        + prepared["issuerNonce"].encode()
        + b'", "U": '
        + number.encode()
        + b'}, "credentialsAttributes": '
        + orjson.dumps([ATTRIBUTES])
        + b"}"
    )
    response = await client.post("/issue", content=body, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text
    assert [m["attributes"] for m in response.json()] == [ATTRIBUTES]


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_issue_refuses_json_constants_in_the_commitment(client, constant):
    """NaN and Infinity are not JSON: the exact-number parse of /issue still refuses them."""
    prepared = await prepare(client, 1)
    body = issue_body(prepared, [ATTRIBUTES])
    raw = orjson.dumps(body).replace(b'"commitments":"opaque"', b'"commitments":' + constant)
    response = await client.post("/issue", content=raw, headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"0.5e309"])
async def test_issue_refuses_a_number_past_a_double_like_the_other_endpoints(client, number):
    """A number that reads as infinity is refused by /issue as by the orjson-parsed endpoints."""
    prepared = await prepare(client, 1)
    body = issue_body(prepared, [ATTRIBUTES])
    raw = orjson.dumps(body).replace(b'"commitments":"opaque"', b'"commitments":' + number)
    static = b'{"credentialAttributes": {"birthDay": ' + number + b"}}"
    for path, content in (("/issue", raw), ("/issue_static", static)):
        response = await client.post(path, content=content, headers=JSON_HEADERS)
        assert response.status_code == 400, (path, response.text)
        assert response.text.startswith("body is not JSON: number is infinity"), response.text
    totals = (await client.get("/_stats")).json()["totals"]
    assert totals["issue"] == {"bad_request": 1}


async def test_nonce_is_single_use(client):
    """A second /issue with the same nonce is refused with a 4xx plain-text body."""
    prepared = await prepare(client, 1)
    first = await client.post(
        "/issue", json=issue_body(prepared, [ATTRIBUTES]), headers=JSON_HEADERS
    )
    again = await client.post(
        "/issue", json=issue_body(prepared, [ATTRIBUTES]), headers=JSON_HEADERS
    )
    assert first.status_code == 200
    assert again.status_code == 400
    assert again.headers["content-type"].startswith("text/plain")
    totals = (await client.get("/_stats")).json()["totals"]
    assert totals["issue"] == {"ok": 1, "bad_request": 1}


async def test_a_stale_nonce_leaves_a_control_fault_pending(client):
    """An /issue refused for its nonce is the client's mistake: the `_control` fault waits on."""
    await client.put("/_control", json={"fault": "bad-signature", "faultCount": 1})
    prepared = await prepare(client, 1)
    stale = issue_body({**prepared, "issuerNonce": "bm90IGlzc3VlZA=="}, [ATTRIBUTES])
    stale["issueCommitmentMessage"]["issuerNonce"] = "bm90IGlzc3VlZA=="
    refused = await client.post("/issue", json=stale, headers=JSON_HEADERS)
    assert (refused.status_code, refused.text) == (
        400,
        "issuerNonce is unknown, already used or expired",
    )
    control = (await client.get("/_control")).json()
    assert (control["fault"], control["faultCount"]) == ("bad-signature", 1)
    signed = await client.post(
        "/issue", json=issue_body(prepared, [ATTRIBUTES]), headers=JSON_HEADERS
    )
    assert signed.status_code == 200
    totals = (await client.get("/_stats")).json()["totals"]
    assert totals["issue"] == {"bad_request": 1, "fault:bad-signature": 1}


@pytest.mark.parametrize("sets", [1, 2], ids=["used-nonce", "more-sets-than-prepared"])
async def test_a_fault_header_does_not_hide_a_nonce_refusal(client, sets):
    """A used nonce, or more sets than it was prepared for, is a 400 under any fault header."""
    prepared = await prepare(client, 1)
    if sets == 1:
        used = await client.post(
            "/issue", json=issue_body(prepared, [ATTRIBUTES]), headers=JSON_HEADERS
        )
        assert used.status_code == 200
    headers = {**JSON_HEADERS, "X-Fake-Signer-Fault": "status=503"}
    response = await client.post(
        "/issue", json=issue_body(prepared, [ATTRIBUTES] * sets), headers=headers
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert (await client.get("/_stats")).json()["totals"]["issue"]["bad_request"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"\\ud800": 1}', id="lone-surrogate-key"),
        pytest.param(b'{"x": ["\\udc00"]}', id="lone-low-surrogate-in-list"),
        pytest.param(b'{"\xed\xa0\x80": 1}', id="utf8-encoded-surrogate"),
        pytest.param('{"x": 1}'.encode("utf-16"), id="utf-16"),
    ],
)
async def test_issue_refuses_text_that_is_not_unicode(client, raw):
    """Lone surrogates and non-UTF-8 bodies get 400 text/plain, not a 500 with a traceback."""
    response = await client.post("/issue", content=raw, headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "body is not JSON" in response.text


async def test_lone_surrogate_attribute_leaves_the_nonce_usable(client):
    """An attribute holding a lone surrogate is refused before signing: the nonce still works."""
    prepared = await prepare(client, 1)
    body = orjson.dumps(issue_body(prepared, [{**ATTRIBUTES, "firstNameInitial": "X"}]))
    refused = await client.post(
        "/issue", content=body.replace(b'"X"', b'"\\ud800"'), headers=JSON_HEADERS
    )
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("text/plain")
    paired = body.replace(b'"X"', b'"\\ud83d\\ude00"')  # a valid pair: one emoji, accepted
    accepted = await client.post("/issue", content=paired, headers=JSON_HEADERS)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()[0]["attributes"]["firstNameInitial"] == "\U0001f600"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(credentialsAttributes=[ATTRIBUTES] * 3), id="too-many"),
        pytest.param(
            lambda b: b.update(issueCommitmentMessage={"issuerNonce": "AAAA"}), id="other-nonce"
        ),
        pytest.param(
            lambda b: b.update(
                prepareIssueMessage={"issuerNonce": "AAAAAAAAAAAAAAAAAAAAAA=="},
                issueCommitmentMessage={"issuerNonce": "AAAAAAAAAAAAAAAAAAAAAA=="},
            ),
            id="unknown-nonce",
        ),
        pytest.param(
            lambda b: b.update(credentialsAttributes=[{**ATTRIBUTES, "validFrom": 1}]),
            id="non-string",
        ),
        pytest.param(
            lambda b: b.update(credentialsAttributes=[{**ATTRIBUTES, "extra": "x"}]), id="extra"
        ),
        pytest.param(
            lambda b: b.update(credentialsAttributes=[_without(ATTRIBUTES, "birthMonth")]),
            id="missing-attribute",
        ),
        pytest.param(lambda b: b.update(credentialsAttributes=[]), id="no-attribute-sets"),
        pytest.param(lambda b: b.update(prepareIssueMessage={}), id="prepare-without-nonce"),
        pytest.param(
            lambda b: b.update(issueCommitmentMessage=[b["prepareIssueMessage"]]),
            id="commitment-not-an-object",
        ),
        pytest.param(lambda b: b.update(extra=1), id="unknown-field"),
        pytest.param(lambda b: b.pop("issueCommitmentMessage"), id="missing-field"),
    ],
)
async def test_issue_refuses_bad_requests(client, mutate):
    """Nonce mismatches, too many attribute sets and bad shapes get a plain-text 400."""
    prepared = await prepare(client, 2)
    body = issue_body(prepared, [ATTRIBUTES])
    mutate(body)
    response = await client.post("/issue", json=body, headers=JSON_HEADERS)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")


def _without(attributes, name):
    return {key: value for key, value in attributes.items() if key != name}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/prepare_issue", {"credentialAmount": 1, "extra": 1}),
        ("/prepare_issue", {}),
        ("/issue_static", {"credentialAttributes": ATTRIBUTES, "extra": 1}),
        ("/issue_static", {}),
        ("/issue_static", {"credentialAttributes": _without(ATTRIBUTES, "isSpecimen")}),
        ("/issue_static", {"credentialAttributes": [ATTRIBUTES]}),
        ("/issue_static", {"credentialAttributes": {**ATTRIBUTES, "validFrom": 1700000000}}),
        ("/issue_static", {"credentialAttributes": {**ATTRIBUTES, "isSpecimen": False}}),
    ],
)
async def test_unknown_missing_or_misshapen_fields_are_400(client, path, body):
    """Unknown or missing fields or attributes, attributes not an object or not text: 400 text."""
    response = await client.post(path, json=body, headers=JSON_HEADERS)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")


async def test_refused_domestic_requests_count_as_bad_requests(client):
    """A JSON body that is not an object is 400 on each endpoint, counted as `bad_request`."""
    for path in ("/prepare_issue", "/issue", "/issue_static"):
        response = await client.post(path, content=b"[1]", headers=JSON_HEADERS)
        assert response.status_code == 400
        assert response.text == "body must be a JSON object"
    totals = (await client.get("/_stats")).json()["totals"]
    assert totals == {
        name: {"bad_request": 1} for name in ("prepare_issue", "issue", "issue_static")
    }


async def test_issue_refuses_a_body_nested_too_deep_to_parse(client):
    """A body nested past the parser's depth is 400 "not JSON", not a 500 with a traceback."""
    response = await client.post("/issue", content=b"[" * 100_000, headers=JSON_HEADERS)
    assert response.status_code == 400
    assert response.text.startswith("body is not JSON")


async def test_issue_static_verifies_with_published_key(client):
    """The NL2 QR carries kid, canonical attributes and an Ed25519 signature that verifies."""
    entry, public_key = await domestic_key(client)
    response = await client.post(
        "/issue_static", json={"credentialAttributes": ATTRIBUTES}, headers=JSON_HEADERS
    )
    assert response.status_code == 200
    body = response.json()
    assert body["qr"].startswith("NL2:")
    kid, attributes_cbor, signature = cbor2.loads(base45.b45decode(body["qr"][4:]))
    assert kid == b64d(entry["kid"])
    assert attributes_cbor == cbor2.dumps(ATTRIBUTES, canonical=True)
    assert cbor2.loads(attributes_cbor) == ATTRIBUTES
    public_key.verify(signature, b"NL2-static\x00" + attributes_cbor)
    expected = base64.b64encode(hashlib.sha256(signature).digest()[:16]).decode()
    assert body["proofIdentifier"] == expected


@pytest.mark.parametrize("path", ["/prepare_issue", "/issue", "/issue_static"])
@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "text/plain", "application/cbor", None]
)
async def test_only_exact_json_content_type_is_accepted(client, path, content_type):
    """Anything but exactly `application/json` is 400 plain text, as the Idemix server answers."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await client.post(path, content=b'{"credentialAmount": 1}', headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("path", ["/prepare_issue", "/issue", "/issue_static"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_domestic_endpoints_are_post_only(client, path, method):
    """Other methods than POST are 405."""
    assert (await client.request(method, path)).status_code == 405


@pytest.mark.parametrize("amount", [0, 101, "2", 1.5, None, True])
async def test_prepare_issue_checks_the_amount(client, amount):
    """CredentialAmount must be an integer from 1 to 100."""
    response = await client.post(
        "/prepare_issue", json={"credentialAmount": amount}, headers=JSON_HEADERS
    )
    assert response.status_code == 400


@pytest.mark.parametrize("amount", [1, 100])
async def test_prepare_issue_takes_amounts_from_1_to_100(client, amount):
    """Both ends of 1..100 are handed a nonce for that amount."""
    assert (await prepare(client, amount))["credentialAmount"] == amount


@pytest.mark.parametrize("spec", ["bad-signature", "wrong-kid"])
async def test_signature_faults_pass_prepare_issue_by(client, spec):
    """A `_control` bad-signature or wrong-kid leaves /prepare_issue alone and hits the /issue."""
    entry, public_key = await domestic_key(client)
    await client.put("/_control", json={"fault": spec, "faultCount": 1})
    prepared = await prepare(client, 1)
    assert prepared["issuerPkId"] == entry["kid"]
    response = await client.post(
        "/issue", json=issue_body(prepared, [ATTRIBUTES]), headers=JSON_HEADERS
    )
    (message,) = response.json()
    signed = message["issueSignatureMessage"]
    data = b"NL2-issue\x00" + cbor2.dumps([prepared["issuerNonce"], ATTRIBUTES], canonical=True)
    if spec == "wrong-kid":
        assert signed["kid"] != entry["kid"]
        public_key.verify(b64d(signed["signature"]), data)
    else:
        assert signed["kid"] == entry["kid"]
        with pytest.raises(InvalidSignature):
            public_key.verify(b64d(signed["signature"]), data)
    totals = (await client.get("/_stats")).json()["totals"]
    assert totals == {"prepare_issue": {"ok": 1}, "issue": {f"fault:{spec}": 1}}


@pytest.mark.parametrize("spec", ["bad-signature", "wrong-kid"])
async def test_signature_fault_header_on_prepare_issue_is_400(client, spec):
    """/prepare_issue signs nothing: a bad-signature or wrong-kid header for it is refused."""
    headers = {**JSON_HEADERS, "X-Fake-Signer-Fault": spec}
    response = await client.post("/prepare_issue", json={"credentialAmount": 1}, headers=headers)
    assert response.status_code == 400
    assert "signs nothing" in response.text


async def test_a_control_fault_that_signs_nothing_hits_prepare_issue(client):
    """Pin that only signature faults pass /prepare_issue by: a `_control` status answers it."""
    await client.put("/_control", json={"fault": "status=503;retry-after=4", "faultCount": 1})
    response = await client.post(
        "/prepare_issue", json={"credentialAmount": 1}, headers=JSON_HEADERS
    )
    assert (response.status_code, response.headers.get("retry-after")) == (503, "4")
    assert (await client.get("/_control")).json()["fault"] is None
    assert (await prepare(client, 1))["credentialAmount"] == 1
    totals = (await client.get("/_stats")).json()["totals"]
    assert totals == {"prepare_issue": {"fault:status": 1, "ok": 1}}
