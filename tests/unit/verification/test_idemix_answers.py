"""An Idemix signer's answers held to the request: real static QRs, and signatures made here."""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import replace
from typing import Any

import pytest

from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.idemix import attribute_int, credential_attribute_values
from signing_gateway.verification.idemix_answers import check_issue_answer, check_static_answer
from tests.support.idemix_holder import disclosure_proof
from tests.support.idemix_issuer import (
    TEST_KEY,
    commitment_message,
    issue_answer,
    make_holder,
)
from tests.unit.verification.idemix_qr_support import make_qr, proof_fields
from tests.unit.verification.idemix_testdata import (
    CATEGORY_1G_QR,
    CATEGORY_ABSENT_QR,
    DENIED,
    DENIED_PROOF_IDENTIFIER,
    DENIED_QR,
    PAPER,
)

KEYS = {"VWS-TEST-0": TEST_KEY}
#: The issuer nonce the app's proofs are made for (the gateway does not check them).
ISSUER_NONCE = 1 << 100
ISSUED = [
    {**PAPER, "isPaperProof": "0", "validFrom": "1700000000", "validForHours": "24"},
    {**PAPER, "isPaperProof": "0", "validFrom": "1700086400", "category": "1"},
]


def static_reason(qr: str, proof_identifier: str, expected: dict[str, str]) -> str:
    """The reason check_static_answer refuses with."""
    with pytest.raises(CredentialVerificationError) as caught:
        check_static_answer(qr, proof_identifier, keys=KEYS, expected_attributes=expected)
    return caught.value.reason


def test_real_static_qr_with_its_attributes_and_proof_identifier_passes():
    """The mobile-core denied QR, its attributes and its proofIdentifier are taken."""
    check_static_answer(DENIED_QR, DENIED_PROOF_IDENTIFIER, keys=KEYS, expected_attributes=DENIED)


@pytest.mark.parametrize(
    ("expected", "why"),
    [
        ({**DENIED, "birthDay": "2"}, "another attribute value"),
        ({**DENIED, "category": ""}, "an attribute more"),
        ({k: v for k, v in DENIED.items() if k != "birthMonth"}, "an attribute fewer"),
    ],
)
def test_static_qr_over_other_attributes_is_refused(expected, why):
    """A QR disclosing other attributes than those asked for is refused (exact match)."""
    assert static_reason(DENIED_QR, DENIED_PROOF_IDENTIFIER, expected) == "payload-mismatch", why


def test_static_qr_of_a_category_the_request_did_not_name_is_refused():
    """A version 3 QR disclosing a category is refused for a request without one."""
    assert static_reason(CATEGORY_1G_QR, "", PAPER) == "payload-mismatch"


def test_static_qr_with_another_proof_identifier_is_refused():
    """The proofIdentifier beside the QR must be the QR's own."""
    other = base64.b64encode(b"\x00" * 16).decode()
    assert static_reason(DENIED_QR, other, DENIED) == "proof-identifier-mismatch"


def test_tampered_static_qr_is_refused():
    """A QR whose disclosed attribute was changed no longer verifies."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    tampered = make_qr(replace(fields, a_disclosed=(*fields.a_disclosed[:-1], 9)))
    assert static_reason(tampered, "", PAPER) == "bad-signature"


def test_static_qr_disclosed_at_another_time_is_refused():
    """A static QR is disclosed at time 0; another time is refused (it fixes the nonce)."""
    qr = make_qr(replace(proof_fields(CATEGORY_ABSENT_QR), disclosure_time=1))
    assert static_reason(qr, "", PAPER) == "nonce-mismatch"


@pytest.fixture(scope="module")
def answer() -> tuple[list[dict[str, Any]], bytes]:
    """Two credentials signed over ISSUED, and their commitment."""
    return issue_answer(ISSUED, nonce1=ISSUER_NONCE)


def issue_reason(items, commitment: bytes, **options: Any) -> str:
    """The reason check_issue_answer refuses with."""
    with pytest.raises(CredentialVerificationError) as caught:
        check_issue_answer(
            items,
            keys=KEYS,
            commitment=commitment,
            issuer_pk_id=options.get("issuer_pk_id", "VWS-TEST-0"),
            expected_attributes=options.get("expected", ISSUED),
        )
    return caught.value.reason


def test_issued_signatures_over_the_requested_attributes_pass(answer):
    """Every item verifies against its commitment, the session's key and the attributes asked."""
    items, commitment = answer
    check_issue_answer(
        items,
        keys=KEYS,
        commitment=commitment,
        issuer_pk_id="VWS-TEST-0",
        expected_attributes=ISSUED,
    )


def test_items_in_another_order_are_refused(answer):
    """Each item answers its own attribute set: swapped, they are refused."""
    items, commitment = answer
    assert issue_reason(items[::-1], commitment) == "payload-mismatch"


def test_attributes_other_than_those_asked_are_refused(answer):
    """An item listing other attribute values than those asked for is refused."""
    items, commitment = answer
    expected = [{**ISSUED[0], "birthDay": "28"}, ISSUED[1]]
    assert issue_reason(items, commitment, expected=expected) == "payload-mismatch"


def test_signature_for_another_commitment_is_refused(answer):
    """A signature over another app's U is refused."""
    items, _ = answer
    other = json.dumps(commitment_message([make_holder(), make_holder()], ISSUER_NONCE)).encode()
    assert issue_reason(items, other) == "bad-signature"


@pytest.mark.parametrize(
    ("cut", "reason"),
    [("items", "count-mismatch"), ("commitments", "count-mismatch")],
)
def test_counts_must_match_the_attribute_sets(answer, cut, reason):
    """One item, or one commitment of the app, fewer than the sets asked for is refused."""
    items, commitment = answer
    if cut == "items":
        items = items[:1]
    else:
        message = json.loads(commitment)
        message["combinedProofs"] = message["combinedProofs"][:1]
        commitment = json.dumps(message).encode()
    assert issue_reason(items, commitment) == reason


def test_session_key_not_configured_is_refused(answer):
    """A session opened for an issuerPkId the gateway has no key for is refused."""
    items, commitment = answer
    assert issue_reason(items, commitment, issuer_pk_id="VWS-PROD-9") == "unknown-kid"


@pytest.mark.parametrize(
    "message",
    [
        {"n_2": "AQ=="},
        {"combinedProofs": [{"U": "AQ=="}, {"U": "AQ=="}]},
        {"combinedProofs": [{"U": "not base64!"}, {"U": "AQ=="}], "n_2": "AQ=="},
        {"combinedProofs": [{"U": 1.5}, {"U": "AQ=="}], "n_2": "AQ=="},
    ],
    ids=["no-proofs", "no-nonce", "u-not-base64", "u-a-float"],
)
def test_unreadable_commitment_is_refused(answer, message):
    """A commitment without readable U's and n_2 cannot be checked against: refused."""
    items, _ = answer
    assert issue_reason(items, json.dumps(message).encode()) == "decode-failed"


def test_static_qr_that_is_not_a_paper_proof_is_refused_though_asked_for():
    """A static QR must be a paper proof, even when the request asked for isPaperProof "0"."""
    attributes = {**PAPER, "isPaperProof": "0"}
    numbers = [secrets.randbits(256)]
    numbers += map(
        attribute_int,
        credential_attribute_values(attributes, issuer_pk_id="VWS-TEST-0", credential_version=2),
    )
    qr = make_qr(disclosure_proof(numbers))
    assert static_reason(qr, "", attributes) == "payload-mismatch"


def test_every_item_is_checked_not_only_the_first(answer):
    """A second item whose signature is another item's is refused."""
    items, commitment = answer
    second = {**items[1], "issueSignatureMessage": items[0]["issueSignatureMessage"]}
    assert issue_reason([items[0], second], commitment) == "bad-signature"


def test_commitment_numbers_may_be_json_numbers(answer):
    """U and n_2 may be JSON numbers, which gabi reads as big integers too."""
    items, commitment = answer
    message = json.loads(commitment)
    for proof in message["combinedProofs"]:
        proof["U"] = int.from_bytes(base64.b64decode(proof["U"]), "big")
    message["n_2"] = int.from_bytes(base64.b64decode(message["n_2"]), "big")
    check_issue_answer(
        items,
        keys=KEYS,
        commitment=json.dumps(message).encode(),
        issuer_pk_id="VWS-TEST-0",
        expected_attributes=ISSUED,
    )


@pytest.mark.parametrize(
    "message",
    [
        {"combinedProofs": [{"U": -1}, {"U": "AQ=="}], "n_2": "AQ=="},
        {"combinedProofs": [{"U": True}, {"U": "AQ=="}], "n_2": "AQ=="},
        {"combinedProofs": [{"U": "AQ=="}, {"U": "AQ=="}], "n_2": -5},
        {"combinedProofs": ["AQ==", {"U": "AQ=="}], "n_2": "AQ=="},
    ],
    ids=["u-negative", "u-true", "nonce-negative", "proof-not-object"],
)
def test_commitment_numbers_that_are_no_big_integers_are_refused(answer, message):
    """Negative numbers, booleans and non-objects in the app's commitment are refused."""
    items, _ = answer
    assert issue_reason(items, json.dumps(message).encode()) == "decode-failed"
