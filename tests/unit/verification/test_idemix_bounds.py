"""Where each check of an Idemix QR draws its line, shown with a value on either side of it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from signing_gateway.verification.domestic import MAX_QR_CHARS
from signing_gateway.verification.idemix import (
    attribute_int,
    credential_attribute_values,
    verify_static_qr,
)
from signing_gateway.verification.idemix_der import (
    encode_integer,
    encode_octet_string,
    encode_printable_string,
    encode_sequence,
)
from tests.support.idemix_issuer import TEST_KEY
from tests.unit.verification.idemix_qr_support import (
    detail,
    make_qr,
    proof_fields,
    qr_base45,
    reason,
)
from tests.unit.verification.idemix_testdata import (
    CATEGORY_1G_QR,
    CATEGORY_ABSENT_QR,
    DISCLOSED_AT,
    DISCLOSED_AT_QR,
    PAPER,
    TEST_KEY_P,
)

KEYS = {"VWS-TEST-0": TEST_KEY, "testPk": TEST_KEY}
FIELDS = proof_fields(CATEGORY_ABSENT_QR)
#: A response that passes every range check, where the proof then fails: detail "".
IN_RANGE = ""


def test_disclosed_numbers_are_the_credential_values_gabi_signs():
    """A real QR discloses (bytes << 1) + 1 of each value, after its version's DER metadata."""
    for qr, attributes, version in [
        (CATEGORY_ABSENT_QR, PAPER, 2),
        (CATEGORY_1G_QR, {**PAPER, "category": "1"}, 3),
    ]:
        values = credential_attribute_values(
            attributes, issuer_pk_id="VWS-TEST-0", credential_version=version
        )
        assert proof_fields(qr).a_disclosed == tuple(map(attribute_int, values))


def test_qr_of_exactly_the_size_cap_is_decoded_not_refused_as_too_large():
    """A QR of MAX_QR_CHARS characters is decoded (and then refused as no proof)."""
    assert reason("NL2:" + "1" * (MAX_QR_CHARS - 4), KEYS) == "decode-failed"


def test_nl4_is_refused_whatever_its_layout():
    """Only NL2 and NL3 are read: a v3-layout payload under NL4 is refused too."""
    qr = make_qr(proof_fields(CATEGORY_1G_QR), version=3)
    assert reason("NL4:" + qr[4:], KEYS) == "decode-failed"


def test_disclosure_time_of_int64_max_is_read():
    """The largest int64 disclosure time is read; only the time check then refuses it."""
    qr = make_qr(replace(FIELDS, disclosure_time=2**63 - 1))
    assert reason(qr, KEYS, disclosure_time=None) == "nonce-mismatch"


@pytest.mark.parametrize("layout", [2, 3])
def test_lists_of_the_proof_must_be_sequences(layout):
    """ADisclosed (and in v3 AResponses) under another tag than SEQUENCE is refused."""
    numbers = (FIELDS.disclosure_time, FIELDS.c, FIELDS.a, FIELDS.e_response, FIELDS.v_response)
    disclosed = encode_sequence(map(encode_integer, FIELDS.a_disclosed))
    responses = encode_sequence(map(encode_integer, FIELDS.a_responses))
    as_set = b"\x31" + (disclosed if layout == 2 else responses)[1:]  # SET OF, same content
    members = (
        [encode_integer(FIELDS.a_responses[0]), as_set] if layout == 2 else [as_set, disclosed]
    )
    qr = f"NL{layout}:" + qr_base45(encode_sequence([*map(encode_integer, numbers), *members]))
    assert reason(qr, KEYS) == "decode-failed"
    assert "where a SEQUENCE was expected" in detail(qr, KEYS)


def test_key_with_fewer_bases_than_the_attributes_is_refused():
    """A QR with more attributes than its key has bases is refused as undecodable."""
    short = replace(TEST_KEY, bases=TEST_KEY.bases[:9])
    assert detail(CATEGORY_ABSENT_QR, {"VWS-TEST-0": short}) == (
        "more attributes than key VWS-TEST-0 has"
    )


@pytest.mark.parametrize("offset", [-180, 180])
def test_qr_disclosed_exactly_the_skew_from_now_verifies(offset):
    """A QR disclosed MAX_CLOCK_SKEW_SECONDS before or after now still verifies."""
    verified = verify_static_qr(
        DISCLOSED_AT_QR, KEYS, disclosure_time=None, now=DISCLOSED_AT + offset
    )
    assert verified.disclosure_time == DISCLOSED_AT


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"a_responses": (1 << 640,)}, IN_RANGE),
        ({"a_responses": (-(1 << 640),)}, IN_RANGE),
        ({"a_responses": (1 << 641,)}, "attribute response out of range"),
        ({"a_responses": (-(1 << 641),)}, "attribute response out of range"),
        ({"e_response": 1 << 504}, IN_RANGE),
        ({"e_response": -(1 << 504)}, IN_RANGE),
        ({"e_response": 1 << 505}, "e response out of range"),
        ({"e_response": -(1 << 505)}, "e response out of range"),
        ({"v_response": 1 << 4095}, IN_RANGE),
        ({"v_response": 1 << 4096}, "challenge or v response out of range"),
        ({"c": (1 << 256) - 1}, IN_RANGE),
    ],
    ids=lambda value: str(value)[:40],
)
def test_range_checks_take_lm_and_le_commit_plus_one_bits(change, expected):
    """|response| < 2^641 and |EResponse| < 2^505 pass (gabi's bounds); one bit more is refused."""
    assert detail(make_qr(replace(FIELDS, **change)), KEYS) == expected


@pytest.mark.parametrize("response", [1 << 641, -(1 << 641)])
def test_hidden_categorys_response_is_range_checked_too(response):
    """The second response (a hidden category's) is bounded like the secret key's."""
    fields = proof_fields(CATEGORY_1G_QR)
    hidden = replace(
        fields,
        a_disclosed=fields.a_disclosed[:-1],
        a_responses=(*fields.a_responses, response),
    )
    assert detail(make_qr(hidden, version=3), KEYS) == "attribute response out of range"


@pytest.mark.parametrize(
    ("a", "expected"),
    [
        (0, "A outside (1, n)"),
        (1, "A outside (1, n)"),
        (2, IN_RANGE),
        (TEST_KEY.n - 1, IN_RANGE),
        (TEST_KEY.n, "A outside (1, n)"),
        (TEST_KEY.n + FIELDS.a, "A outside (1, n)"),
        (TEST_KEY_P, "A not invertible"),
    ],
    ids=["0", "1", "2", "n-1", "n", "n+A", "p"],
)
def test_a_must_be_an_invertible_number_in_one_to_n(a, expected):
    """A must lie strictly between 1 and n, and be invertible modulo n."""
    assert detail(make_qr(replace(FIELDS, a=a)), KEYS) == expected


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            [encode_octet_string(b"\x02"), encode_printable_string("VWS-TEST-0"), b"\x05\x00"],
            "metadata must be SEQUENCE { OCTET STRING, string }",
        ),
        (
            [encode_integer(2), encode_printable_string("VWS-TEST-0")],
            "metadata must be SEQUENCE { OCTET STRING, string }",
        ),
        (
            [encode_octet_string(b"\x02\x00"), encode_printable_string("VWS-TEST-0")],
            "unknown credential version",
        ),
        (
            [encode_octet_string(b"\x04"), encode_printable_string("VWS-TEST-0")],
            "unknown credential version",
        ),
    ],
    ids=["three-members", "version-an-integer", "version-two-bytes", "version-4"],
)
def test_malformed_metadata_is_refused_before_the_key_is_looked_up(members, expected):
    """Metadata other than SEQUENCE { OCTET STRING (2 or 3), string } is refused as such."""
    metadata = attribute_int(encode_sequence(members))
    qr = make_qr(replace(FIELDS, a_disclosed=(metadata, *FIELDS.a_disclosed[1:])))
    assert detail(qr, KEYS) == f"metadata attribute: {expected}"
