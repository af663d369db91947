"""CoronaCheck Idemix static QRs: real ones verify, tampered and malformed ones are refused."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest

from signing_gateway.verification.domestic import MAX_QR_CHARS
from signing_gateway.verification.idemix import decode_qr_base45, verify_static_qr
from signing_gateway.verification.idemix_der import (
    encode_octet_string,
    encode_printable_string,
    encode_sequence,
)
from signing_gateway.verification.idemix_keys import IdemixPublicKey
from tests.unit.verification.idemix_qr_support import (
    attribute,
    attribute_bytes,
    detail,
    make_qr,
    proof_der,
    proof_fields,
    qr_base45,
    reason,
)
from tests.unit.verification.idemix_testdata import (
    CATEGORY_1G_QR,
    CATEGORY_3G_QR,
    CATEGORY_ABSENT_QR,
    CATEGORY_EMPTY_QR,
    DENIED,
    DENIED_PROOF_IDENTIFIER,
    DENIED_QR,
    DISCLOSED_AT,
    DISCLOSED_AT_QR,
    PAPER,
    TEST_KEY_P,
    TEST_KEY_Q,
    TEST_KEY_XML,
)

#: The order of the quadratic residues mod n, p'q': only the issuer (here: the test) knows it.
GROUP_ORDER = (TEST_KEY_P - 1) // 2 * ((TEST_KEY_Q - 1) // 2)


@pytest.fixture(scope="module")
def key() -> IdemixPublicKey:
    """The published CoronaCheck test issuer key."""
    return IdemixPublicKey.from_xml(TEST_KEY_XML)


@pytest.fixture(scope="module")
def keys(key):
    """The verifier's key list: the test key under both of its names."""
    return {"VWS-TEST-0": key, "testPk": key}


@pytest.mark.parametrize(
    ("qr", "version", "attributes"),
    [
        (CATEGORY_ABSENT_QR, 2, PAPER),
        (CATEGORY_EMPTY_QR, 3, {**PAPER, "category": ""}),
        (CATEGORY_1G_QR, 3, {**PAPER, "category": "1"}),
        (CATEGORY_3G_QR, 3, {**PAPER, "category": "3"}),
        (DENIED_QR, 2, DENIED),
    ],
    ids=["category-absent", "category-empty", "category-1g", "category-3g", "denied"],
)
def test_real_static_qrs_verify(qr, version, attributes, keys):
    """Each real static QR verifies and discloses its attributes, version and key id."""
    verified = verify_static_qr(qr, keys)
    assert verified.attributes == attributes
    assert verified.credential_version == version
    assert verified.issuer_pk_id == "VWS-TEST-0"
    assert verified.disclosure_time == 0
    assert verified.proof_identifier == hashlib.sha256(qr_c_bytes(qr)).digest()[:16]


def qr_c_bytes(qr: str) -> bytes:
    """The challenge C of ``qr`` as Go's ``big.Int.Bytes`` gives it."""
    c = proof_fields(qr).c
    return c.to_bytes((c.bit_length() + 7) // 8, "big")


def test_proof_identifier_is_the_one_mobile_core_denylists(keys):
    """The denied QR's proof identifier is the one mobile-core's config denylists."""
    verified = verify_static_qr(DENIED_QR, keys)
    assert base64.b64encode(verified.proof_identifier).decode() == DENIED_PROOF_IDENTIFIER


def test_qr_disclosed_at_a_time_verifies_near_that_time(keys):
    """A QR disclosed at t verifies with no fixed time when now is within the skew of t."""
    verified = verify_static_qr(DISCLOSED_AT_QR, keys, disclosure_time=None, now=DISCLOSED_AT + 60)
    assert verified.issuer_pk_id == "testPk"
    assert verified.disclosure_time == DISCLOSED_AT
    assert verified.attributes["isPaperProof"] == "0"
    assert verified.attributes["validFrom"] == "1628510400"
    assert verified.attributes["birthDay"] == "20"


def test_qr_disclosed_at_a_time_is_refused_as_a_static_qr(keys):
    """A QR not disclosed at time 0 is refused where a static QR is expected."""
    assert reason(DISCLOSED_AT_QR, keys) == "nonce-mismatch"


def test_qr_disclosed_long_ago_is_refused(keys):
    """A QR disclosed further from now than the skew allows is refused."""
    later = DISCLOSED_AT + 3600
    assert reason(DISCLOSED_AT_QR, keys, disclosure_time=None, now=later) == "nonce-mismatch"


def test_static_qr_is_refused_when_another_time_is_expected(keys):
    """A static QR (time 0) is refused when another disclosure time is expected."""
    assert reason(CATEGORY_ABSENT_QR, keys, disclosure_time=1) == "nonce-mismatch"


def test_changed_disclosure_time_breaks_the_proof(keys):
    """A QR re-serialised with another disclosure time fails: the time fixes the nonce."""
    qr = make_qr(replace(proof_fields(CATEGORY_ABSENT_QR), disclosure_time=1))
    assert reason(qr, keys, disclosure_time=1) == "bad-signature"


def test_reserialised_qr_still_verifies(keys):
    """The test's encoder writes a real QR back unchanged (so tampering tests tamper only)."""
    assert make_qr(proof_fields(CATEGORY_ABSENT_QR)) == CATEGORY_ABSENT_QR
    assert make_qr(proof_fields(CATEGORY_3G_QR)) == CATEGORY_3G_QR


def test_v3_layout_of_the_same_proof_verifies(keys):
    """The same proof in the v3 layout (NL3:, AResponses a SEQUENCE) verifies alike."""
    qr = make_qr(proof_fields(CATEGORY_1G_QR), version=3)
    assert verify_static_qr(qr, keys).attributes["category"] == "1"


def test_v3_layout_may_not_hide_an_attribute_of_a_version_2_credential(keys):
    """Only a version 3 credential's category may be hidden: another hidden one is refused."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    hidden = replace(
        fields, a_disclosed=fields.a_disclosed[:-1], a_responses=(*fields.a_responses, 5)
    )
    assert reason(make_qr(hidden, version=3), keys) == "decode-failed"


@pytest.mark.parametrize("position", [4, 300, 700, -1])
def test_one_changed_character_is_refused(position, keys):
    """Changing one character anywhere in the payload makes the QR fail."""
    index = position % len(CATEGORY_ABSENT_QR)
    old = CATEGORY_ABSENT_QR[index]
    changed = CATEGORY_ABSENT_QR[:index] + ("A" if old != "A" else "B")
    changed += CATEGORY_ABSENT_QR[index + 1 :]
    assert reason(changed, keys) in {"bad-signature", "decode-failed"}


def test_trailing_space_of_the_3g_qr_is_part_of_it(keys):
    """category3GQR's trailing space is a digit: without it the QR is refused."""
    assert reason(CATEGORY_3G_QR.rstrip(" "), keys) in {"bad-signature", "decode-failed"}


@pytest.mark.parametrize(
    ("index", "value"),
    [(2, "0"), (3, "1643320001"), (5, "X"), (7, "28")],
    ids=["isPaperProof", "validFrom", "firstNameInitial", "birthDay"],
)
def test_changed_disclosed_attribute_is_refused(index, value, keys):
    """A disclosed attribute changed in an otherwise intact proof is refused."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    disclosed = list(fields.a_disclosed)
    disclosed[index] = attribute(value)
    qr = make_qr(replace(fields, a_disclosed=tuple(disclosed)))
    assert reason(qr, keys) == "bad-signature"


def test_qr_is_refused_under_another_key(key):
    """A QR checked against another key under its key id is refused."""
    other = IdemixPublicKey(n=key.n, z=key.s, s=key.z, bases=key.bases, counter=0, expiry_date=0)
    assert reason(CATEGORY_ABSENT_QR, {"VWS-TEST-0": other}) == "bad-signature"


def test_unknown_key_id_is_refused(key):
    """A QR whose metadata names a key the verifier does not hold is refused."""
    assert reason(CATEGORY_ABSENT_QR, {"VWS-PROD-0": key}) == "unknown-kid"


def test_metadata_naming_another_known_key_is_refused(key):
    """Rewriting the metadata to name another trusted key breaks the proof."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    metadata = encode_sequence([encode_octet_string(b"\x02"), encode_printable_string("testPk")])
    moved = replace(fields, a_disclosed=(attribute_bytes(metadata), *fields.a_disclosed[1:]))
    assert reason(make_qr(moved), {"testPk": key}) == "bad-signature"


def test_unknown_credential_version_is_refused(keys):
    """Metadata with a credential version besides 2 and 3 is refused."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    metadata = encode_sequence(
        [encode_octet_string(b"\x04"), encode_printable_string("VWS-TEST-0")]
    )
    qr = make_qr(replace(fields, a_disclosed=(attribute_bytes(metadata), *fields.a_disclosed[1:])))
    assert reason(qr, keys) == "decode-failed"


def test_missing_metadata_is_refused(keys):
    """A proof disclosing nothing (no metadata attribute) is refused."""
    qr = make_qr(replace(proof_fields(CATEGORY_ABSENT_QR), a_disclosed=()))
    assert reason(qr, keys) == "decode-failed"


def test_over_range_response_is_refused_though_the_equation_holds(keys, key):
    """A response moved by the group order keeps Z' and C, but fails gabi's range check."""
    assert pow(key.bases[0], GROUP_ORDER, key.n) == 1  # R_0^(r + order) == R_0^r
    fields = proof_fields(CATEGORY_ABSENT_QR)
    (response,) = fields.a_responses
    qr = make_qr(replace(fields, a_responses=(response + GROUP_ORDER,)))
    assert reason(qr, keys) == "bad-signature"
    assert detail(qr, keys) == "attribute response out of range"


def test_over_range_e_response_is_refused(keys):
    """An EResponse moved by the group order is refused by the range check."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    qr = make_qr(replace(fields, e_response=fields.e_response + GROUP_ORDER))
    assert detail(qr, keys) == "e response out of range"


@pytest.mark.parametrize(
    "change",
    [
        {"v_response": 1 << 5000},
        {"v_response": -(1 << 4096)},
        {"c": 1 << 256},
    ],
    ids=["v-huge", "v-huge-negative", "c-past-256-bits"],
)
def test_exponents_past_any_real_proof_are_refused_before_use(change, keys):
    """A C or VResponse larger than any real proof's is refused before it costs CPU."""
    qr = make_qr(replace(proof_fields(CATEGORY_ABSENT_QR), **change))
    assert detail(qr, keys) == "challenge or v response out of range"


def test_disclosure_time_past_int64_is_refused(keys):
    """A disclosure time Go could not read into an int64 is refused as undecodable."""
    qr = make_qr(replace(proof_fields(CATEGORY_ABSENT_QR), disclosure_time=1 << 63))
    assert reason(qr, keys, disclosure_time=None) == "decode-failed"


def test_unbounded_v_response_verifies_as_in_gabi(keys, key):
    """A v response moved by the group order still verifies: gabi bounds only e and a."""
    fields = proof_fields(CATEGORY_ABSENT_QR)
    qr = make_qr(replace(fields, v_response=fields.v_response + GROUP_ORDER))
    assert verify_static_qr(qr, keys).attributes == PAPER
    assert pow(key.s, GROUP_ORDER, key.n) == 1


@pytest.mark.parametrize(
    "qr",
    [
        "",
        "NL",
        "NL2",
        "NL2:",
        "HC1:" + CATEGORY_ABSENT_QR[4:],
        "nl2:" + CATEGORY_ABSENT_QR[4:],
        "NL4:" + CATEGORY_ABSENT_QR[4:],
        "NL2;" + CATEGORY_ABSENT_QR[4:],
        "NL2:0" + CATEGORY_ABSENT_QR[4:],
        "XNL2:" + CATEGORY_ABSENT_QR[4:],
        "NL2:" + CATEGORY_ABSENT_QR[4:].lower(),
    ],
    ids=[
        "empty",
        "NL",
        "NL2",
        "no-payload",
        "HC1",
        "lower-prefix",
        "version-4",
        "semicolon",
        "leading-zero-digit",
        "junk-before",
        "lower-payload",
    ],
)
def test_junk_and_wrong_prefixes_are_refused(qr, keys):
    """Text that is not NL2/NL3 plus a canonical base-45 payload is refused as undecodable."""
    assert reason(qr, keys) == "decode-failed"


@pytest.mark.parametrize("keep", [5, 100, 600, -1, -30])
def test_truncated_payloads_are_refused(keep, keys):
    """A QR cut short is refused."""
    assert reason(CATEGORY_ABSENT_QR[:keep], keys) in {"decode-failed", "bad-signature"}


def test_trailing_bytes_after_the_proof_are_refused(keys):
    """Bytes after the proof's DER are refused: one proof, one encoding."""
    payload = proof_der(proof_fields(CATEGORY_ABSENT_QR)) + b"\x00"
    assert reason("NL2:" + qr_base45(payload), keys) == "decode-failed"


def test_overlong_qr_is_refused_before_decoding(keys):
    """A QR past the size cap is refused as too large."""
    assert reason("NL2:" + "1" * MAX_QR_CHARS, keys) == "too-large"


def test_non_ascii_payload_is_refused(keys):
    """A payload character outside the QR alphabet is refused."""
    assert reason("NL2:" + CATEGORY_ABSENT_QR[4:-1] + "é", keys) == "decode-failed"


def test_qr_base45_decodes_big_endian_digits():
    """The payload is one base-45 number, most significant digit first, as big-endian bytes."""
    assert decode_qr_base45("10") == bytes([45])
    assert decode_qr_base45("::") == (45 * 45 - 1).to_bytes(2, "big")
    assert decode_qr_base45(qr_base45(b"\x30\x82\x01")) == b"\x30\x82\x01"
