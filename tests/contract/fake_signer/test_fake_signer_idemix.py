"""`--domestic-scheme idemix`: real CL signatures and NL2 QRs, checked with the gateway's verifiers.

The fake signs with the CoronaCheck test key VWS-TEST-0; what it answers is verified here with
`signing_gateway.verification.idemix*` against that key's public XML from the tests' own data
(the fake never imports the gateway; tests may use both). The holder's commitment is built as
the app builds it, ``U = S^v' * R_0^secret``.
"""

from __future__ import annotations

import httpx
import pytest

from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.idemix import credential_attribute_values, verify_static_qr
from signing_gateway.verification.idemix_issuance import verify_issue_signature
from signing_gateway.verification.idemix_keys import IdemixPublicKey
from tests.contract.fake_signer.signer_wire import (
    ATTRIBUTES,
    DEFAULT_CONTROL,
    JSON_HEADERS,
    b64d,
    stats,
)
from tests.support.fake_signer_process import running_fake_signer
from tests.support.idemix_issuer import (
    Holder,
    b64,
    commitment_message,
    issuer_nonce,
    make_holder,
    make_holders,
)
from tests.support.idemix_tampering import TAMPERS, tamper_each
from tests.unit.verification.idemix_testdata import TEST_KEY_XML

KEY = IdemixPublicKey.from_xml(TEST_KEY_XML)
KEYS = {"VWS-TEST-0": KEY}
WITH_CATEGORY = {**ATTRIBUTES, "category": "3"}


def asked_values(attributes: dict[str, str]) -> tuple[bytes, ...]:
    """The attribute bytes of a credential: version 3 with a category, else 2."""
    version = 3 if "category" in attributes else 2
    return credential_attribute_values(
        attributes, issuer_pk_id="VWS-TEST-0", credential_version=version
    )


@pytest.fixture(scope="module")
def idemix_signer():
    """One domestic fake signer in the idemix scheme for the module."""
    with running_fake_signer("--role", "domestic", "--domestic-scheme", "idemix") as signer:
        yield signer


@pytest.fixture
async def client(idemix_signer):
    """A client on the module's idemix fake signer, its control state reset."""
    async with httpx.AsyncClient(base_url=idemix_signer.base_url, timeout=5) as control:
        (await control.put("/_control", json=DEFAULT_CONTROL)).raise_for_status()
    async with httpx.AsyncClient(base_url=idemix_signer.base_url, timeout=30) as http:
        yield http


async def prepare(client, amount: int) -> dict:
    """A prepare_issue message."""
    response = await client.post(
        "/prepare_issue", json={"credentialAmount": amount}, headers=JSON_HEADERS
    )
    assert response.status_code == 200, response.text
    return response.json()


def issue_body(prepared: dict, holders: list[Holder], attributes: list[dict[str, str]]) -> dict:
    """An /issue body carrying gabi's IssueCommitmentMessage: one proof of U per credential."""
    return {
        "prepareIssueMessage": prepared,
        "issueCommitmentMessage": commitment_message(holders, issuer_nonce(prepared)),
        "credentialsAttributes": attributes,
    }


async def issue(client, attributes, *, headers=None):
    """Prepare and issue ``attributes``; the holders (one per set) and the answer."""
    holders = make_holders(len(attributes))
    prepared = await prepare(client, len(attributes))
    response = await client.post(
        "/issue",
        json=issue_body(prepared, holders, attributes),
        headers={**JSON_HEADERS, **(headers or {})},
    )
    return holders, response


def verify(message, holder: Holder, values) -> None:
    """The gateway's check of one issueSignatureMessage."""
    verify_issue_signature(
        message, key=KEY, commitment=holder.commitment, nonce2=holder.nonce2, attributes=values
    )


async def test_prepare_issue_names_the_test_key_and_a_gabi_nonce(client):
    """/prepare_issue answers issuerPkId VWS-TEST-0 and a base64 nonce of at most 128 bits."""
    first, second = await prepare(client, 2), await prepare(client, 2)
    assert first["issuerPkId"] == "VWS-TEST-0"
    assert first["credentialAmount"] == 2
    assert 0 < len(b64d(first["issuerNonce"])) <= 16
    assert first["issuerNonce"] != second["issuerNonce"]


async def test_issued_cl_signatures_verify_against_the_apps_commitment(client):
    """Each /issue item is a CL signature over U and its attributes that the gateway verifies."""
    holders, response = await issue(client, [ATTRIBUTES, WITH_CATEGORY])
    assert response.status_code == 200, response.text
    items = response.json()
    assert len(items) == 2
    for item, attributes, holder in zip(items, [ATTRIBUTES, WITH_CATEGORY], holders, strict=True):
        values = asked_values(attributes)
        assert [b64d(value) for value in item["attributes"]] == list(values)
        assert item["issueSignatureMessage"]["signature"]["KeyshareP"] is None
        verify(item["issueSignatureMessage"], holder, values)


async def test_signature_is_bound_to_the_commitment_sent(client):
    """A signature issued over one app's U does not verify for another app's."""
    _, response = await issue(client, [ATTRIBUTES])
    (item,) = response.json()
    with pytest.raises(CredentialVerificationError) as caught:
        verify(item["issueSignatureMessage"], make_holder(), asked_values(ATTRIBUTES))
    assert caught.value.reason == "bad-signature"


async def test_issue_static_qr_verifies_and_discloses_the_attributes(client):
    """/issue_static's NL2 QR verifies at disclosure time 0 and discloses what was asked."""
    for attributes in (ATTRIBUTES, WITH_CATEGORY):
        response = await client.post(
            "/issue_static", json={"credentialAttributes": attributes}, headers=JSON_HEADERS
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["qr"].startswith("NL2:")
        verified = verify_static_qr(body["qr"], KEYS)
        assert verified.attributes == attributes
        assert verified.issuer_pk_id == "VWS-TEST-0"
        assert verified.disclosure_time == 0
        assert b64d(body["proofIdentifier"]) == verified.proof_identifier


@pytest.mark.parametrize(("fault", "reason"), [("bad-signature", "bad-signature")])
async def test_issue_fault_makes_a_signature_the_gateway_refuses(client, fault, reason):
    """bad-signature: the /issue answer has its shape but its A does not verify."""
    (holder,), response = await issue(client, [ATTRIBUTES], headers={"X-Fake-Signer-Fault": fault})
    assert response.status_code == 200
    (item,) = response.json()
    with pytest.raises(CredentialVerificationError) as caught:
        verify(item["issueSignatureMessage"], holder, asked_values(ATTRIBUTES))
    assert caught.value.reason == reason


async def test_issue_wrong_kid_signs_metadata_naming_another_key(client):
    """wrong-kid: signed with the key, but over a metadata attribute naming another issuerPkId."""
    headers = {"X-Fake-Signer-Fault": "wrong-kid"}
    (holder,), response = await issue(client, [ATTRIBUTES], headers=headers)
    (item,) = response.json()
    returned = [b64d(value) for value in item["attributes"]]
    asked = asked_values(ATTRIBUTES)
    assert returned[0] != asked[0]
    assert returned[1:] == list(asked[1:])
    verify(item["issueSignatureMessage"], holder, returned)  # the signature is a real one
    with pytest.raises(CredentialVerificationError):
        verify(item["issueSignatureMessage"], holder, asked)


@pytest.mark.parametrize(
    ("fault", "reason"), [("bad-signature", "bad-signature"), ("wrong-kid", "unknown-kid")]
)
async def test_issue_static_faults_make_qrs_the_gateway_refuses(client, fault, reason):
    """bad-signature flips a bit of A'; wrong-kid names an issuerPkId nobody publishes."""
    response = await client.post(
        "/issue_static",
        json={"credentialAttributes": ATTRIBUTES},
        headers={**JSON_HEADERS, "X-Fake-Signer-Fault": fault},
    )
    assert response.status_code == 200
    with pytest.raises(CredentialVerificationError) as caught:
        verify_static_qr(response.json()["qr"], KEYS)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.pop("combinedProofs"),
        lambda c: c.pop("n_2"),
        lambda c: c["combinedProofs"][0].update(U="not base64!"),
        lambda c: c["combinedProofs"][0].update(U=b64(KEY.n)),
        lambda c: c["combinedProofs"][0].update(U=10**2000),
        lambda c: c.update(n_2=-1),
        lambda c: c["combinedProofs"].clear(),
        lambda c: c["combinedProofs"].append(dict(c["combinedProofs"][0])),
        lambda c: c["combinedProofs"][0].pop("c"),
        lambda c: c["combinedProofs"][0].update(v_prime_response="not base64!"),
        lambda c: c["combinedProofs"][0].update(s_response=None),
    ],
    ids=[
        "no-proofs",
        "no-n2",
        "u-not-base64",
        "u-not-below-n",
        "u-number-too-long",
        "n2-negative",
        "no-proof-for-the-set",
        "a-proof-too-many",
        "no-c",
        "v-prime-response-not-base64",
        "s-response-null",
    ],
)
async def test_unusable_commitment_is_refused_and_leaves_the_nonce(client, change):
    """A commitment without one usable proof of U per set or n_2 is a 400; the nonce lives on."""
    holder = make_holder()
    prepared = await prepare(client, 1)
    body = issue_body(prepared, [holder], [ATTRIBUTES])
    change(body["issueCommitmentMessage"])
    refused = await client.post("/issue", json=body, headers=JSON_HEADERS)
    assert refused.status_code == 400
    retried = await client.post(
        "/issue", json=issue_body(prepared, [holder], [ATTRIBUTES]), headers=JSON_HEADERS
    )
    assert retried.status_code == 200


async def test_issuer_nonce_is_single_use(client):
    """A second /issue with the same nonce is refused, as in the simulation."""
    holder = make_holder()
    prepared = await prepare(client, 1)
    body = issue_body(prepared, [holder], [ATTRIBUTES])
    assert (await client.post("/issue", json=body, headers=JSON_HEADERS)).status_code == 200
    assert (await client.post("/issue", json=body, headers=JSON_HEADERS)).status_code == 400


async def test_commitment_numbers_may_be_json_integers(client):
    """U and n_2 written as JSON integers, which gabi also reads, are signed over as base64 ones."""
    holder = make_holder()
    prepared = await prepare(client, 1)
    body = issue_body(prepared, [holder], [ATTRIBUTES])
    body["issueCommitmentMessage"]["combinedProofs"][0]["U"] = holder.commitment
    body["issueCommitmentMessage"]["n_2"] = holder.nonce2
    response = await client.post("/issue", json=body, headers=JSON_HEADERS)
    assert response.status_code == 200, response.text
    (item,) = response.json()
    verify(item["issueSignatureMessage"], holder, asked_values(ATTRIBUTES))


#: The Idemix server's answer to proofs of U that do not hold for the issuer nonce
#: (minvws/nl-covid19-coronacheck-idemix issuer.go Issue, wrapped by server.go handleIssue).
PROOF_REFUSED = "Could not issue credentials: Holder commitments did did not verify against nonce"


@pytest.mark.parametrize("tamper", TAMPERS)
async def test_proof_of_u_that_does_not_verify_is_refused_as_the_idemix_server_does(client, tamper):
    """A commitment whose proofs fail for the issuer nonce: the server's 500; the nonce lives on."""
    holders = make_holders(2)
    prepared, other = await prepare(client, 2), await prepare(client, 2)
    body = issue_body(prepared, holders, [ATTRIBUTES, WITH_CATEGORY])
    body["issueCommitmentMessage"] = tamper(holders, issuer_nonce(prepared), issuer_nonce(other))
    before = (await stats(client))["totals"].get("issue", {}).get("bad_request", 0)
    refused = await client.post("/issue", json=body, headers=JSON_HEADERS)
    assert refused.status_code == 500, refused.text
    assert refused.text == PROOF_REFUSED
    assert refused.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert (await stats(client))["totals"]["issue"]["bad_request"] == before + 1
    retried = await client.post(
        "/issue",
        json=issue_body(prepared, holders, [ATTRIBUTES, WITH_CATEGORY]),
        headers=JSON_HEADERS,
    )
    assert retried.status_code == 200, retried.text


async def test_refused_proof_of_u_uses_up_no_pending_fault(client):
    """A failing proof is refused before a fault is picked: the `_control` fault waits on."""
    holders = make_holders(1)
    prepared = await prepare(client, 1)
    (
        await client.put("/_control", json={"fault": "status=503", "faultCount": 1})
    ).raise_for_status()
    body = issue_body(prepared, holders, [ATTRIBUTES])
    body["issueCommitmentMessage"] = tamper_each("c")(holders, issuer_nonce(prepared), 0)
    refused = await client.post("/issue", json=body, headers=JSON_HEADERS)
    assert (refused.status_code, refused.text) == (500, PROOF_REFUSED)
    body = issue_body(prepared, holders, [ATTRIBUTES])
    faulted = await client.post("/issue", json=body, headers=JSON_HEADERS)
    assert faulted.status_code == 503
