r"""Verification of CoronaCheck Idemix static QRs (NL2), as the Idemix server issues them.

Sources: ``minvws/nl-covid19-coronacheck-idemix`` (``common``, ``holder/disclosure.go``,
``verifier``) on ``privacybydesign/gabi`` (``proofs.go`` ``ProofD``, ``internal/common``).

A QR is ``"NL" + version + ":" + payload``. The payload is minvws/base45-go's Base45: the
whole payload is one number in base 45 (most significant digit first) whose big-endian bytes
are the proof's DER -- not RFC 9285, whose Base45 the EU credentials use. Version ``2``
(``ProofSerializationV2``)::

    SEQUENCE { INTEGER DisclosureTimeSeconds, INTEGER C, INTEGER A, INTEGER EResponse,
               INTEGER VResponse, INTEGER AResponse, SEQUENCE OF INTEGER ADisclosed }

Version ``3`` (``ProofSerializationV3``) has ``SEQUENCE OF INTEGER AResponses`` in place of
``AResponse``: the holder's secret key's response, then that of the category if it is hidden.
The prefix picks the layout; the metadata attribute's credentialVersion (2 or 3) picks the
attribute names, and a version 3 credential may be shown in either layout (the real QRs in
the tests are all ``NL2:``, three of them version 3 credentials).

``ADisclosed[k]`` is gabi attribute ``k + 1``: first the metadata attribute, DER ``SEQUENCE {
OCTET STRING credentialVersion, PrintableString issuerPkId }``, then the named attributes. An
attribute's bytes ``b`` are the number ``(int(b) << 1) + 1``; a low bit of 0 means absent.

The proof verifies when ``C == HashCommit([1, A, Z', nonce])``, with the nonce the first 128
bits of SHA-256 of the disclosure time in decimal, and ``Z'`` reconstructed from the issuer's
key, the disclosed attributes and the responses (`_reconstruct_z`), after the responses pass
gabi's range checks. Failures are `CredentialVerificationError`\ s with the domestic reasons:
``decode-failed``, ``too-large``, ``unknown-kid``, ``nonce-mismatch`` (the disclosure time is
not the one expected: it fixes the challenge nonce) and ``bad-signature`` (the proof, range
checks included).

The modular exponentiations are GMP's (`powmod`, gmpy2): ~8x faster than ``pow`` at 2048
bits. Values stay Python ints everywhere else, and every range check is done on them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gmpy2

from signing_gateway.verification.base45 import alphabet_values
from signing_gateway.verification.domestic import MAX_QR_CHARS
from signing_gateway.verification.errors import (
    CredentialVerificationError,
    DomesticVerificationFailure,
)
from signing_gateway.verification.idemix_der import (
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    DerError,
    decode_integer,
    decode_string,
    encode_integer,
    encode_octet_string,
    encode_printable_string,
    encode_sequence,
    read_single,
    sequence_items,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from signing_gateway.verification.idemix_keys import IdemixPublicKey

__all__ = [
    "ATTRIBUTE_NAMES",
    "MAX_CLOCK_SKEW_SECONDS",
    "STATIC_DISCLOSURE_TIME",
    "VerifiedIdemixCredential",
    "attribute_exponent",
    "attribute_int",
    "credential_attribute_values",
    "decode_qr_base45",
    "hash_commit",
    "idemix_failure",
    "powmod",
    "verify_static_qr",
]

#: The disclosure time of a static (paper) QR: the Idemix server discloses at Unix time 0.
STATIC_DISCLOSURE_TIME = 0
#: How far a dynamic QR's disclosure time may be from now (mobile-core tests with 120 s).
MAX_CLOCK_SKEW_SECONDS = 180
#: The named attributes of each credential version, in gabi attribute order from index 2.
_NAMES_V2 = (
    "isSpecimen",
    "isPaperProof",
    "validFrom",
    "validForHours",
    "firstNameInitial",
    "lastNameInitial",
    "birthDay",
    "birthMonth",
)
ATTRIBUTE_NAMES: Mapping[int, tuple[str, ...]] = {2: _NAMES_V2, 3: (*_NAMES_V2, "category")}

_QR_BASE = 45
#: Digits folded into one multiply while decoding: a few hundred steps for a QR, not 1300.
_QR_CHUNK = 16
_PREFIX_LENGTH = 4
#: Proof layout per prefix version. ``2`` is ``common.ProofVersionByteV2``; ``3`` is taken to
#: be ``ProofVersionByteV3``, whose value the sources at hand name but do not show.
_LAYOUTS = {"2": 2, "3": 3}
#: gabi's context for CoronaCheck proofs (``common.BigOne``).
_CONTEXT = 1
_PROOF_MEMBERS = 7
#: Go reads the disclosure time into an int64.
_MAX_TIME = 2**63 - 1
#: Bits of a challenge: a SHA-256 output.
_CHALLENGE_BITS = 256
#: Hidden attributes a proof may have: the secret key, and in a version 3 credential the
#: category.
_MAX_HIDDEN = 2
_CATEGORY_VERSION = 3


def idemix_failure(
    reason: DomesticVerificationFailure, detail: str = ""
) -> CredentialVerificationError:
    """The error for a refused Idemix credential."""
    return CredentialVerificationError(reason, detail)


@dataclass(frozen=True, slots=True)
class VerifiedIdemixCredential:
    """What a verified QR discloses, and which key vouched for it."""

    #: Named attributes as text; an absent one is ``""``, a hidden category is left out.
    attributes: dict[str, str]
    issuer_pk_id: str
    credential_version: int
    disclosure_time: int
    #: ``common.CalculateProofIdentifier``: SHA-256 of the challenge's bytes, first 16 bytes.
    proof_identifier: bytes


@dataclass(frozen=True, slots=True)
class _DisclosureProof:
    disclosure_time: int
    c: int
    a: int
    e_response: int
    v_response: int
    #: Secret key's response first, then the hidden category's, if any.
    a_responses: tuple[int, ...]
    a_disclosed: tuple[int, ...]


def decode_qr_base45(text: str) -> bytes:
    """Decode minvws/base45-go's Base45; ValueError if it is not its canonical form."""
    digits = alphabet_values(text)  # the RFC 9285 alphabet, read as one number
    if not digits:
        raise ValueError("no payload")
    if digits[0] == 0:
        raise ValueError("a leading zero digit")  # the encoder never writes one
    value = 0
    for start in range(0, len(digits), _QR_CHUNK):
        chunk = digits[start : start + _QR_CHUNK]
        part = 0
        for digit in chunk:
            part = part * _QR_BASE + digit
        value = value * _QR_BASE ** len(chunk) + part
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def powmod(base: int, exponent: int, modulus: int) -> int:
    """``pow(base, exponent, modulus)`` by GMP, as a Python int.

    As with ``pow``, a negative exponent raises the inverse to its magnitude, and raises
    ``ValueError`` when ``base`` has no inverse modulo ``modulus``.
    """
    return int(gmpy2.powmod(base, exponent, modulus))


def hash_commit(values: Sequence[int]) -> int:
    """Gabi's ``HashCommit``: SHA-256 of DER ``SEQUENCE { INTEGER count, INTEGER value.. }``."""
    encoded = encode_sequence([encode_integer(len(values)), *map(encode_integer, values)])
    return int.from_bytes(hashlib.sha256(encoded).digest(), "big")


def attribute_exponent(value: int, lm: int) -> int:
    """An attribute as gabi raises a base to it: hashed (SHA-256) when longer than ``lm`` bits."""
    if value.bit_length() <= lm:
        return value
    return int.from_bytes(hashlib.sha256(_minimal_bytes(value)).digest(), "big")


def _minimal_bytes(value: int) -> bytes:
    """Go's ``big.Int.Bytes``: big-endian, no leading zero byte (empty for 0)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def attribute_int(value: bytes) -> int:
    """An attribute's bytes as the number gabi signs: ``(int(value) << 1) + 1`` (present)."""
    return (int.from_bytes(value, "big") << 1) + 1


def _attribute_bytes(value: int) -> bytes:
    """``common.DecodeAttributeInt``: the bytes, or b"" when the low bit marks it absent."""
    return _minimal_bytes(value >> 1) if value & 1 else b""


def credential_attribute_values(
    attributes: Mapping[str, str], *, issuer_pk_id: str, credential_version: int = 3
) -> tuple[bytes, ...]:
    """The byte values an Idemix credential signs: the metadata attribute, then each named one.

    This is ``CreateCredentialMessage.attributes``; `verify_issue_signature` checks a
    signature against these. KeyError if ``attributes`` lacks a name of the version.
    """
    metadata = encode_sequence(
        [encode_octet_string(bytes((credential_version,))), encode_printable_string(issuer_pk_id)]
    )
    names = ATTRIBUTE_NAMES[credential_version]
    return (metadata, *(attributes[name].encode("utf-8") for name in names))


def _decode_metadata(value: int) -> tuple[int, str]:
    """(credentialVersion, issuerPkId) of the metadata attribute; DerError if malformed."""
    items = sequence_items(read_single(_attribute_bytes(value), TAG_SEQUENCE))
    if len(items) != 2 or items[0][0] != TAG_OCTET_STRING:  # noqa: PLR2004 - two members
        raise DerError("metadata must be SEQUENCE { OCTET STRING, string }")
    version = items[0][1]
    if len(version) != 1 or version[0] not in ATTRIBUTE_NAMES:
        raise DerError("unknown credential version")
    return version[0], decode_string(items[1])


def _parse_proof(payload: bytes, layout: int) -> _DisclosureProof:
    """The proof in ``payload`` (DER of the given layout); DerError if malformed."""
    items = sequence_items(read_single(payload, TAG_SEQUENCE))
    if len(items) != _PROOF_MEMBERS:
        raise DerError(f"a proof has {_PROOF_MEMBERS} members, not {len(items)}")
    time_item, c_item, a_item, e_item, v_item, responses_item, disclosed_item = items
    responses: tuple[int, ...]
    if layout == 2:  # noqa: PLR2004 - the layout's version
        responses = (decode_integer(responses_item, signed=True),)
    else:
        responses = tuple(decode_integer(item, signed=True) for item in _members(responses_item))
    disclosed = tuple(decode_integer(item) for item in _members(disclosed_item))
    disclosure_time = decode_integer(time_item)
    if disclosure_time > _MAX_TIME:
        raise DerError("disclosure time past int64")
    return _DisclosureProof(
        disclosure_time=disclosure_time,
        c=decode_integer(c_item),
        a=decode_integer(a_item),
        e_response=decode_integer(e_item, signed=True),
        v_response=decode_integer(v_item, signed=True),
        a_responses=responses,
        a_disclosed=disclosed,
    )


def _members(item: tuple[int, bytes]) -> list[tuple[int, bytes]]:
    """The members of the SEQUENCE ``item``."""
    tag, content = item
    if tag != TAG_SEQUENCE:
        raise DerError(f"tag 0x{tag:02x} where a SEQUENCE was expected")
    return sequence_items(content)


def _decode_qr(qr: str) -> _DisclosureProof:
    if not isinstance(qr, str) or len(qr) < _PREFIX_LENGTH or not qr.startswith("NL"):
        raise idemix_failure("decode-failed", "missing NL prefix")
    layout = _LAYOUTS.get(qr[2])
    if layout is None or qr[3] != ":":
        raise idemix_failure("decode-failed", "unsupported NL proof version")
    if len(qr) > MAX_QR_CHARS:
        raise idemix_failure("too-large", f"longer than {MAX_QR_CHARS} characters")
    try:
        return _parse_proof(decode_qr_base45(qr[_PREFIX_LENGTH:]), layout)
    except ValueError as exc:  # DerError too
        raise idemix_failure("decode-failed", str(exc)) from exc


def _check_shape(proof: _DisclosureProof, version: int) -> None:
    """Disclosed plus hidden attributes must be the version's, and only a category hidden."""
    names = ATTRIBUTE_NAMES[version]
    hidden = len(proof.a_responses)
    if not 1 <= hidden <= _MAX_HIDDEN or (hidden == _MAX_HIDDEN and version < _CATEGORY_VERSION):
        raise idemix_failure("decode-failed", "only the secret key and a category may be hidden")
    if len(proof.a_disclosed) - 1 + hidden - 1 != len(names):
        raise idemix_failure("decode-failed", f"version {version} has {len(names)} attributes")


def _check_disclosure_time(
    disclosed_at: int, expected: int | None, now: float | None, max_skew: int
) -> None:
    if expected is not None:
        if disclosed_at != expected:
            raise idemix_failure("nonce-mismatch", f"disclosed at {disclosed_at}, not {expected}")
        return
    current = time.time() if now is None else now
    if abs(disclosed_at - current) > max_skew:
        raise idemix_failure("nonce-mismatch", "disclosure time too far from now")


def _check_sizes(proof: _DisclosureProof, key: IdemixPublicKey) -> None:
    """Bound every exponent before any is used.

    gabi's ``ProofD.correctResponseSizes``: |response| < 2^(LmCommit+1), |e| < 2^(LeCommit+1).
    gabi bounds neither C nor VResponse: C is compared with a SHA-256 output and VResponse is
    ~3200 bits in a real proof, so both are capped here (256 bits, 2 Ln bits) only so that a
    crafted QR cannot make the check cost more than a real one.
    """
    params = key.params
    if any(abs(r).bit_length() > params.lm_commit + 1 for r in proof.a_responses):
        raise idemix_failure("bad-signature", "attribute response out of range")
    if abs(proof.e_response).bit_length() > params.le_commit + 1:
        raise idemix_failure("bad-signature", "e response out of range")
    if proof.c.bit_length() > _CHALLENGE_BITS or abs(proof.v_response).bit_length() > 2 * params.ln:
        raise idemix_failure("bad-signature", "challenge or v response out of range")


def _reconstruct_z(proof: _DisclosureProof, key: IdemixPublicKey) -> int:
    """Reconstruct Z as gabi's ``ProofD.reconstructZ`` does.

    known = Z / (A^(2^(Le-1)) * prod_disclosed R_i^a_i);
    Z' = known^-C * A^EResponse * S^VResponse * prod_hidden R_i^response_i  (mod n).
    """
    n, params = key.n, key.params
    denominator = powmod(proof.a, 1 << (params.le - 1), n)
    for index, value in enumerate(proof.a_disclosed, start=1):
        exponent = attribute_exponent(value, params.lm)
        denominator = denominator * powmod(key.bases[index], exponent, n)
    known = key.z * powmod(denominator % n, -1, n) % n
    # The secret key is base 0; a hidden category follows the disclosed attributes.
    hidden_indices = (0, 1 + len(proof.a_disclosed))
    z = powmod(known, -proof.c, n) * powmod(proof.a, proof.e_response, n) % n
    z = z * powmod(key.s, proof.v_response, n) % n
    for index, response in zip(hidden_indices, proof.a_responses, strict=False):
        z = z * powmod(key.bases[index], response, n) % n
    return z


def _verify_proof(proof: _DisclosureProof, key: IdemixPublicKey) -> None:
    if not 1 < proof.a < key.n:
        raise idemix_failure("bad-signature", "A outside (1, n)")
    nonce_bits = key.params.lstatzk // 8
    time_digest = hashlib.sha256(str(proof.disclosure_time).encode("ascii")).digest()
    nonce = int.from_bytes(time_digest[:nonce_bits], "big")
    try:
        z = _reconstruct_z(proof, key)
    except ValueError as exc:  # not invertible mod n: no issuer's A is
        raise idemix_failure("bad-signature", "A not invertible") from exc
    if hash_commit([_CONTEXT, proof.a, z, nonce]) != proof.c:
        raise idemix_failure("bad-signature")


def verify_static_qr(
    qr: str,
    keys: Mapping[str, IdemixPublicKey],
    *,
    disclosure_time: int | None = STATIC_DISCLOSURE_TIME,
    now: float | None = None,
    max_clock_skew: int = MAX_CLOCK_SKEW_SECONDS,
) -> VerifiedIdemixCredential:
    """Verify an ``NL2:``/``NL3:`` QR against the issuer keys ``keys`` (by issuerPkId).

    ``disclosure_time`` is the one the QR must carry: 0 for a static QR. With ``None`` it
    may be any within ``max_clock_skew`` seconds of ``now`` (by default the clock), as an
    app's QR is.

    Raises:
        CredentialVerificationError: ``decode-failed``, ``too-large``, ``unknown-kid``,
            ``nonce-mismatch`` or ``bad-signature``.
    """
    proof = _decode_qr(qr)
    if not proof.a_disclosed:
        raise idemix_failure("decode-failed", "the metadata attribute must be disclosed")
    try:
        version, issuer_pk_id = _decode_metadata(proof.a_disclosed[0])
    except ValueError as exc:
        raise idemix_failure("decode-failed", f"metadata attribute: {exc}") from exc
    key = keys.get(issuer_pk_id)
    if key is None:
        raise idemix_failure("unknown-kid", issuer_pk_id)
    _check_shape(proof, version)
    if len(proof.a_disclosed) + len(proof.a_responses) > len(key.bases):
        raise idemix_failure("decode-failed", f"more attributes than key {issuer_pk_id} has")
    _check_disclosure_time(proof.disclosure_time, disclosure_time, now, max_clock_skew)
    _check_sizes(proof, key)
    _verify_proof(proof, key)
    try:
        values = [_attribute_bytes(v).decode("utf-8") for v in proof.a_disclosed[1:]]
    except UnicodeDecodeError as exc:
        raise idemix_failure("decode-failed", "an attribute is not UTF-8") from exc
    return VerifiedIdemixCredential(
        attributes=dict(zip(ATTRIBUTE_NAMES[version], values, strict=False)),
        issuer_pk_id=issuer_pk_id,
        credential_version=version,
        disclosure_time=proof.disclosure_time,
        proof_identifier=hashlib.sha256(_minimal_bytes(proof.c)).digest()[:16],
    )
