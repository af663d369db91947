"""Idemix QRs of credentials signed here: what no real QR shows, each a valid proof.

The real QRs all disclose every attribute of a well-formed credential. These are proofs of
credentials the test signs with the published test key (`tests.support.idemix_holder`): a
hidden category, absent and long attributes, and credentials of the wrong shape, which only
the verifier's own checks (not the proof) refuse.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

import pytest

from signing_gateway.verification.idemix import (
    attribute_int,
    credential_attribute_values,
    verify_static_qr,
)
from tests.support.idemix_holder import disclosure_proof
from tests.support.idemix_issuer import TEST_KEY
from tests.unit.verification.idemix_qr_support import detail, make_qr, reason
from tests.unit.verification.idemix_testdata import PAPER

KEYS = {"VWS-TEST-0": TEST_KEY}
WITH_CATEGORY = {**PAPER, "category": "1"}


def exponents(attributes: dict[str, str], version: int, *, secret: int | None = None) -> list[int]:
    """The credential's numbers: the secret key, the metadata, then each attribute's."""
    values = credential_attribute_values(
        attributes, issuer_pk_id="VWS-TEST-0", credential_version=version
    )
    return [secrets.randbits(256) if secret is None else secret, *map(attribute_int, values)]


def test_hidden_category_is_left_out_and_the_rest_verifies():
    """A version 3 credential shown with its category hidden verifies; the category is left out."""
    numbers = exponents(WITH_CATEGORY, 3)
    proof = disclosure_proof(numbers, hidden=(0, len(numbers) - 1))
    verified = verify_static_qr(make_qr(proof, version=3), KEYS)
    assert verified.attributes == PAPER
    assert verified.credential_version == 3


def test_hidden_category_of_another_value_is_refused():
    """The hidden category's response is part of the proof: a changed one is refused."""
    numbers = exponents(WITH_CATEGORY, 3)
    proof = disclosure_proof(numbers, hidden=(0, len(numbers) - 1))
    secret_response, category_response = proof.a_responses
    changed = replace(proof, a_responses=(secret_response, category_response + 1))
    assert reason(make_qr(changed, version=3), KEYS) == "bad-signature"


def test_negative_responses_verify_as_in_gabi():
    """Negative EResponse and AResponses verify: gabi bounds their magnitude, not their sign."""
    numbers = exponents(WITH_CATEGORY, 3)
    proof = disclosure_proof(numbers, hidden=(0, len(numbers) - 1), negative_commitments=True)
    assert proof.e_response < 0
    assert all(response < 0 for response in proof.a_responses)
    assert verify_static_qr(make_qr(proof, version=3), KEYS).attributes == PAPER
    first_only = disclosure_proof(exponents(PAPER, 2), negative_commitments=True)
    assert verify_static_qr(make_qr(first_only), KEYS).attributes == PAPER


@pytest.mark.parametrize(
    ("value", "hashed"),
    [("A" * 32, False), ("é" + "A" * 30, True), ("A" * 200, True)],
    ids=["Lm-bits", "Lm-plus-1-bits", "long"],
)
def test_attributes_past_lm_bits_are_hashed_as_gabi_does(value, hashed):
    """An attribute of Lm (256) bits is taken as it is; a longer one as its SHA-256, as in gabi."""
    assert (attribute_int(value.encode()).bit_length() > TEST_KEY.params.lm) is hashed
    attributes = {**PAPER, "firstNameInitial": value}
    verified = verify_static_qr(make_qr(disclosure_proof(exponents(attributes, 2))), KEYS)
    assert verified.attributes["firstNameInitial"] == value


def test_attribute_with_the_low_bit_clear_is_absent():
    """A disclosed number with its low bit 0 is an absent attribute (""), whatever else it holds."""
    numbers = exponents(PAPER, 2)
    numbers[3] = int.from_bytes(b"1") << 1  # isPaperProof: "1" without the present bit
    verified = verify_static_qr(make_qr(disclosure_proof(numbers)), KEYS)
    assert verified.attributes["isPaperProof"] == ""
    assert verified.attributes["isSpecimen"] == "0"


def test_attribute_that_is_not_utf8_is_refused():
    """A disclosed attribute whose bytes are not UTF-8 is refused after the proof verifies."""
    numbers = exponents(PAPER, 2)
    numbers[6] = attribute_int(b"\xff")
    qr = make_qr(disclosure_proof(numbers))
    assert (reason(qr, KEYS), detail(qr, KEYS)) == ("decode-failed", "an attribute is not UTF-8")


def test_qr_disclosed_now_verifies_by_the_clock():
    """Without a fixed time or ``now``, a QR disclosed this second verifies by the clock."""
    disclosed_at = int(time.time())
    qr = make_qr(disclosure_proof(exponents(PAPER, 2), disclosure_time=disclosed_at))
    verified = verify_static_qr(qr, KEYS, disclosure_time=None)
    assert verified.disclosure_time == disclosed_at


SHAPE = "only the secret key and a category may be hidden"


def test_credential_without_a_hidden_secret_key_is_refused():
    """A credential whose secret key is 0, shown hiding nothing, is refused: no holder binding."""
    numbers = [*exponents(WITH_CATEGORY, 3, secret=0), attribute_int(b"extra")]
    qr = make_qr(disclosure_proof(numbers, hidden=()), version=3)
    assert (reason(qr, KEYS), detail(qr, KEYS)) == ("decode-failed", SHAPE)


def test_a_third_hidden_attribute_is_refused():
    """A proof with a response past the secret key's and the category's is refused."""
    numbers = exponents(WITH_CATEGORY, 3)
    proof = disclosure_proof(numbers[:-1], hidden=(0, len(numbers) - 2))
    qr = make_qr(replace(proof, a_responses=(*proof.a_responses, 1)), version=3)
    assert (reason(qr, KEYS), detail(qr, KEYS)) == ("decode-failed", SHAPE)


@pytest.mark.parametrize(
    ("version", "attributes"),
    [
        (3, PAPER),
        (2, WITH_CATEGORY),
    ],
    ids=["version-3-without-category", "version-2-with-category"],
)
def test_credential_with_other_attributes_than_its_version_is_refused(version, attributes):
    """A signed credential with fewer or more attributes than its version names is refused."""
    metadata, *_ = credential_attribute_values(
        WITH_CATEGORY, issuer_pk_id="VWS-TEST-0", credential_version=version
    )
    numbers = [secrets.randbits(256), attribute_int(metadata)]
    numbers += [attribute_int(value.encode()) for value in attributes.values()]
    qr = make_qr(disclosure_proof(numbers))
    assert reason(qr, KEYS) == "decode-failed"
    assert detail(qr, KEYS).startswith(f"version {version} has")
