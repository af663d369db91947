"""Issued CL signatures: one made here with the published test private key, then tampered with.

The test signs as gabi's issuer does (``signMessageBlockAndCommitment``, ``proveSignature``)
with the private primes published beside the test key, over an app's commitment
``U = S^v' * R_0^secret``; the app's own final check (``ConstructCredential``) is done too,
to show the signature is a real one.
"""

from __future__ import annotations

import base64
import json
import math
import secrets
from typing import Any

import pytest

from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.idemix import attribute_int, credential_attribute_values
from signing_gateway.verification.idemix_issuance import is_probable_prime, verify_issue_signature
from signing_gateway.verification.idemix_keys import IdemixPublicKey
from tests.support.idemix_issuer import (
    LE,
    LE_PRIME,
    LV,
    ORDER,
    TEST_KEY,
    Holder,
    b64,
    make_holder,
    sign,
)

ATTRIBUTES = {
    "isSpecimen": "0",
    "isPaperProof": "0",
    "validFrom": "1700000000",
    "validForHours": "24",
    "firstNameInitial": "A",
    "lastNameInitial": "R",
    "birthDay": "20",
    "birthMonth": "10",
    "category": "1",
}
KEY = TEST_KEY
VALUES = credential_attribute_values(ATTRIBUTES, issuer_pk_id="VWS-TEST-0")


def verify(message, holder: Holder, values=VALUES, key=KEY) -> None:
    """verify_issue_signature with the holder's commitment and nonce."""
    verify_issue_signature(
        json.loads(json.dumps(message)),
        key=key,
        commitment=holder.commitment,
        nonce2=holder.nonce2,
        attributes=values,
    )


def refusal(message, holder: Holder, **options: Any) -> CredentialVerificationError:
    """The error verify refuses ``message`` with."""
    with pytest.raises(CredentialVerificationError) as caught:
        verify(message, holder, **options)
    return caught.value


def reason(message, holder: Holder, **options: Any) -> str:
    """The reason verify refuses ``message`` with."""
    return refusal(message, holder, **options).reason


@pytest.fixture(scope="module")
def holder() -> Holder:
    """One app's commitment, shared by the module."""
    return make_holder()


@pytest.fixture(scope="module")
def message(holder) -> dict[str, Any]:
    """A signature issued over the module's commitment and ATTRIBUTES."""
    return sign(holder, VALUES)


def number(text: str) -> int:
    """A gabi JSON big integer's value."""
    return int.from_bytes(base64.b64decode(text), "big")


def test_issued_signature_verifies_and_completes_the_apps_credential(message, holder):
    """A real signature verifies, and with v' added it is a full CL signature over the secret."""
    verify(message, holder)
    signature = message["signature"]
    a, e, v = (number(signature[name]) for name in ("A", "e", "v"))
    full = pow(a, e, KEY.n) * pow(KEY.s, v + holder.v_prime, KEY.n)
    full = full * pow(KEY.bases[0], holder.secret, KEY.n) % KEY.n
    for index, value in enumerate(VALUES, start=1):
        full = full * pow(KEY.bases[index], attribute_int(value), KEY.n) % KEY.n
    assert full == KEY.z


def test_attribute_values_are_the_metadata_then_the_named_attributes():
    """The signed values are the DER metadata (version 3, key id), then each value's bytes."""
    assert VALUES[0] == bytes.fromhex("300f040103130a5657532d544553542d30")
    assert VALUES[1:] == tuple(value.encode() for value in ATTRIBUTES.values())


def test_extra_members_gabi_may_send_empty_are_taken(message, holder):
    """Null or empty nonrev and missuer members, as gabi may write them, are accepted."""
    verify({**message, "nonrev": None, "missuer": None, "m_issuer": {}}, holder)


@pytest.mark.parametrize(
    "values",
    [
        credential_attribute_values({**ATTRIBUTES, "category": "3"}, issuer_pk_id="VWS-TEST-0"),
        credential_attribute_values(ATTRIBUTES, issuer_pk_id="testPk"),
        credential_attribute_values(ATTRIBUTES, issuer_pk_id="VWS-TEST-0", credential_version=2),
        VALUES[:-1],
    ],
    ids=["category", "key-id", "version", "one-fewer"],
)
def test_signature_over_other_attributes_is_refused(message, holder, values):
    """A signature checked against attributes other than those signed is refused."""
    assert reason(message, holder, values=values) == "bad-signature"


def test_signature_for_another_commitment_is_refused(message, holder):
    """A signature checked against another app's commitment U is refused."""
    other = Holder(holder.secret, holder.v_prime, make_holder().commitment, holder.nonce2)
    assert reason(message, other) == "bad-signature"


def test_proof_for_another_nonce_is_refused(message, holder):
    """A signature whose proof was made for another n_2 is refused (ProofS)."""
    other = Holder(holder.secret, holder.v_prime, holder.commitment, holder.nonce2 + 1)
    assert reason(message, other) == "bad-signature"


def test_signature_under_another_key_is_refused(message, holder):
    """A signature checked against another key is refused."""
    other = IdemixPublicKey(n=KEY.n, z=KEY.s, s=KEY.z, bases=KEY.bases, counter=0, expiry_date=0)
    assert reason(message, holder, key=other) == "bad-signature"


@pytest.mark.parametrize(("member", "change"), [("c", 1), ("e_response", 1)])
def test_changed_proof_is_refused(message, holder, member, change):
    """A changed proof of the signature is refused."""
    proof = {**message["proof"], member: b64(number(message["proof"][member]) + change)}
    assert reason({**message, "proof": proof}, holder) == "bad-signature"


def test_composite_e_is_refused_though_the_equation_holds(holder):
    """A signature with a composite e in range satisfies the equation but is refused."""
    e = (1 << (LE - 1)) + 1
    while is_probable_prime(e) or math.gcd(e, ORDER) != 1:
        e += 2
    message = sign(holder, VALUES, e=e)
    assert reason(message, holder) == "bad-signature"


def test_e_out_of_range_is_refused(holder):
    """A signature with a prime e above gabi's range is refused."""
    e = (1 << (LE - 1)) + (1 << (LE_PRIME - 1)) + 1
    while not is_probable_prime(e):
        e += 2
    assert reason(sign(holder, VALUES, e=e), holder) == "bad-signature"


@pytest.mark.parametrize(
    ("part", "member", "value"),
    [
        ("signature", "v", 1 << LV),
        ("proof", "e_response", KEY.n),
        ("proof", "c", 1 << 256),
    ],
    ids=["v-past-Lv", "e_response-past-n", "c-past-256-bits"],
)
def test_numbers_past_what_an_issuer_draws_are_refused(message, holder, part, member, value):
    """A v, e_response or c larger than gabi's issuer can produce is refused before use."""
    changed = {**message, part: {**message[part], member: b64(value)}}
    refused = refusal(changed, holder)
    assert (refused.reason, refused.detail) == ("bad-signature", "v, c or e_response out of range")


@pytest.mark.parametrize(
    "change",
    [
        lambda m: {**m, "extra": 1},
        lambda m: {**m, "nonrev": {"u": "AQ=="}},
        lambda m: {k: v for k, v in m.items() if k != "proof"},
        lambda m: {**m, "signature": {**m["signature"], "KeyshareP": "AQ=="}},
        lambda m: {**m, "signature": {**m["signature"], "x": None}},
        lambda m: {**m, "proof": {**m["proof"], "c": 5}},
        lambda m: {**m, "proof": {**m["proof"], "c": "not base64!"}},
        lambda m: {**m, "signature": "A"},
        lambda m: [m],
    ],
    ids=[
        "extra-member",
        "nonrev",
        "no-proof",
        "keyshare",
        "signature-extra",
        "number-not-string",
        "not-base64",
        "signature-not-object",
        "not-object",
    ],
)
def test_malformed_messages_are_refused(message, holder, change):
    """A message with other members or encodings than gabi's is refused as undecodable."""
    assert reason(change(message), holder) == "decode-failed"


def test_more_attributes_than_bases_are_refused(message, holder):
    """Attributes past the key's bases are refused."""
    assert reason(message, holder, values=(*VALUES, b"1", b"2", b"3")) == "decode-failed"


@pytest.mark.parametrize(
    ("candidate", "prime"),
    [
        (2, True),
        (3, True),
        (97, True),
        (1, False),
        (0, False),
        (561, False),
        (2047, False),
        (41041, False),
        (3215031751, False),
        (2**127 - 1, True),
        ((2**127 - 1) * (2**61 - 1), False),
    ],
)
def test_is_probable_prime(candidate, prime):
    """Primes pass; composites, Carmichael numbers and strong pseudoprimes to small bases fail."""
    assert is_probable_prime(candidate) is prime


@pytest.mark.parametrize(
    "value", ["A" * 32, "é" + "A" * 30, "A" * 200], ids=["Lm-bits", "Lm-plus-1-bits", "long"]
)
def test_signature_over_attributes_past_lm_bits_verifies_hashed(holder, value):
    """An attribute longer than Lm (256) bits is signed as its SHA-256, as gabi does."""
    values = credential_attribute_values(
        {**ATTRIBUTES, "firstNameInitial": value}, issuer_pk_id="VWS-TEST-0"
    )
    verify(sign(holder, values), holder, values=values)


def test_prime_e_below_its_range_is_refused(holder):
    """A signature with a prime e below 2^(Le-1) satisfies the equation but is refused."""
    e = (1 << (LE - 1)) - 1
    while not is_probable_prime(e) or math.gcd(e, ORDER) != 1:
        e -= 2
    assert reason(sign(holder, VALUES, e=e), holder) == "bad-signature"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m, h: ({**m, "signature": {**m["signature"], "A": b64(1)}}, h), "outside"),
        (
            lambda m, h: (
                {
                    **m,
                    "signature": {**m["signature"], "A": b64(number(m["signature"]["A"]) + KEY.n)},
                },
                h,
            ),
            "outside",
        ),
        (lambda m, h: (m, Holder(h.secret, h.v_prime, 1, h.nonce2)), "outside"),
        (lambda m, h: (m, Holder(h.secret, h.v_prime, h.commitment + KEY.n, h.nonce2)), "outside"),
    ],
    ids=["A-one", "A-plus-n", "U-one", "U-plus-n"],
)
def test_a_and_u_must_lie_between_one_and_n(message, holder, change, expected):
    """A and the app's U outside (1, n) are refused, though A + n or U + n satisfy the equation."""
    changed, other = change(message, holder)
    refused = refusal(changed, other)
    assert (refused.reason, refused.detail) == ("bad-signature", "A or U outside (1, n)")


def test_number_with_whitespace_in_its_base64_is_refused(message, holder):
    """A gabi big integer is strict base64: one with a space or newline in it is refused."""
    c = message["proof"]["c"]
    for text in (c[:4] + " " + c[4:], c + "\n"):
        changed = {**message, "proof": {**message["proof"], "c": text}}
        assert reason(changed, holder) == "decode-failed"


def test_attributes_as_many_as_the_bases_are_refused(message, holder):
    """Attributes take bases 1.. on: as many attributes as the key has bases is one too many."""
    values = (*VALUES, *(b"1" for _ in range(len(KEY.bases) - len(VALUES))))
    assert len(values) == len(KEY.bases)
    assert refusal(message, holder, values=values).detail == (
        "more attributes than the key has bases"
    )
    assert refusal(message, holder, values=values[:-1]).detail == "signature does not verify"


def test_each_prime_candidate_gets_forty_random_bases(monkeypatch):
    """Miller-Rabin runs 40 rounds, each with a base drawn afresh."""
    drawn: list[int] = []
    randbelow = secrets.randbelow

    def recording(bound: int) -> int:
        drawn.append(randbelow(bound))
        return drawn[-1]

    monkeypatch.setattr(secrets, "randbelow", recording)
    assert is_probable_prime(2**127 - 1)
    assert len(drawn) == 40
    assert len(set(drawn)) > 1
