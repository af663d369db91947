"""Decoding and verification of EU DCC credentials (``HC1:`` strings).

``HC1:`` + Base45(zlib(COSE_Sign1)), where COSE_Sign1 is CBOR tag 18 of
``[protected, unprotected, payload, signature]``, the protected header names alg (1) and kid
(4), and the payload is a CWT with iss (1), exp (4), iat (6) and the DCC under -260 → 1.

Every step is bounded: the text length, the decompressed size (a zip bomb is refused after
``MAX_DECOMPRESSED_BYTES``) and CBOR nesting (cbor2 caps it). Verifying one credential costs
about a signature check (~100 µs for ES256), so it runs on the event loop.

What verifier apps read must be what the gateway checked, whatever CBOR library they use:

- the COSE message, the protected header and the payload must each be exactly one CBOR item
  with no repeated map key and no tag but the message's own tag 18 (``verification.cbor``),
  so neither a repeated key, a second item nor a tag cbor2 resolves silently shows another
  reader other content;
- every header and claim label is an int of the contract, checked by type: a Python dict
  finds 1.0 or true under the label 1, a COSE library does not;
- the protected header holds alg and at most kid, the unprotected header at most kid, and kid
  is not in both (RFC 9052 §3), so no crit, content type or second kid reaches a verifier;
- the claims are exactly iss, exp, iat and -260, and -260 holds only the DCC under 1, so no
  claim the gateway does not read (nbf, sub, a second DCC) reaches a verifier;
- iss must be the signing DSC's country, when its subject names one (``iss-mismatch``);
- the DCC must be the one asked for, as it was sent or as the CoronaCheck "hcert" issuer
  writes it (``hcert_issuer_form``: an optional member left out is signed as "").
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signing_gateway.verification.base45 import b45decode
from signing_gateway.verification.cbor import decode_item
from signing_gateway.verification.errors import (
    CredentialVerificationError,
    EuVerificationFailure,
)

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from signing_gateway.verification.trust import DscCertificate, EuTrustStore

__all__ = [
    "MAX_CREDENTIAL_CHARS",
    "MAX_DECOMPRESSED_BYTES",
    "CredentialVerificationError",
    "DecodedHc1",
    "VerifiedEuCredential",
    "decode_hc1",
    "hcert_issuer_form",
    "proof_identifier_for",
    "verify_eu_credential",
]

#: Longest ``HC1:`` text accepted (a QR code holds ~4 300 characters; this leaves room).
MAX_CREDENTIAL_CHARS = 32 * 1024
#: Largest decompressed COSE message accepted.
MAX_DECOMPRESSED_BYTES = 64 * 1024

_PREFIX = "HC1:"
_COSE_SIGN1_TAG = 18
_ALG_ES256 = -7
_ALG_PS256 = -37
_ALGS = {_ALG_ES256: "ES256", _ALG_PS256: "PS256"}
_HEADER_ALG, _HEADER_KID = 1, 4
_PROTECTED_LABELS = frozenset({_HEADER_ALG, _HEADER_KID})
_UNPROTECTED_LABELS = frozenset({_HEADER_KID})
_CLAIM_ISS, _CLAIM_EXP, _CLAIM_IAT, _CLAIM_HCERT = 1, 4, 6, -260
_CLAIMS = frozenset({_CLAIM_ISS, _CLAIM_EXP, _CLAIM_IAT, _CLAIM_HCERT})
_HCERT_EU_DCC_V1 = 1
_HCERT_LABELS = frozenset({_HCERT_EU_DCC_V1})
_ES256_SIGNATURE_BYTES = 64
_COSE_ARRAY_LENGTH = 4


@dataclass(frozen=True)
class DecodedHc1:
    """The parts of an HC1 credential, structurally checked but not yet verified."""

    protected: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes
    iss: str
    exp: int
    iat: int
    dcc: dict[str, Any]


@dataclass(frozen=True)
class VerifiedEuCredential:
    """What a verified credential says about itself; ``kid`` is base64.

    Its DCC (and with it the UVCI) is the one asked for: verification proves them equal.
    """

    kid: str
    iss: str
    iat: int
    exp: int


def _fail(reason: EuVerificationFailure, detail: str = "") -> CredentialVerificationError:
    return CredentialVerificationError(reason, detail)


def _decompress(compressed: bytes) -> bytes:
    """Inflate a zlib stream, refusing output over ``MAX_DECOMPRESSED_BYTES``."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(compressed, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as exc:
        raise _fail("decode-failed", "not a zlib stream") from exc
    if len(data) > MAX_DECOMPRESSED_BYTES or inflater.unconsumed_tail:
        raise _fail("too-large", f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
    if not inflater.eof or inflater.unused_data:
        raise _fail("decode-failed", "truncated or trailing zlib data")
    return data


def _int(value: object, what: str) -> int:
    if type(value) is not int:  # bool is an int subclass and never a valid claim
        raise _fail("decode-failed", f"{what} must be an integer")
    return value


def _check_labels(mapping: Mapping[Any, Any], allowed: frozenset[int], what: str) -> None:
    """Refuse any label of ``mapping`` that is not one of the ints ``allowed``.

    The type is checked, not just the value: Python finds 1.0 and true under the key 1, so a
    float or bool label would read here like the int it equals, while a COSE or CWT library
    looking up the int finds nothing. A label outside ``allowed`` is something the gateway
    does not read but a verifier might: a claim such as nbf, or a header such as crit.
    """
    for label in mapping:
        if type(label) is not int or label not in allowed:
            raise _fail("decode-failed", f"{what} holds a label other than {sorted(allowed)}")


def _check_exact_labels(mapping: Mapping[Any, Any], labels: frozenset[int], what: str) -> None:
    """Refuse ``mapping`` unless its labels are exactly the ints ``labels``."""
    _check_labels(mapping, labels, what)
    if len(mapping) != len(labels):
        raise _fail("decode-failed", f"{what} lacks one of the labels {sorted(labels)}")


def _cose_sign1(text: str) -> list[Any]:
    """Undo prefix, Base45, zlib and CBOR; return the four COSE_Sign1 elements."""
    if not isinstance(text, str) or not text.startswith(_PREFIX):
        raise _fail("decode-failed", "missing HC1: prefix")
    if len(text) > MAX_CREDENTIAL_CHARS:
        raise _fail("too-large", f"longer than {MAX_CREDENTIAL_CHARS} characters")
    try:
        compressed = b45decode(text[len(_PREFIX) :])
    except (ValueError, TypeError) as exc:
        raise _fail("decode-failed", "not Base45") from exc
    # decode_item refuses every tag but an outer 18: a tag here can only be COSE_Sign1's.
    cose = decode_item(_decompress(compressed), "COSE message", outer_tag=_COSE_SIGN1_TAG)
    if not isinstance(cose, cbor2.CBORTag):
        raise _fail("decode-failed", "not a tagged COSE_Sign1")
    parts = cose.value
    # cbor2 decodes the content of a tag as immutable values (tuple, frozendict).
    if not isinstance(parts, list | tuple) or len(parts) != _COSE_ARRAY_LENGTH:
        raise _fail("decode-failed", "COSE_Sign1 must be a 4-element array")
    protected, unprotected, payload, signature = parts
    if not (
        isinstance(protected, bytes)
        and isinstance(unprotected, Mapping)
        and isinstance(payload, bytes)
        and isinstance(signature, bytes)
    ):
        raise _fail("decode-failed", "COSE_Sign1 element types")
    return list(parts)


def decode_hc1(text: str) -> DecodedHc1:
    """Decode an ``HC1:`` string into its COSE and CWT parts, checking their structure.

    Raises:
        CredentialVerificationError: ``decode-failed`` or ``too-large``.
    """
    protected, unprotected, payload, signature = _cose_sign1(text)
    header = decode_item(protected, "protected header") if protected else {}
    if not isinstance(header, dict):
        raise _fail("decode-failed", "protected header must be a map")
    _check_labels(header, _PROTECTED_LABELS, "protected header")
    # The spec lets kid sit in the unprotected header; the signature check still binds the key.
    _check_labels(unprotected, _UNPROTECTED_LABELS, "unprotected header")
    if _HEADER_KID in header and _HEADER_KID in unprotected:
        # RFC 9052 §3: a label must not appear in both buckets; readers differ on which wins.
        raise _fail("decode-failed", "kid in both the protected and the unprotected header")
    kid = header.get(_HEADER_KID, unprotected.get(_HEADER_KID))
    if not isinstance(kid, bytes):
        raise _fail("decode-failed", "kid must be a byte string")
    claims = decode_item(payload, "payload")
    if not isinstance(claims, dict):
        raise _fail("decode-failed", "payload must be a map")
    _check_exact_labels(claims, _CLAIMS, "payload")
    iss = claims[_CLAIM_ISS]
    hcert = claims[_CLAIM_HCERT]
    if not isinstance(hcert, dict):
        raise _fail("decode-failed", "-260 must be a map")
    _check_exact_labels(hcert, _HCERT_LABELS, "-260")
    dcc = hcert[_HCERT_EU_DCC_V1]
    if not isinstance(iss, str) or not isinstance(dcc, dict):
        raise _fail("decode-failed", "iss must be text and -260/1 a map")
    return DecodedHc1(
        protected=protected,
        alg=_int(header.get(_HEADER_ALG), "alg"),
        kid=kid,
        payload=payload,
        signature=signature,
        iss=iss,
        exp=_int(claims.get(_CLAIM_EXP), "exp"),
        iat=_int(claims.get(_CLAIM_IAT), "iat"),
        dcc=dcc,
    )


def _check_signature(decoded: DecodedHc1, dsc: DscCertificate) -> None:
    """Verify the COSE signature with the DSC's key; ``bad-signature`` otherwise."""
    to_be_signed = cbor2.dumps(["Signature1", decoded.protected, b"", decoded.payload])
    key = dsc.public_key
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(decoded.signature) != _ES256_SIGNATURE_BYTES:
                raise _fail("bad-signature", "ES256 signature must be 64 bytes r||s")
            r = int.from_bytes(decoded.signature[:32], "big")
            s = int.from_bytes(decoded.signature[32:], "big")
            key.verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(
                mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH
            )
            key.verify(decoded.signature, to_be_signed, pss, hashes.SHA256())
        else:
            # `DscCertificate.from_der` builds no other kind; one built otherwise must not be
            # released unchecked.
            raise _fail("bad-signature", "the DSC's key is neither EC nor RSA")
    except InvalidSignature as exc:
        raise _fail("bad-signature") from exc


def _strictly_equal(left: object, right: object) -> bool:
    """Deep equality that also requires equal scalar types (1 != 1.0 != True).

    Any two mappings, or any two of list and tuple, compare by content. Plain dicts and
    lists (what both sides nearly always are) are told apart by exact type first, without
    the abstract-class checks, and the children are compared through `map` (no generator
    frame): half the time per DCC.
    """
    kind = type(left)
    if kind is type(right):
        if kind is dict:
            return _equal_mappings(left, right)  # type: ignore[arg-type]
        if kind is list or kind is tuple:
            return _equal_sequences(left, right)  # type: ignore[arg-type]
        if not isinstance(left, Mapping):
            return left == right
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return _equal_mappings(left, right)
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return _equal_sequences(left, right)
    return False


def _equal_mappings(left: Mapping[Any, Any], right: Mapping[Any, Any]) -> bool:
    return left.keys() == right.keys() and all(
        map(_strictly_equal, left.values(), map(right.__getitem__, left))
    )


def _equal_sequences(left: list[Any] | tuple[Any, ...], right: list[Any] | tuple[Any, ...]) -> bool:
    return len(left) == len(right) and all(map(_strictly_equal, left, right))


#: The DCC members the CoronaCheck "hcert" issuer writes whether or not they were sent: it reads
#: the JSON into fixed records and encodes every field of them, so a member left out comes back
#: as its empty value ("" for text, 0 for the dose counts). Per place: "nam", and each group's
#: entries. The group lists themselves and a test entry's nm and ma are written only when not
#: empty (`_WRITTEN_UNLESS_EMPTY`).
_ALWAYS_WRITTEN: dict[str, dict[str, object]] = {
    "nam": dict.fromkeys(("fn", "fnt", "gn", "gnt"), ""),
    "v": dict.fromkeys(("tg", "vp", "mp", "ma", "dt", "co", "is", "ci"), "") | {"dn": 0, "sd": 0},
    "t": dict.fromkeys(("tg", "tt", "sc", "tr", "tc", "co", "is", "ci"), ""),
    "r": dict.fromkeys(("tg", "fr", "co", "is", "df", "du", "ci"), ""),
}
_WRITTEN_UNLESS_EMPTY: dict[str, tuple[str, ...]] = {"t": ("nm", "ma")}


def _as_issuer_writes(place: str, member: Mapping[str, Any]) -> dict[str, Any]:
    """One object of a DCC (``nam`` or an entry of group ``place``) as the issuer writes it."""
    written = {**_ALWAYS_WRITTEN[place], **member}
    for name in _WRITTEN_UNLESS_EMPTY.get(place, ()):
        if written.get(name) == "":
            del written[name]
    return written


def hcert_issuer_form(dcc: Mapping[str, Any]) -> dict[str, Any]:
    """``dcc`` as the CoronaCheck "hcert" issuance server signs it (`_ALWAYS_WRITTEN`).

    That server does not sign the DCC it was sent byte for byte: an optional member the
    request left out (a given name, a test's testing centre) is signed as "", and a test's
    empty ``nm``/``ma`` is left out. Only that is changed; a DCC already in this form is
    returned equal.
    """
    form = dict(dcc)
    name = form.get("nam")
    if isinstance(name, Mapping):
        form["nam"] = _as_issuer_writes("nam", name)
    for group in ("v", "t", "r"):
        entries = form.get(group)
        if isinstance(entries, list | tuple):
            form[group] = [
                _as_issuer_writes(group, e) if isinstance(e, Mapping) else e for e in entries
            ]
    return form


def _signed_as_asked(signed: Mapping[str, Any], asked: Mapping[str, Any]) -> bool:
    """Whether the signed DCC is the one asked for, as sent or as the hcert issuer writes it.

    Either form says the same of the holder: they differ only in members that are empty in
    one and absent in the other, in the places where the issuer writes them so.
    """
    return _strictly_equal(signed, asked) or _strictly_equal(signed, hcert_issuer_form(asked))


def proof_identifier_for(signature: bytes) -> str:
    """The proof identifier of a signature: base64 of the first 16 bytes of its SHA-256."""
    return base64.b64encode(hashlib.sha256(signature).digest()[:16]).decode("ascii")


def _signing_certificate(
    decoded: DecodedHc1, *, trust: EuTrustStore, key_usage: str, now: datetime
) -> DscCertificate:
    """The trusted DSC named by the kid, checked against alg, key usage and ``now``."""
    alg_name = _ALGS.get(decoded.alg)
    if alg_name is None:
        raise _fail("unsupported-alg", str(decoded.alg))
    dsc = trust.lookup(decoded.kid)
    if dsc is None:
        raise _fail("unknown-kid", base64.b64encode(decoded.kid).decode("ascii"))
    if dsc.alg != alg_name:
        raise _fail("alg-mismatch", f"{alg_name} with a {dsc.alg} certificate")
    if str(key_usage) not in dsc.key_usages:
        raise _fail("key-usage-mismatch", f"certificate {dsc.kid_b64} cannot sign {key_usage}")
    if not dsc.valid_at(now):
        raise _fail("certificate-not-valid", f"certificate {dsc.kid_b64} not valid now")
    return dsc


def verify_eu_credential(
    credential: str,
    *,
    trust: EuTrustStore,
    key_usage: str,
    expected_dcc: Mapping[str, Any],
    expected_exp: int,
    proof_identifier: str,
    now: datetime,
    max_clock_skew: timedelta,
) -> VerifiedEuCredential:
    """Check that a signer's credential is genuine and says exactly what was asked.

    Checks, in order: structure, alg (ES256/PS256) known and matching the DSC key, kid
    trusted, DSC allowed for ``key_usage`` and valid at ``now``, signature, iss equal to the
    DSC's country (when its subject names one), DCC equal to ``expected_dcc`` (types
    included), as sent or in `hcert_issuer_form`, exp equal to ``expected_exp`` and within
    the DSC, iat within ``max_clock_skew`` of ``now``, and the proof identifier.

    Raises:
        CredentialVerificationError: with reason ``decode-failed``, ``too-large``,
            ``unsupported-alg``, ``unknown-kid``, ``alg-mismatch``, ``key-usage-mismatch``,
            ``certificate-not-valid``, ``bad-signature``, ``iss-mismatch``, ``payload-mismatch``,
            ``exp-mismatch``, ``exp-beyond-certificate``, ``iat-out-of-range`` or
            ``proof-identifier-mismatch``.
    """
    decoded = decode_hc1(credential)
    dsc = _signing_certificate(decoded, trust=trust, key_usage=key_usage, now=now)
    _check_signature(decoded, dsc)
    if dsc.country is not None and decoded.iss != dsc.country:
        raise _fail("iss-mismatch", f"iss is not {dsc.country}, the certificate's country")
    if not _signed_as_asked(decoded.dcc, expected_dcc):
        raise _fail("payload-mismatch")
    if decoded.exp != expected_exp:
        raise _fail("exp-mismatch", f"{decoded.exp} != {expected_exp}")
    if decoded.exp > dsc.not_after.timestamp():
        raise _fail("exp-beyond-certificate")
    if abs(decoded.iat - now.timestamp()) > max_clock_skew.total_seconds():
        raise _fail("iat-out-of-range", f"iat {decoded.iat}")
    if proof_identifier != proof_identifier_for(decoded.signature):
        raise _fail("proof-identifier-mismatch")
    return VerifiedEuCredential(kid=dsc.kid_b64, iss=decoded.iss, iat=decoded.iat, exp=decoded.exp)
