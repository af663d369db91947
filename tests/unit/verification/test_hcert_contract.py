"""What a validly signed credential must look like beyond its signature, or stay withheld.

Each credential here is signed with the trusted DSC, so only the structural rule under test
can refuse it.
"""

from __future__ import annotations

import base64
from typing import Any

import cbor2
import pytest
from hcert_testdata import EXP, IAT, cose_of, reason_of, someone_else, spec, verify

from signing_gateway.verification.trust import DscCertificate, EuTrustStore
from tests.support.credentials import forge_hc1, make_dsc, make_hc1, sample_dcc, wrap_cose


def forged(dsc, protected: Any, payload: Any, unprotected: Any = None):
    """A credential of these parts, encoded by cbor2 and validly signed with ``dsc``."""
    return forge_hc1(dsc, cbor2.dumps(protected), cbor2.dumps(payload), unprotected)


def signer_claims() -> dict[Any, Any]:
    """The CWT claims the EU signer writes for the sample DCC."""
    return {1: "NL", 4: EXP, 6: IAT, -260: {1: sample_dcc()}}


def test_forged_parts_in_the_signer_shape_verify(dsc, trust):
    """The forging helper itself yields a credential that verifies when nothing is bent."""
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, signer_claims())
    assert verify(hc1.text, trust, proof=hc1.proof_identifier).exp == EXP


# Python finds 1.0 and True under the key 1, so each of these reads like the signer's shape
# there; a COSE or CWT library looking up the integer label finds no claim, DCC, alg or kid.
@pytest.mark.parametrize(
    "payload",
    [
        {1: "NL", 4: EXP, 6: IAT, -260.0: {1: sample_dcc()}},
        {1: "NL", 4: EXP, 6: IAT, -260: {1.0: sample_dcc()}},
        {1: "NL", 4: EXP, 6: IAT, -260: {True: sample_dcc()}},
        {True: "NL", 4.0: EXP, 6.0: IAT, -260: {1: sample_dcc()}},
    ],
    ids=["hcert-under-float", "dcc-under-float", "dcc-under-true", "claims-under-true-and-floats"],
)
def test_claim_labels_that_are_not_integers_are_refused(dsc, trust, payload):
    """A claim or -260 label written as a float or a bool gives decode-failed."""
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, payload)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_protected_header_labels_that_are_not_integers_are_refused(dsc, trust):
    """A protected header with alg under true and kid under 4.0 gives decode-failed."""
    hc1 = forged(dsc, {True: -7, 4.0: dsc.kid}, signer_claims())
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_protected_header_that_is_not_a_map_is_refused(dsc, trust):
    """A protected header encoding an array, here of the labels alg and kid, gives decode-failed."""
    hc1 = forged(dsc, [1, 4], signer_claims())
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_payload_that_is_not_a_map_is_refused(dsc, trust):
    """Pin that a payload encoding an array, here of the four claim labels, gives decode-failed."""
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, [1, 4, 6, -260])
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("dcc", [[sample_dcc()], "dcc"], ids=["array", "text"])
def test_dcc_that_is_not_a_map_is_refused(dsc, trust, dcc):
    """Pin that a -260/1 that is no map gives decode-failed, not a payload-mismatch."""
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, {1: "NL", 4: EXP, 6: IAT, -260: {1: dcc}})
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("unprotected", [[4], b"\x04"], ids=["array", "byte-string"])
def test_unprotected_header_that_is_not_a_map_is_refused(dsc, trust, unprotected):
    """Pin that an unprotected header that is no map gives decode-failed, even one holding 4."""
    hc1 = forged(dsc, {1: -7}, signer_claims(), unprotected)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("bucket", ["protected", "unprotected"])
def test_kid_that_is_not_a_byte_string_is_refused(dsc, trust, bucket):
    """A kid written as text (its base64) gives decode-failed, in either header."""
    kid = base64.b64encode(dsc.kid).decode("ascii")
    if bucket == "protected":
        hc1 = forged(dsc, {1: -7, 4: kid}, signer_claims())
    else:
        hc1 = forged(dsc, {1: -7}, signer_claims(), {4: kid})
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_unprotected_kid_label_that_is_not_an_integer_is_refused(dsc, trust):
    """A kid under 4.0 in the unprotected header gives decode-failed."""
    hc1 = forged(dsc, {1: -7}, signer_claims(), {4.0: dsc.kid})
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


def shared_dose_numbers() -> dict[str, Any]:
    """The sample DCC with sd marked shareable (tag 28) and dn a reference to it (tag 29).

    cbor2 reads dn as 2, like sd; a reader without value sharing reads the reference's index, 0.
    """
    dcc = sample_dcc()
    entry = dcc["v"][0]
    dcc["v"][0] = {"sd": cbor2.CBORTag(28, entry.pop("sd")), "dn": cbor2.CBORTag(29, 0), **entry}
    return dcc


def tagged_iat(tag: int, value: Any) -> bytes:
    """The signer's claims with iat written as ``value`` under ``tag``."""
    return cbor2.dumps({1: "NL", 4: EXP, 6: cbor2.CBORTag(tag, value), -260: {1: sample_dcc()}})


@pytest.mark.parametrize(
    "payload",
    [
        cbor2.dumps({1: "NL", 4: EXP, 6: IAT, -260: {1: shared_dose_numbers()}}),
        cbor2.dumps(signer_claims(), string_referencing=True),
        tagged_iat(2, IAT.to_bytes(4, "big")),
        tagged_iat(55799, IAT),
    ],
    ids=["value-sharing", "string-references", "iat-as-bignum", "iat-self-described"],
)
def test_payload_holding_a_tag_is_refused(dsc, trust, payload):
    """A tag in the signed payload gives decode-failed, though cbor2 reads it as the request."""
    assert cbor2.loads(payload) == signer_claims()
    hc1 = forge_hc1(dsc, cbor2.dumps({1: -7, 4: dsc.kid}), payload)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("bucket", ["protected", "unprotected"])
def test_kid_under_a_tag_is_refused(dsc, trust, bucket):
    """A kid under value-sharing tag 28, which cbor2 reads as the bare kid, gives decode-failed."""
    kid = cbor2.CBORTag(28, dsc.kid)
    if bucket == "protected":
        hc1 = forged(dsc, {1: -7, 4: kid}, signer_claims())
    else:
        hc1 = forged(dsc, {1: -7}, signer_claims(), {4: kid})
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize(
    "outer", [b"\xd9\xd9\xf7", b"\xd2"], ids=["self-describe-around", "tag-18-twice"]
)
def test_cose_message_under_a_second_tag_is_refused(dsc, trust, outer):
    """A COSE_Sign1 wrapped in one more tag, self-describe 55799 or 18 again, is decode-failed.

    The signer never writes one, and a verifier that looks for tag 18 outermost finds none.
    """
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, signer_claims())
    text = wrap_cose(outer + cose_of(hc1.text))
    assert reason_of(text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("iss", ["DE", "", "nl", "not a country at all"])
def test_iss_other_than_the_certificate_country_is_refused(dsc, trust, iss):
    """An iss that is not the DSC subject's countryName (NL here) gives iss-mismatch."""
    hc1 = make_hc1(dsc, spec(iss=iss))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "iss-mismatch"


def test_iss_is_the_country_of_the_signing_certificate():
    """A DSC of Belgium vouches for iss BE and not for NL."""
    belgian = make_dsc(["vaccination"], countries=["BE"])
    store = EuTrustStore([DscCertificate.from_der(belgian.der)])
    hc1 = make_hc1(belgian, spec(iss="BE"))
    assert verify(hc1.text, store, proof=hc1.proof_identifier).iss == "BE"
    dutch = make_hc1(belgian, spec(iss="NL"))
    assert reason_of(dutch.text, store, proof=dutch.proof_identifier) == "iss-mismatch"


def test_iss_that_is_not_text_is_refused_even_from_a_certificate_naming_no_country():
    """An iss written as a number (528, NL in ISO 3166) gives decode-failed, country or not."""
    stateless = make_dsc(["vaccination"], countries=[])
    store = EuTrustStore([DscCertificate.from_der(stateless.der)])
    hc1 = forged(stateless, {1: -7, 4: stateless.kid}, {**signer_claims(), 1: 528})
    assert reason_of(hc1.text, store, proof=hc1.proof_identifier) == "decode-failed"


def test_any_iss_is_accepted_from_a_certificate_naming_no_country():
    """With no countryName in the DSC subject there is nothing to hold iss to."""
    stateless = make_dsc(["vaccination"], countries=[])
    store = EuTrustStore([DscCertificate.from_der(stateless.der)])
    hc1 = make_hc1(stateless, spec(iss="DE"))
    assert verify(hc1.text, store, proof=hc1.proof_identifier).iss == "DE"


@pytest.mark.parametrize(
    "extra",
    [
        {5: EXP},
        {2: "someone-else"},
        {99: b"x" * 100},
        {-261: {1: someone_else()}},
        {-260: {1: sample_dcc(), 2: someone_else()}},
        {-260: {1: sample_dcc(), "1": someone_else()}},
        {-260: {}},
        {-260: [1]},
    ],
    ids=[
        "nbf-at-exp",
        "sub",
        "unregistered-claim",
        "second-hcert-like-claim",
        "second-dcc-under-2",
        "second-dcc-under-text-1",
        "no-dcc",
        "hcert-an-array-holding-1",
    ],
)
def test_claims_beyond_the_contract_are_refused(dsc, trust, extra):
    """Claims other than iss, exp, iat and -260, or -260 other than a map of just 1, are refused.

    A claim the gateway does not read would still be read by some verifier: a not-before at
    expiry, another subject, another person's DCC.
    """
    hc1 = make_hc1(dsc, spec(extra_claims=extra))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("missing", [1, 4, 6, -260])
def test_each_claim_is_required(dsc, trust, missing):
    """A payload without iss, exp, iat or -260 gives decode-failed."""
    claims = signer_claims()
    del claims[missing]
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, claims)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("claim", [4, 6], ids=["exp", "iat"])
def test_exp_or_iat_written_as_a_float_is_refused(dsc, trust, claim):
    """An exp or iat written as a float of the very same value gives decode-failed.

    The contract has them integers, and verifiers read them as such; equal to the int it is
    compared with, the float would otherwise pass every check.
    """
    claims = signer_claims()
    claims[claim] = float(claims[claim])
    hc1 = forged(dsc, {1: -7, 4: dsc.kid}, claims)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize(
    ("extra_header", "extra_unprotected"),
    [
        ({2: [99], 99: "x"}, {}),
        ({2: [4]}, {}),
        ({3: "application/cwt"}, {}),
        ({"kid": b"\x00" * 8}, {}),
        ({}, {1: -7}),
        ({}, {3: "application/cwt"}),
        ({}, {33: b"certificate"}),
    ],
    ids=[
        "crit-naming-an-unknown-label",
        "crit-naming-kid",
        "protected-content-type",
        "protected-text-label",
        "unprotected-alg",
        "unprotected-content-type",
        "unprotected-x5chain",
    ],
)
def test_headers_beyond_alg_and_kid_are_refused(dsc, trust, extra_header, extra_unprotected):
    """A protected label other than alg and kid, or an unprotected one other than kid, is refused.

    A verifier must refuse a credential whose crit names a label it does not understand, and
    may act on a content type or certificate chain the gateway never looked at.
    """
    hc1 = make_hc1(dsc, spec(extra_header=extra_header, extra_unprotected=extra_unprotected))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("other_kid", [b"\x00" * 8, None], ids=["different", "same"])
def test_kid_in_both_headers_is_refused(dsc, trust, other_kid):
    """A kid in the protected and the unprotected header, equal or not, gives decode-failed.

    RFC 9052 forbids a label in both; one COSE library takes the protected kid, another the
    unprotected one, and so another key.
    """
    hc1 = make_hc1(dsc, spec(extra_unprotected={4: other_kid or dsc.kid}))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"
