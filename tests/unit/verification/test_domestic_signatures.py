"""Domestic (NL2 simulation) verification: static QR codes and issue signatures."""

from __future__ import annotations

import base45
import cbor2
import pytest

from signing_gateway.verification.domestic import (
    MAX_QR_CHARS,
    verify_issue_signatures,
    verify_static_qr,
)
from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.trust import DomesticKey, DomesticTrustStore
from tests.support.credentials import (
    DomesticSigner,
    b64,
    cbor_map,
    make_domestic_signer,
    proof_identifier,
    sample_attributes,
)

NONCE = b64(b"\x07" * 16)


@pytest.fixture(scope="module")
def signer() -> DomesticSigner:
    """One domestic signing key shared by this module."""
    return make_domestic_signer()


@pytest.fixture(scope="module")
def trust(signer) -> DomesticTrustStore:
    """A store trusting exactly the module's signer."""
    return DomesticTrustStore([DomesticKey.from_raw(signer.raw_public)])


def static_reason(qr, trust, *, proof, expected=None) -> str:
    """The reason verify_static_qr refuses ``qr`` with."""
    with pytest.raises(CredentialVerificationError) as caught:
        verify_static_qr(
            qr,
            trust=trust,
            expected_attributes=expected or sample_attributes(),
            proof_identifier=proof,
        )
    return caught.value.reason


def issue_reason(items, trust, *, nonce=NONCE, pk_id=None, expected=None) -> str:
    """The reason verify_issue_signatures refuses ``items`` with.

    The session's issuerPkId is ``pk_id``, by default the kid of the first key ``trust`` holds.
    """
    with pytest.raises(CredentialVerificationError) as caught:
        verify_issue_signatures(
            items,
            trust=trust,
            issuer_nonce=nonce,
            issuer_pk_id=pk_id or trust.to_public_json()[0]["kid"],
            expected_attributes=expected if expected is not None else [sample_attributes()],
        )
    return caught.value.reason


def test_valid_static_qr_verifies(signer, trust):
    """A static QR signed by a trusted key over the expected attributes verifies."""
    qr, signature = signer.static_qr(sample_attributes())
    verify_static_qr(
        qr,
        trust=trust,
        expected_attributes=sample_attributes(),
        proof_identifier=proof_identifier(signature),
    )


def test_static_qr_bad_signature(signer, trust):
    """A QR whose signature covers other attributes gives bad-signature."""
    other = {**sample_attributes(), "birthDay": "1"}
    qr, signature = signer.static_qr(sample_attributes(), signed_attrs=other)
    assert static_reason(qr, trust, proof=proof_identifier(signature)) == "bad-signature"


def test_static_qr_unknown_kid(signer, trust):
    """A QR naming an unknown kid gives unknown-kid."""
    qr, signature = signer.static_qr(sample_attributes(), kid=b"\x01" * 8)
    assert static_reason(qr, trust, proof=proof_identifier(signature)) == "unknown-kid"


def test_static_qr_other_signer_key(trust):
    """A QR signed by an untrusted key gives unknown-kid (its own kid is unknown)."""
    qr, signature = make_domestic_signer().static_qr(sample_attributes())
    assert static_reason(qr, trust, proof=proof_identifier(signature)) == "unknown-kid"


def test_static_qr_payload_mismatch(signer, trust):
    """A genuine QR over different attributes than requested gives payload-mismatch."""
    other = {**sample_attributes(), "firstNameInitial": "Z"}
    qr, signature = signer.static_qr(other)
    assert static_reason(qr, trust, proof=proof_identifier(signature)) == "payload-mismatch"


@pytest.mark.parametrize(
    "entries",
    [
        [
            ("firstNameInitial", "Z"),
            *cbor2.loads(cbor2.dumps(sample_attributes(), canonical=True)).items(),
        ],
        sorted(sample_attributes().items()),
    ],
    ids=["repeated-key", "keys-not-canonical"],
)
def test_static_qr_signed_over_other_bytes_of_the_same_attributes_is_a_mismatch(
    signer, trust, entries
):
    """Pin that the signed bytes must be the canonical CBOR of the attributes, byte for byte.

    Decoded, each of these is the requested attribute map. With a key named twice, a reader
    keeping the first value sees another initial; out of canonical key order, a verifier that
    re-encodes the attributes checks the signature over other bytes.
    """
    attrs_cbor = cbor_map((cbor2.dumps(key), cbor2.dumps(value)) for key, value in entries)
    signature = signer.key.sign(b"NL2-static\x00" + attrs_cbor)
    body = cbor2.dumps([signer.kid, attrs_cbor, signature])
    qr = "NL2:" + base45.b45encode(body).decode("ascii")
    assert static_reason(qr, trust, proof=proof_identifier(signature)) == "payload-mismatch"


def test_static_qr_of_other_attributes_with_a_bad_signature_counts_as_bad_signature(signer, trust):
    """Pin that the signature is checked before the attributes: a forgery is bad-signature."""
    other = {**sample_attributes(), "firstNameInitial": "Z"}
    qr, signature = signer.static_qr(other, signed_attrs=sample_attributes())
    assert static_reason(qr, trust, proof=proof_identifier(signature)) == "bad-signature"


def test_static_qr_proof_identifier_mismatch(signer, trust):
    """A proofIdentifier not derived from the QR's signature is refused."""
    qr, _ = signer.static_qr(sample_attributes())
    assert static_reason(qr, trust, proof=proof_identifier(b"x")) == "proof-identifier-mismatch"


@pytest.mark.parametrize(
    "qr",
    [
        "HC1:xyz",
        "NL2:@@@",
        "NL2:" + base45.b45encode(b"\xff").decode(),
        "NL2:" + base45.b45encode(cbor2.dumps([b"k", b"a"])).decode(),
        "NL2:" + base45.b45encode(cbor2.dumps([b"k", {"a": "b"}, b"s"])).decode(),
    ],
    ids=["prefix", "base45", "cbor", "two-parts", "attrs-not-bytes"],
)
def test_static_qr_malformed(qr, trust):
    """Structural defects in a QR give decode-failed."""
    assert static_reason(qr, trust, proof="") == "decode-failed"


def test_static_qr_with_bytes_after_it_is_refused(signer, trust):
    """A genuine QR followed by a second item gives decode-failed: nothing rides along unchecked."""
    qr, signature = signer.static_qr(sample_attributes())
    other, _ = signer.static_qr({**sample_attributes(), "firstNameInitial": "Z"})
    body = base45.b45decode(qr[4:]) + base45.b45decode(other[4:])
    padded = "NL2:" + base45.b45encode(body).decode()
    assert static_reason(padded, trust, proof=proof_identifier(signature)) == "decode-failed"


def test_static_qr_with_a_fourth_part_is_refused(signer, trust):
    """A genuine QR whose array carries a fourth element gives decode-failed, not an error.

    Nothing rides along unchecked, and the refusal is counted like any other.
    """
    qr, signature = signer.static_qr(sample_attributes())
    parts = cbor2.loads(base45.b45decode(qr[4:]))
    text = "NL2:" + base45.b45encode(cbor2.dumps([*parts, b"extra"])).decode()
    assert static_reason(text, trust, proof=proof_identifier(signature)) == "decode-failed"


def test_static_qr_holding_a_tag_is_refused(signer, trust):
    """A genuine QR whose signature is marked shareable (tag 28, dropped by cbor2) is refused."""
    qr, signature = signer.static_qr(sample_attributes())
    kid, attributes, _ = cbor2.loads(base45.b45decode(qr[4:]))
    tagged = cbor2.dumps([kid, attributes, cbor2.CBORTag(28, signature)])
    text = "NL2:" + base45.b45encode(tagged).decode()
    assert static_reason(text, trust, proof=proof_identifier(signature)) == "decode-failed"


def test_static_qr_too_long(trust):
    """A QR over the character cap is refused as too-large."""
    assert static_reason("NL2:" + "0" * 9000, trust, proof="") == "too-large"


def test_static_qr_at_the_character_cap_is_decoded_and_one_more_is_too_large(trust):
    """A QR of exactly MAX_QR_CHARS goes on to Base45; one character more is too-large."""
    at_cap = "NL2:" + "0" * (MAX_QR_CHARS - len("NL2:"))
    assert static_reason(at_cap, trust, proof="") == "decode-failed"
    assert static_reason(at_cap + "0", trust, proof="") == "too-large"


@pytest.mark.parametrize("prefix", ["NL1:", "HC1:"])
def test_static_qr_under_another_prefix_is_refused(signer, trust, prefix):
    """A genuine QR body behind a prefix other than NL2: gives decode-failed."""
    qr, signature = signer.static_qr(sample_attributes())
    text = prefix + qr.removeprefix("NL2:")
    assert static_reason(text, trust, proof=proof_identifier(signature)) == "decode-failed"


def test_issue_signatures_verify(signer, trust):
    """Every item signed over the session nonce and the expected attributes verifies."""
    attrs = [sample_attributes(), {**sample_attributes(), "validFrom": "1700086400"}]
    items = [signer.issue_item(NONCE, a) for a in attrs]
    verify_issue_signatures(
        items,
        trust=trust,
        issuer_nonce=NONCE,
        issuer_pk_id=b64(signer.kid),
        expected_attributes=attrs,
    )


def test_issue_signed_with_another_trusted_key_than_the_sessions_is_refused(signer):
    """Pin that a signature by a trusted key other than the session's issuerPkId gives kid-mismatch.

    The app committed to the key its prepare-issue message named, and the signer is handed
    that message back: a credential under another key is not the session's, however genuine.
    """
    other = make_domestic_signer()
    trust = DomesticTrustStore(DomesticKey.from_raw(s.raw_public) for s in (signer, other))
    items = [signer.issue_item(NONCE, sample_attributes())]
    assert issue_reason(items, trust, pk_id=b64(other.kid)) == "kid-mismatch"
    items = [
        signer.issue_item(NONCE, sample_attributes()),
        other.issue_item(NONCE, sample_attributes()),
    ]
    expected = [sample_attributes()] * 2
    assert issue_reason(items, trust, pk_id=b64(signer.kid), expected=expected) == "kid-mismatch"


@pytest.mark.parametrize(("answered", "requested"), [(1, 2), (2, 1)], ids=["fewer", "more"])
def test_issue_count_mismatch(signer, trust, answered, requested):
    """Fewer or more items than requested credentials gives count-mismatch."""
    items = [signer.issue_item(NONCE, sample_attributes())] * answered
    expected = [sample_attributes()] * requested
    assert issue_reason(items, trust, expected=expected) == "count-mismatch"


def test_issue_nonce_mismatch(signer, trust):
    """An item carrying another session's nonce gives nonce-mismatch."""
    items = [signer.issue_item(b64(b"\x08" * 16), sample_attributes())]
    assert issue_reason(items, trust) == "nonce-mismatch"


def test_issue_payload_mismatch(signer, trust):
    """An item for other attributes than requested gives payload-mismatch."""
    items = [signer.issue_item(NONCE, {**sample_attributes(), "isSpecimen": "1"})]
    assert issue_reason(items, trust) == "payload-mismatch"


def test_issue_bad_signature(signer, trust):
    """An item whose signature covers another nonce gives bad-signature."""
    item = signer.issue_item(b64(b"\x09" * 16), sample_attributes())
    item["issueSignatureMessage"]["issuerNonce"] = NONCE
    assert issue_reason([item], trust) == "bad-signature"


def test_issue_unknown_kid(signer, trust):
    """An item naming an unknown kid gives unknown-kid."""
    items = [signer.issue_item(NONCE, sample_attributes(), kid=b"\x03" * 8)]
    assert issue_reason(items, trust) == "unknown-kid"


@pytest.mark.parametrize(
    "item",
    [
        {"attributes": {}},
        {"issueSignatureMessage": {"kid": "%%", "issuerNonce": NONCE, "signature": "AA=="}},
        {"issueSignatureMessage": {"kid": "\u00e9", "issuerNonce": NONCE, "signature": "AA=="}},
        {"issueSignatureMessage": {"kid": "AA==", "issuerNonce": NONCE, "signature": "AA\u00e9="}},
        {"issueSignatureMessage": {"kid": "AA==", "issuerNonce": 5, "signature": "AA=="}},
        {
            "issueSignatureMessage": {"kid": "AA==", "issuerNonce": NONCE, "signature": "AA=="},
            "attributes": {"a": 1},
        },
    ],
    ids=[
        "no-message",
        "kid-base64",
        "kid-non-ascii",
        "signature-non-ascii",
        "nonce-type",
        "attr-values",
    ],
)
def test_issue_malformed_items(item, trust):
    """Structurally wrong items give decode-failed."""
    assert issue_reason([item], trust) == "decode-failed"


def test_issue_signature_message_with_a_member_riding_along_is_refused(signer, trust):
    """Pin that a message of more than kid, nonce and signature is not released as verified.

    Only those three are checked; anything else in it would reach the app unverified.
    """
    item = signer.issue_item(NONCE, sample_attributes())
    item["issueSignatureMessage"]["note"] = "not covered by the signature"
    assert issue_reason([item], trust) == "decode-failed"


@pytest.mark.parametrize(
    ("field", "value"),
    [("kid", None), ("kid", True), ("signature", None), ("signature", True)],
    ids=["kid-missing", "kid-true", "signature-missing", "signature-true"],
)
def test_issue_item_without_a_base64_kid_or_signature_is_a_decode_failure(
    signer, trust, field, value
):
    """Pin that a missing or non-text kid or signature is not read as the text "None"/"True".

    Those are four base64 characters each, which named a kid nobody has (unknown-kid) or a
    signature that does not verify (bad-signature): a rejection counted under the wrong reason.
    """
    item = signer.issue_item(NONCE, sample_attributes())
    message = item["issueSignatureMessage"]
    if value is None:
        del message[field]
    else:
        message[field] = value
    assert issue_reason([item], trust) == "decode-failed"


@pytest.mark.parametrize("field", ["kid", "signature"])
def test_issue_kid_or_signature_with_a_line_break_is_a_decode_failure(signer, trust, field):
    """Pin that the base64 of a kid or signature is read strictly: a line break is decode-failed.

    Read leniently, the break would be skipped: the signature verifies, and the refusal is
    counted under kid-mismatch (the kid text is not the session's), or not made at all.
    """
    item = signer.issue_item(NONCE, sample_attributes())
    message = item["issueSignatureMessage"]
    message[field] = message[field][:4] + "\n" + message[field][4:]
    assert issue_reason([item], trust) == "decode-failed"
