"""HC1 decoding and EU credential verification: every failure reason, both algorithms."""

from __future__ import annotations

import copy
import dataclasses
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import base45
import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hcert_testdata import (
    EXP,
    IAT,
    NOW,
    SKEW,
    cose_of,
    payload_of,
    reason_of,
    someone_else,
    spec,
    verify,
    with_signature,
)

from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.hcert import (
    MAX_CREDENTIAL_CHARS,
    MAX_DECOMPRESSED_BYTES,
    decode_hc1,
)
from signing_gateway.verification.trust import DscCertificate, EuTrustStore
from tests.support.credentials import (
    Dsc,
    Hc1,
    loose_cbor,
    make_dsc,
    make_hc1,
    proof_identifier,
    sample_dcc,
    wrap_cose,
)


def test_valid_es256_credential_verifies(dsc, trust):
    """A correctly signed ES256 credential verifies and reports kid, iss, exp and iat."""
    hc1 = make_hc1(dsc, spec())
    verified = verify(hc1.text, trust, proof=hc1.proof_identifier)
    assert verified.kid == DscCertificate.from_der(dsc.der).kid_b64
    assert (verified.iss, verified.exp, verified.iat) == ("NL", EXP, int(NOW.timestamp()))


def test_valid_ps256_credential_with_rsa_dsc_verifies():
    """An RSA DSC yields PS256 credentials (MGF1 SHA-256, salt = digest length) that verify."""
    rsa_dsc = make_dsc(["vaccination"], rsa_key=True)
    store = EuTrustStore([DscCertificate.from_der(rsa_dsc.der)])
    hc1 = make_hc1(rsa_dsc, spec())
    assert verify(hc1.text, store, proof=hc1.proof_identifier).exp == EXP


def test_ps256_tampered_signature_is_rejected():
    """A flipped bit in a PS256 signature gives bad-signature."""
    rsa_dsc = make_dsc(["vaccination"], rsa_key=True)
    store = EuTrustStore([DscCertificate.from_der(rsa_dsc.der)])
    hc1 = make_hc1(rsa_dsc, spec(tamper_signature=True))
    assert reason_of(hc1.text, store, proof=hc1.proof_identifier) == "bad-signature"


@pytest.mark.parametrize(
    "salt_length", [0, padding.PSS.MAX_LENGTH], ids=["no-salt", "longest-salt"]
)
def test_ps256_signature_with_another_salt_length_is_rejected(salt_length):
    """Pin that PS256 means a salt of the digest length (RFC 8230): any other is bad-signature.

    Such a signature holds for a verifier that accepts any salt length, but a verifier app that
    expects the 32-byte salt of PS256 refuses it.
    """
    rsa_dsc = make_dsc(["vaccination"], rsa_key=True)
    store = EuTrustStore([DscCertificate.from_der(rsa_dsc.der)])
    hc1 = make_hc1(rsa_dsc, spec())
    to_be_signed = _to_be_signed(hc1.text)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)
    assert isinstance(rsa_dsc.key, rsa.RSAPrivateKey)
    signature = rsa_dsc.key.sign(to_be_signed, pss, hashes.SHA256())
    text = with_signature(hc1.text, signature)
    assert reason_of(text, store, proof=proof_identifier(signature)) == "bad-signature"


def test_kid_in_unprotected_header_is_accepted(dsc, trust):
    """The spec allows kid in the unprotected header; the signature still binds the key."""
    hc1 = make_hc1(dsc, spec(kid_in_unprotected=True))
    assert verify(hc1.text, trust, proof=hc1.proof_identifier).exp == EXP


def test_tampered_signature_is_rejected(dsc, trust):
    """A flipped bit in the ES256 signature gives bad-signature."""
    hc1 = make_hc1(dsc, spec(tamper_signature=True))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "bad-signature"


def test_payload_changed_after_signing_is_rejected(dsc, trust):
    """A payload altered after signing no longer matches its signature."""
    hc1 = make_hc1(dsc, spec(tamper_payload_after_signing=True))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "bad-signature"


def test_signed_by_another_key_under_trusted_kid_is_rejected(dsc, trust):
    """A credential signed by an untrusted key but carrying a trusted kid fails the signature."""
    hc1 = make_hc1(make_dsc(["vaccination"]), spec(kid=dsc.kid))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "bad-signature"


def test_short_es256_signature_is_rejected(dsc, trust):
    """An ES256 signature that is not 64 bytes r||s (e.g. DER) gives bad-signature."""
    hc1 = make_hc1(dsc, spec())
    text = with_signature(hc1.text, hc1.signature[:63])
    assert reason_of(text, trust, proof="x") == "bad-signature"


def test_es256_signature_with_a_padded_s_is_rejected(dsc, trust):
    """An ES256 signature r || 0x00 || s (65 bytes, the same two integers) gives bad-signature.

    Only the 64-byte form is ES256 in COSE: a verifier app refuses the padded one, and it is
    not the signature the signer made (its proof identifier differs).
    """
    hc1 = make_hc1(dsc, spec())
    padded = hc1.signature[:32] + b"\x00" + hc1.signature[32:]
    text = with_signature(hc1.text, padded)
    assert reason_of(text, trust, proof=proof_identifier(padded)) == "bad-signature"


def test_es256_signature_with_a_short_s_is_rejected(dsc, trust):
    """An ES256 signature r || s whose s is written in 31 bytes (63 in all) gives bad-signature.

    The two integers are the signer's own and would verify once padded, but COSE fixes s at
    32 bytes: a verifier app refuses the short form.
    """
    hc1 = make_hc1(dsc, spec())
    to_be_signed = _to_be_signed(hc1.text)
    assert isinstance(dsc.key, ec.EllipticCurvePrivateKey)
    signatures = (
        decode_dss_signature(dsc.key.sign(to_be_signed, ec.ECDSA(hashes.SHA256())))
        for _ in range(20_000)
    )
    # About one signature in 256 has an s below 2**248.
    r, s = next((r, s) for r, s in signatures if s < 1 << 248)
    short = r.to_bytes(32, "big") + s.to_bytes(31, "big")
    text = with_signature(hc1.text, short)
    assert reason_of(text, trust, proof=proof_identifier(short)) == "bad-signature"


def test_all_zero_es256_signature_is_rejected(dsc, trust):
    """An ES256 signature of 64 zero bytes (r = s = 0, never a valid signature) is bad-signature.

    Pin that every ES256 signature goes to the key's check, a degenerate one included.
    """
    hc1 = make_hc1(dsc, spec())
    zeros = bytes(64)
    text = with_signature(hc1.text, zeros)
    assert reason_of(text, trust, proof=proof_identifier(zeros)) == "bad-signature"


def _to_be_signed(text: str) -> bytes:
    """The Sig_structure a credential's signature covers (RFC 9052 §4.4)."""
    protected, _, payload, _ = cbor2.loads(cose_of(text)).value
    return cbor2.dumps(["Signature1", protected, b"", payload])


def test_signature_that_is_not_a_byte_string_is_refused(dsc, trust):
    """A COSE signature written as a text string, here of 64 characters, gives decode-failed."""
    hc1 = make_hc1(dsc, spec())
    text = with_signature(hc1.text, "s" * 64)
    assert reason_of(text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_a_dsc_key_of_another_kind_never_lets_a_credential_through(dsc):
    """A DSC holding neither an EC nor an RSA key fails the signature; nothing goes unchecked.

    `DscCertificate.from_der` refuses such certificates; this pins the check itself, for a
    store built any other way.
    """
    ed25519_key = ed25519.Ed25519PrivateKey.generate().public_key()
    other_kind = dataclasses.replace(DscCertificate.from_der(dsc.der), public_key=ed25519_key)
    hc1 = make_hc1(dsc, spec())
    store = EuTrustStore([other_kind])
    assert reason_of(hc1.text, store, proof=hc1.proof_identifier) == "bad-signature"


def test_unknown_kid_is_rejected(dsc, trust):
    """A kid not in the trust store gives unknown-kid."""
    hc1 = make_hc1(dsc, spec(kid=b"\x00" * 8))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "unknown-kid"


def test_kid_longer_than_a_trusted_one_is_unknown(dsc, trust):
    """A kid of the trusted DSC's 8 bytes and one more gives unknown-kid: kids match whole.

    A verifier app looks the whole kid up and would find no certificate for it.
    """
    hc1 = make_hc1(dsc, spec(kid=dsc.kid + b"\x00"))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "unknown-kid"


@pytest.mark.parametrize("alg", [-8, -35, -36, -38, -39, -257], ids=str)
def test_unsupported_alg_is_rejected(dsc, trust, alg):
    """An alg other than ES256/PS256 (EdDSA, ES384/512, PS384/512, RS256) is unsupported-alg."""
    hc1 = make_hc1(dsc, spec(alg=alg))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "unsupported-alg"


def test_unsupported_alg_counts_before_an_unknown_kid(dsc, trust):
    """Pin that an unsupported alg under a kid nobody has is counted as unsupported-alg."""
    hc1 = make_hc1(dsc, spec(alg=-8, kid=b"\x00" * 8))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "unsupported-alg"


def test_alg_not_matching_certificate_key_is_rejected(dsc, trust):
    """PS256 claimed for an EC certificate gives alg-mismatch."""
    hc1 = make_hc1(dsc, spec(alg=-37))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "alg-mismatch"


def test_key_usage_not_allowed_by_certificate_is_rejected(dsc, trust):
    """A vaccination-only DSC cannot vouch for a test certificate."""
    hc1 = make_hc1(dsc, spec())
    reason = reason_of(hc1.text, trust, proof=hc1.proof_identifier, key_usage="test")
    assert reason == "key-usage-mismatch"


def test_dsc_restricted_by_the_alternative_eku_form_cannot_vouch_for_another_usage():
    """Pin that a DSC naming vaccination as 1.3.6.1.4.1.0.1847.2021.1.2 signs no test."""
    vaccination_only = make_dsc(None, extra_eku=["1.3.6.1.4.1.0.1847.2021.1.2"])
    store = EuTrustStore([DscCertificate.from_der(vaccination_only.der)])
    hc1 = make_hc1(vaccination_only, spec())
    assert verify(hc1.text, store, proof=hc1.proof_identifier).exp == EXP
    reason = reason_of(hc1.text, store, proof=hc1.proof_identifier, key_usage="test")
    assert reason == "key-usage-mismatch"


def test_expired_certificate_is_rejected():
    """A DSC past its notAfter gives certificate-not-valid."""
    old = make_dsc(
        ["vaccination"],
        not_before=NOW - timedelta(days=400),
        not_after=NOW - timedelta(days=1),
    )
    store = EuTrustStore([DscCertificate.from_der(old.der)])
    hc1 = make_hc1(old, spec())
    assert reason_of(hc1.text, store, proof=hc1.proof_identifier) == "certificate-not-valid"
    # Pin that the usage counts first: asked for one it cannot sign, it is key-usage-mismatch.
    reason = reason_of(hc1.text, store, proof=hc1.proof_identifier, key_usage="test")
    assert reason == "key-usage-mismatch"


def test_payload_mismatch_is_rejected(dsc, trust):
    """A validly signed DCC that differs from the request gives payload-mismatch."""
    hc1 = make_hc1(dsc, spec())
    other = sample_dcc()
    other["nam"]["gn"] = "Eve"
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier, dcc=other) == "payload-mismatch"


def _without(dcc: dict, *names: str) -> dict:
    return {**dcc, "nam": {k: v for k, v in dcc["nam"].items() if k not in names}}


@pytest.mark.parametrize("left_out", [("gn", "gnt"), ("fn", "fnt"), ("fn", "gnt")], ids=str)
def test_members_left_out_may_come_back_empty_as_the_hcert_issuer_signs_them(dsc, trust, left_out):
    """Names left out of the request, signed as "" (the real issuer's form), verify.

    Either transliteration may be the one left out: the schema needs only one of fnt and gnt.
    """
    asked = _without(sample_dcc(), *left_out)
    signed = {**asked, "nam": {**asked["nam"], **dict.fromkeys(left_out, "")}}
    hc1 = make_hc1(dsc, spec(dcc=signed))
    verified = verify(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked)
    assert verified.iss == "NL"


@pytest.mark.parametrize(
    ("asked_gn", "signed_gn"),
    [(None, "Eve"), ("Anna", ""), (None, None)],
    ids=["left-out-signed-as-another", "given-signed-empty", "left-out-signed-without-gnt"],
)
def test_only_the_empty_value_stands_for_a_member_left_out(dsc, trust, asked_gn, signed_gn):
    """Pin that the issuer's form admits "" for what was left out, nothing else, nowhere else."""
    base = _without(sample_dcc(), "gn", "gnt")
    asked = base if asked_gn is None else {**base, "nam": {**base["nam"], "gn": asked_gn}}
    signed_nam = dict(base["nam"]) if signed_gn is None else {**base["nam"], "gn": signed_gn}
    if signed_gn is None:  # gn signed "" as the issuer would, but gnt still missing: half its form
        signed_nam["gn"] = ""
    hc1 = make_hc1(dsc, spec(dcc={**base, "nam": signed_nam}))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked) == "payload-mismatch"


#: A vaccination DCC whose fn and gnt were left out, as the issuer signs it: those two as "".
_ASKED_WITHOUT_FN_AND_GNT = _without(sample_dcc(), "fn", "gnt")
_SIGNED_BY_THE_ISSUER = {
    **_ASKED_WITHOUT_FN_AND_GNT,
    "nam": {"fn": "", "fnt": "TESTER", "gn": "Ada", "gnt": ""},
}
#: What a signer could change in that form to say something else of the holder or the event.
_SAID_OTHERWISE = {
    "given-name-signed-empty": lambda d: d["nam"].update(gn=""),
    "given-name-dropped": lambda d: d["nam"].pop("gn"),
    "transliteration-signed-empty": lambda d: d["nam"].update(fnt=""),
    "left-out-name-signed-as-another": lambda d: d["nam"].update(fn="Other"),
    "left-out-name-signed-null": lambda d: d["nam"].update(fn=None),
    "left-out-name-signed-absent-beside-the-issuers-gnt": lambda d: d["nam"].pop("fn"),
    "nam-null": lambda d: d.update(nam=None),
    "dose-number-zero": lambda d: d["v"][0].update(dn=0),
    "series-zero": lambda d: d["v"][0].update(sd=0),
    "manufacturer-empty": lambda d: d["v"][0].update(ma=""),
    "certificate-id-dropped": lambda d: d["v"][0].pop("ci"),
    "member-added-empty": lambda d: d["v"][0].update(nm=""),
    "second-entry": lambda d: d["v"].append(dict(d["v"][0])),
    "second-group": lambda d: d.update(r=[{"tg": "840539006"}]),
    "ver-changed": lambda d: d.update(ver="1.0.0"),
    "dob-changed": lambda d: d.update(dob="1964-08-13"),
    "dob-empty": lambda d: d.update(dob=""),
    "dob-dropped": lambda d: d.pop("dob"),
}


def test_the_issuers_form_of_a_request_verifies(dsc, trust):
    """The unchanged form the cases below start from verifies: each refusal is its change's."""
    hc1 = make_hc1(dsc, spec(dcc=copy.deepcopy(_SIGNED_BY_THE_ISSUER)))
    asked = copy.deepcopy(_ASKED_WITHOUT_FN_AND_GNT)
    assert verify(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked).iss == "NL"


@pytest.mark.parametrize("change", _SAID_OTHERWISE.values(), ids=_SAID_OTHERWISE)
def test_the_issuers_form_says_nothing_the_request_did_not(dsc, trust, change):
    """A DCC in the issuer's form but for one change of what it says is refused.

    Accepting that form must not let a signer empty or drop a member the request gave, give one
    it left out a value, zero a dose count, add an entry, or change ver or dob.
    """
    signed = copy.deepcopy(_SIGNED_BY_THE_ISSUER)
    change(signed)
    hc1 = make_hc1(dsc, spec(dcc=signed))
    asked = copy.deepcopy(_ASKED_WITHOUT_FN_AND_GNT)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked) == "payload-mismatch"


#: A NAA test DCC sent with an empty name and testing centre; the issuer signs it without nm.
_TEST_ENTRY = {
    "tg": "840539006",
    "tt": "LP6464-4",
    "nm": "",
    "sc": "2021-07-01T10:00:00Z",
    "tr": "260415000",
    "tc": "",
    "co": "NL",
    "is": "Ministry of Health Welfare and Sport",
    "ci": "URN:UVCI:01:NL:TEST0001#K",
}
_TEST_ASKED = {**{k: v for k, v in sample_dcc().items() if k != "v"}, "t": [_TEST_ENTRY]}
_TEST_SAID_OTHERWISE = {
    "centre-sent-empty-signed-absent": lambda e: e.pop("tc"),
    "result-signed-empty": lambda e: e.update(tr=""),
    "name-sent-empty-signed-with-a-value": lambda e: e.update(nm="PCR"),
    "device-left-out-signed-empty": lambda e: e.update(ma=""),
}


def _test_signed_without_nm(dsc: Dsc, change: Callable[[dict], object] | None = None) -> Hc1:
    """`_TEST_ASKED` signed as the issuer writes it, with ``change`` made to its entry."""
    entry = {k: v for k, v in _TEST_ENTRY.items() if k != "nm"}
    if change is not None:
        change(entry)
    return make_hc1(dsc, spec(dcc={**_TEST_ASKED, "t": [entry]}))


def test_a_test_entry_sent_with_an_empty_name_verifies_signed_without_it(dsc, trust):
    """The issuer leaves a test's empty nm out and keeps the empty tc: that form verifies."""
    hc1 = _test_signed_without_nm(dsc)
    asked = copy.deepcopy(_TEST_ASKED)
    assert verify(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked).iss == "NL"


@pytest.mark.parametrize("change", _TEST_SAID_OTHERWISE.values(), ids=_TEST_SAID_OTHERWISE)
def test_a_test_entry_in_the_issuers_form_says_what_was_sent(dsc, trust, change):
    """Only the empty nm may be left out of a test entry; any other change is refused."""
    hc1 = _test_signed_without_nm(dsc, change)
    asked = copy.deepcopy(_TEST_ASKED)
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked) == "payload-mismatch"


def test_payload_type_difference_is_a_mismatch(dsc, trust):
    """A dose number signed as 2.0 where 2 was asked counts as a different payload."""
    signed = sample_dcc()
    signed["v"][0]["dn"] = 2.0
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "payload-mismatch"


@pytest.mark.parametrize(
    ("path", "signed_value"),
    [
        (("v", 0, "dn"), True),  # a bool where the int 2 was asked (True == 1, and is an int)
        (("v", 0, "dn"), "2"),
        (("nam", "gn"), ["Jan"]),
        (("v",), []),
        (("v", 0), [2]),
    ],
)
def test_any_type_or_shape_difference_is_a_mismatch(dsc, trust, path, signed_value):
    """Equal-looking values of another type or shape count as a different payload."""
    signed = copy.deepcopy(sample_dcc())
    target = signed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = signed_value
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "payload-mismatch"


@pytest.mark.parametrize(("signed_value", "asked_value"), [(True, 1), (1, True)], ids=str)
def test_a_bool_is_not_the_int_it_equals(dsc, trust, signed_value, asked_value):
    """Pin that true and 1 differ, either way round, though Python finds them equal.

    bool is even a subclass of int: an equality that allows subclasses lets one pass as the other.
    """
    asked = sample_dcc()
    asked["v"][0]["dn"] = asked_value
    signed = copy.deepcopy(asked)
    signed["v"][0]["dn"] = signed_value
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked) == "payload-mismatch"


DCC_FIELDS_CHANGED = {
    "ver": "1.0.0",
    "nam": {"fn": "Tester", "fnt": "TESTER", "gn": "Eve", "gnt": "EVE"},
    "dob": "1964-08-13",
    "v": [{**sample_dcc()["v"][0], "ci": "URN:UVCI:01:NL:TEST0002#M"}],
}


@pytest.mark.parametrize(("field", "value"), DCC_FIELDS_CHANGED.items(), ids=DCC_FIELDS_CHANGED)
def test_each_field_of_the_dcc_is_compared(dsc, trust, field, value):
    """A DCC differing from the request in any one of its fields, the first too, is a mismatch."""
    signed = sample_dcc()
    signed[field] = value
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "payload-mismatch"


@pytest.mark.parametrize("order", [(1, 0), (0, 2)], ids=["reordered", "second-differs"])
def test_every_list_element_is_compared_in_order(dsc, trust, order):
    """A list signed in another order, or with its second element another, is a mismatch."""
    entries = [
        {**sample_dcc()["v"][0], "dn": dose, "ci": f"URN:UVCI:01:NL:TEST000{dose}#K"}
        for dose in (1, 2, 3)
    ]
    asked = {**sample_dcc(), "v": entries[:2]}
    signed = {**sample_dcc(), "v": [entries[i] for i in order]}
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier, dcc=asked) == "payload-mismatch"


def test_payload_key_order_does_not_matter(dsc, trust):
    """The signer may encode the DCC's keys in any order; the content is what is compared."""
    signed = sample_dcc()
    reordered = dict(reversed(list(signed.items())))
    reordered["v"] = [dict(reversed(list(entry.items()))) for entry in signed["v"]]
    hc1 = make_hc1(dsc, spec(dcc=reordered))
    assert list(reordered) != list(signed)
    assert verify(hc1.text, trust, proof=hc1.proof_identifier).exp == EXP


def test_missing_payload_field_is_a_mismatch(dsc, trust):
    """A DCC lacking one requested field (here the date of birth) gives payload-mismatch."""
    signed = sample_dcc()
    del signed["dob"]
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "payload-mismatch"


def test_payload_field_under_another_name_is_a_mismatch(dsc, trust):
    """A DCC with as many fields as requested, one under another name, gives payload-mismatch.

    Equal field counts are not enough, and looking the signed names up in the requested DCC
    must not fail (a 500) on the one it lacks.
    """
    signed = sample_dcc()
    signed["dateOfBirth"] = signed.pop("dob")
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "payload-mismatch"


def test_extra_payload_field_is_a_mismatch(dsc, trust):
    """A DCC carrying one field more than requested gives payload-mismatch."""
    signed = copy.deepcopy(sample_dcc())
    signed["extra"] = "x"
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "payload-mismatch"


@pytest.mark.parametrize(
    "changes",
    [
        {"shadow_claims": {-260: {1: someone_else()}}},
        {"shadow_claims": {-260: {1: someone_else()}}, "encode": loose_cbor},
        {"shadow_claims": {4: EXP + 86_400 * 365}},
        {"shadow_header": {4: b"\x00" * 8}},
        {"shadow_header": {1: -37}},
        {"payload_trailer": cbor2.dumps({1: "NL", 4: EXP, 6: 0, -260: {1: someone_else()}})},
        {"payload_trailer": b"\x00"},
        {"cose_trailer": b"\x00"},
        {"cose_trailer": cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""]))},
    ],
    ids=[
        "hcert-twice",
        "hcert-twice-key-in-3-and-9-bytes",
        "exp-twice",
        "kid-twice",
        "alg-twice",
        "second-claims-map-after-payload",
        "byte-after-payload",
        "byte-after-cose-message",
        "second-cose-message",
    ],
)
def test_signed_but_ambiguous_cbor_is_refused(dsc, trust, changes):
    """A repeated map key or bytes after an item give decode-failed, though the signature holds.

    A decoder where the last key wins, and that stops after the first item, sees exactly the
    requested credential here; a verifier app whose CBOR library keeps the first key, or reads
    what follows, would see another person, exp, kid or alg.
    """
    hc1 = make_hc1(dsc, spec(**changes))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_valid_encoding_liberties_still_verify(dsc, trust):
    """Non-minimal heads, indefinite lengths and half, single and double floats all verify."""
    signed = sample_dcc()
    signed["v"][0]["x-measure"] = [1.5, 100000.5, 0.1]  # half, single and double precision
    hc1 = make_hc1(dsc, spec(dcc=signed, encode=loose_cbor))
    payload = payload_of(hc1.text)
    assert payload != cbor2.dumps(cbor2.loads(payload))
    for written in [
        b"\x1b" + EXP.to_bytes(8, "big"),  # exp with an 8-byte head
        b"\xbf",  # indefinite-length map
        b"\x7f" + cbor2.dumps("Tes") + cbor2.dumps("ter") + b"\xff",  # chunked text
        b"\xf9" + struct.pack(">e", 1.5),
        b"\xfa" + struct.pack(">f", 100000.5),
        b"\xfb" + struct.pack(">d", 0.1),
    ]:
        assert written in payload
    assert verify(hc1.text, trust, proof=hc1.proof_identifier, dcc=signed).exp == EXP


def test_credential_past_decoder_read_ahead_verifies_and_is_read_to_its_end(dsc, trust):
    """Over 4 KiB (cbor2 reads ahead in 4 KiB steps) a credential verifies; a trailer is found."""
    signed = sample_dcc()
    signed["nam"]["fn"] = "Tester-" * 1000
    hc1 = make_hc1(dsc, spec(dcc=signed))
    assert len(zlib.decompress(base45.b45decode(hc1.text[4:]))) > 4096
    assert verify(hc1.text, trust, proof=hc1.proof_identifier, dcc=signed).exp == EXP
    trailing = make_hc1(dsc, spec(dcc=signed, cose_trailer=b"\x00"))
    reason = reason_of(trailing.text, trust, proof=trailing.proof_identifier, dcc=signed)
    assert reason == "decode-failed"


def test_exp_mismatch_is_rejected(dsc, trust):
    """An exp one second off the requested expiration gives exp-mismatch."""
    hc1 = make_hc1(dsc, spec(exp=EXP + 1))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "exp-mismatch"


def test_exp_earlier_than_asked_is_rejected(dsc, trust):
    """Pin that an exp one second before the requested expiration is exp-mismatch too."""
    hc1 = make_hc1(dsc, spec(exp=EXP - 1))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "exp-mismatch"


def test_credential_expiring_as_it_is_issued_is_rejected(dsc, trust):
    """Pin that an exp equal to the iat, where thirty days were asked, is exp-mismatch too."""
    hc1 = make_hc1(dsc, spec(exp=IAT))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "exp-mismatch"


def test_exp_beyond_certificate_is_rejected():
    """A credential outliving its DSC gives exp-beyond-certificate."""
    short = make_dsc(["vaccination"], not_after=NOW + timedelta(days=1))
    store = EuTrustStore([DscCertificate.from_der(short.der)])
    hc1 = make_hc1(short, spec())
    assert reason_of(hc1.text, store, proof=hc1.proof_identifier) == "exp-beyond-certificate"


def test_exp_may_reach_the_certificate_end_but_not_pass_it():
    """A credential may expire at its DSC's notAfter; one second later is exp-beyond-certificate."""
    ending = make_dsc(["vaccination"], not_after=datetime.fromtimestamp(EXP, UTC))
    store = EuTrustStore([DscCertificate.from_der(ending.der)])
    at_end = make_hc1(ending, spec())
    assert verify(at_end.text, store, proof=at_end.proof_identifier).exp == EXP
    beyond = make_hc1(ending, spec(exp=EXP + 1))
    reason = reason_of(beyond.text, store, proof=beyond.proof_identifier, exp=EXP + 1)
    assert reason == "exp-beyond-certificate"


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(minutes=-3),
        timedelta(minutes=3),
        -SKEW - timedelta(seconds=1),
        SKEW + timedelta(seconds=1),
    ],
    ids=["3-minutes-before", "3-minutes-after", "skew-and-1s-before", "skew-and-1s-after"],
)
def test_iat_outside_skew_is_rejected(dsc, trust, offset):
    """An iat more than the allowed skew away from now gives iat-out-of-range."""
    hc1 = make_hc1(dsc, spec(iat=int((NOW + offset).timestamp())))
    assert reason_of(hc1.text, trust, proof=hc1.proof_identifier) == "iat-out-of-range"


def test_iat_inside_skew_is_accepted(dsc, trust):
    """An iat one minute off now (within a two-minute skew) is accepted."""
    hc1 = make_hc1(dsc, spec(iat=int((NOW - timedelta(minutes=1)).timestamp())))
    assert verify(hc1.text, trust, proof=hc1.proof_identifier).exp == EXP


@pytest.mark.parametrize("offset", [-SKEW, SKEW], ids=["skew-before", "skew-after"])
def test_iat_exactly_the_skew_away_is_accepted(dsc, trust, offset):
    """The skew bound is inclusive: an iat exactly max_clock_skew before or after now verifies."""
    hc1 = make_hc1(dsc, spec(iat=int((NOW + offset).timestamp())))
    assert verify(hc1.text, trust, proof=hc1.proof_identifier).exp == EXP


def test_iat_skew_is_measured_from_now_to_the_fraction_of_a_second(dsc, trust):
    """An iat exactly the skew before a whole second is out of range half a second later.

    Pin that now is not cut to its whole second: that would stretch the skew allowed by up
    to a second.
    """
    hc1 = make_hc1(dsc, spec(iat=int((NOW - SKEW).timestamp())))
    later = NOW + timedelta(milliseconds=500)
    reason = reason_of(hc1.text, trust, proof=hc1.proof_identifier, now=later)
    assert reason == "iat-out-of-range"


def test_proof_identifier_mismatch_is_rejected(dsc, trust):
    """A proofIdentifier that is not derived from the signature is refused."""
    hc1 = make_hc1(dsc, spec())
    other = make_hc1(dsc, spec())
    assert reason_of(hc1.text, trust, proof=other.proof_identifier) == "proof-identifier-mismatch"


@pytest.mark.parametrize(
    "text",
    [
        "HC2:ABC",
        "HC1:",
        "HC1:@@@@",
        "HC1:" + base45.b45encode(b"not zlib").decode(),
        wrap_cose(b"\xff\xff"),
        wrap_cose(cbor2.dumps([b"", {}, b"", b""])),
        wrap_cose(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b""]))),
        wrap_cose(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b"", b""]))),
        wrap_cose(cbor2.dumps(cbor2.CBORTag(18, ["p", {}, b"", b""]))),
        wrap_cose(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: b"k"}), {}, "p", b""]))),
        wrap_cose(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {}, b"", b""]))),
        wrap_cose(
            cbor2.dumps(
                cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: b"k"}), {}, cbor2.dumps([1]), b""])
            )
        ),
        wrap_cose(
            cbor2.dumps(
                cbor2.CBORTag(
                    18,
                    [cbor2.dumps({1: -7, 4: b"k"}), {}, cbor2.dumps({1: "NL", 4: 1, 6: 1}), b""],
                )
            )
        ),
        wrap_cose(
            cbor2.dumps(
                cbor2.CBORTag(
                    18,
                    [
                        cbor2.dumps({1: True, 4: b"k"}),
                        {},
                        cbor2.dumps({1: "NL", 4: 1, 6: 1, -260: {1: {}}}),
                        b"",
                    ],
                )
            )
        ),
    ],
    ids=[
        "prefix",
        "empty",
        "base45",
        "zlib",
        "cbor",
        "untagged",
        "three-elements",
        "five-elements",
        "protected-type",
        "payload-type",
        "no-kid",
        "payload-not-map",
        "no-hcert",
        "bool-alg",
    ],
)
def test_malformed_credentials_fail_to_decode(text):
    """Each structural defect is reported as decode-failed."""
    with pytest.raises(CredentialVerificationError) as caught:
        decode_hc1(text)
    assert caught.value.reason == "decode-failed"


@pytest.mark.parametrize("wbits", [31, -15], ids=["gzip", "raw-deflate"])
def test_cose_message_compressed_other_than_by_zlib_is_refused(dsc, trust, wbits):
    """Pin that only a zlib stream is inflated: gzip or raw deflate is decode-failed.

    The DCC's verifier apps inflate zlib (RFC 1950) and refuse the others.
    """
    hc1 = make_hc1(dsc, spec())
    deflater = zlib.compressobj(wbits=wbits)
    stream = deflater.compress(cose_of(hc1.text)) + deflater.flush()
    text = "HC1:" + base45.b45encode(stream).decode()
    assert reason_of(text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize(
    "bend",
    [lambda stream: stream[:-4], lambda stream: stream + b"\x00"],
    ids=["checksum-cut-off", "byte-after-the-stream"],
)
def test_zlib_stream_must_end_exactly_where_the_text_does(dsc, trust, bend):
    """A zlib stream cut short, or followed by more bytes, is refused though it inflates whole.

    Without its checksum the stream still inflates to the complete, validly signed message;
    a verifier app whose zlib insists on the checksum, or reads on, would refuse or misread it.
    """
    hc1 = make_hc1(dsc, spec())
    text = "HC1:" + base45.b45encode(bend(zlib.compress(cose_of(hc1.text)))).decode()
    assert reason_of(text, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_zip_bomb_is_capped():
    """A small input inflating past the cap is refused as too-large without inflating it all."""
    bomb = zlib.compress(b"\x00" * (MAX_DECOMPRESSED_BYTES * 16), 9)
    assert len(bomb) < 8 * 1024
    with pytest.raises(CredentialVerificationError) as caught:
        decode_hc1("HC1:" + base45.b45encode(bomb).decode())
    assert caught.value.reason == "too-large"


def test_zip_bomb_is_refused_without_being_inflated():
    """Pin that inflating stops at the cap: a bomb of 16 MiB takes no more memory than the cap.

    The character cap alone lets a credential inflate to some 20 MiB; each request in flight
    would hold that much.
    """
    bomb = zlib.compress(bytes(16 * 1024 * 1024), 9)
    text = "HC1:" + base45.b45encode(bomb).decode()
    assert len(text) <= MAX_CREDENTIAL_CHARS
    tracemalloc.start()
    try:
        with pytest.raises(CredentialVerificationError) as caught:
            decode_hc1(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "too-large"
    assert peak < 1024 * 1024, f"{peak} bytes at the peak"


def test_just_under_cap_is_decoded_far_enough_to_reach_cbor():
    """Exactly the cap decompresses (the failure comes later, from CBOR), so the cap is exact."""
    data = zlib.compress(b"\xff" * MAX_DECOMPRESSED_BYTES)
    with pytest.raises(CredentialVerificationError) as caught:
        decode_hc1("HC1:" + base45.b45encode(data).decode())
    assert caught.value.reason == "decode-failed"


@pytest.mark.parametrize("cut", [0, 4], ids=["whole-stream", "checksum-cut-off"])
def test_one_byte_past_the_cap_is_too_large_however_the_stream_ends(cut):
    """Pin that a stream inflating to the cap and one byte is too-large, not decode-failed.

    Cut off after its last data byte, the stream leaves nothing unread at the cap: only the
    byte inflated past the cap tells that it is over, not a truncated stream.
    """
    stream = zlib.compress(b"\xff" * (MAX_DECOMPRESSED_BYTES + 1))
    with pytest.raises(CredentialVerificationError) as caught:
        decode_hc1("HC1:" + base45.b45encode(stream[: len(stream) - cut]).decode())
    assert caught.value.reason == "too-large"


@pytest.mark.parametrize("prefix", ["HC2:", "hc1:", "NL2:", ""])
def test_credential_under_another_prefix_is_refused(dsc, trust, prefix):
    """Pin that a validly signed credential is refused unless it opens with exactly HC1:."""
    hc1 = make_hc1(dsc, spec())
    text = prefix + hc1.text.removeprefix("HC1:")
    assert reason_of(text, trust, proof=hc1.proof_identifier) == "decode-failed"


@pytest.mark.parametrize("edge", ["\n", " \n", "\t"], ids=repr)
def test_credential_with_whitespace_around_it_is_refused(dsc, trust, edge):
    """Pin that a genuine credential followed by a line break or a tab is decode-failed.

    Neither is Base45, and a space is a Base45 character: nothing is stripped.
    """
    hc1 = make_hc1(dsc, spec())
    assert reason_of(hc1.text + edge, trust, proof=hc1.proof_identifier) == "decode-failed"


def test_text_at_the_character_cap_is_decoded_and_one_more_is_too_large():
    """Text of exactly MAX_CREDENTIAL_CHARS goes on to Base45; one character more is too-large."""
    at_cap = "HC1:" + "0" * (MAX_CREDENTIAL_CHARS - len("HC1:"))
    for text, reason in [(at_cap, "decode-failed"), (at_cap + "0", "too-large")]:
        with pytest.raises(CredentialVerificationError) as caught:
            decode_hc1(text)
        assert caught.value.reason == reason


def test_overlong_text_is_refused():
    """Text longer than the character cap is refused before decoding."""
    with pytest.raises(CredentialVerificationError) as caught:
        decode_hc1("HC1:" + "0" * 40_000)
    assert caught.value.reason == "too-large"
