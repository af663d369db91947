r"""Verification of domestic signer output (the NL2 simulation of the Idemix server).

The simulation signs with Ed25519 instead of CL signatures, with a domain-separation prefix
per message kind:

- static QR: ``"NL2:" + Base45(CBOR([kid, attrs_cbor, signature]))``, signature over
  ``b"NL2-static\\x00" + attrs_cbor`` with ``attrs_cbor`` the canonical CBOR of the attributes;
- issuance: per credential, signature over
  ``b"NL2-issue\\x00" + canonical CBOR([issuer_nonce, attributes])``.

The gateway checks that each signature verifies with a trusted key and covers exactly the
attributes it asked for (and, for issuance, the session's nonce, and that the key is the one
the session named: its ``issuerPkId``, which the simulation gives as the base64 kid). A static
QR's body must be exactly one CBOR item (``verification.cbor``): nothing may ride along after
it. Likewise an issuance signature message holds exactly ``kid``, ``issuerNonce`` and
``signature``.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.exceptions import InvalidSignature

from signing_gateway.verification.base45 import b45decode
from signing_gateway.verification.cbor import decode_item
from signing_gateway.verification.errors import (
    CredentialVerificationError,
    DomesticVerificationFailure,
)
from signing_gateway.verification.hcert import proof_identifier_for

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from signing_gateway.verification.trust import DomesticTrustStore

__all__ = ["MAX_QR_CHARS", "verify_issue_signatures", "verify_static_qr"]

#: Longest ``NL2:`` text accepted; a real one is a few hundred characters.
MAX_QR_CHARS = 8 * 1024

_PREFIX = "NL2:"
_STATIC_CONTEXT = b"NL2-static\x00"
_ISSUE_CONTEXT = b"NL2-issue\x00"
_QR_ARRAY_LENGTH = 3
_SIGNATURE_MESSAGE_MEMBERS = {"kid", "issuerNonce", "signature"}


def _fail(reason: DomesticVerificationFailure, detail: str = "") -> CredentialVerificationError:
    return CredentialVerificationError(reason, detail)


def _canonical_attributes(attributes: Mapping[str, str]) -> bytes:
    return cbor2.dumps(dict(attributes), canonical=True)


def _verify(trust: DomesticTrustStore, kid: bytes, signature: bytes, message: bytes) -> None:
    key = trust.lookup(kid)
    if key is None:
        raise _fail("unknown-kid", base64.b64encode(kid).decode("ascii"))
    try:
        key.public_key.verify(signature, message)
    except InvalidSignature as exc:
        raise _fail("bad-signature") from exc


def verify_static_qr(
    qr: str,
    *,
    trust: DomesticTrustStore,
    expected_attributes: Mapping[str, str],
    proof_identifier: str,
) -> None:
    """Check a static QR: trusted kid, valid signature, exactly the expected attributes.

    Raises:
        CredentialVerificationError: ``decode-failed``, ``too-large``, ``unknown-kid``,
            ``bad-signature``, ``payload-mismatch`` or ``proof-identifier-mismatch``.
    """
    if not isinstance(qr, str) or not qr.startswith(_PREFIX):
        raise _fail("decode-failed", "missing NL2: prefix")
    if len(qr) > MAX_QR_CHARS:
        raise _fail("too-large", f"longer than {MAX_QR_CHARS} characters")
    try:
        packed = b45decode(qr[len(_PREFIX) :])
    except (ValueError, TypeError) as exc:
        raise _fail("decode-failed", "not Base45") from exc
    parts = decode_item(packed, "QR")
    if (
        not isinstance(parts, list)
        or len(parts) != _QR_ARRAY_LENGTH
        or not all(isinstance(p, bytes) for p in parts)
    ):
        raise _fail("decode-failed", "QR must hold [kid, attributes, signature] byte strings")
    kid, attrs_cbor, signature = parts
    _verify(trust, kid, signature, _STATIC_CONTEXT + attrs_cbor)
    # Comparing the signed bytes with our own canonical encoding pins keys, values and types.
    if attrs_cbor != _canonical_attributes(expected_attributes):
        raise _fail("payload-mismatch")
    if proof_identifier != proof_identifier_for(signature):
        raise _fail("proof-identifier-mismatch")


def _signature_message(item: object) -> tuple[str, bytes, str, bytes, Any]:
    """Pull (kid text, kid, nonce, signature, attributes) out of one issue item."""
    message = item.get("issueSignatureMessage") if isinstance(item, dict) else None
    if not isinstance(item, dict) or not isinstance(message, dict):
        raise _fail("decode-failed", "item must carry an issueSignatureMessage object")
    # Only these are checked, and the message is released as it came: nothing may ride along.
    if message.keys() != _SIGNATURE_MESSAGE_MEMBERS:
        raise _fail("decode-failed", "issueSignatureMessage must hold kid, issuerNonce, signature")
    nonce = message.get("issuerNonce")
    if not isinstance(nonce, str):
        raise _fail("decode-failed", "issuerNonce must be a string")
    kid_text, signature_text = message.get("kid"), message.get("signature")
    # Text only: str() of a missing (None) or boolean one is four base64 characters.
    if not isinstance(kid_text, str) or not isinstance(signature_text, str):
        raise _fail("decode-failed", "kid and signature must be base64 strings")
    try:
        kid = base64.b64decode(kid_text, validate=True)
        signature = base64.b64decode(signature_text, validate=True)
    except ValueError as exc:  # binascii.Error, or plain ValueError for non-ASCII text
        raise _fail("decode-failed", "kid and signature must be base64") from exc
    return kid_text, kid, nonce, signature, item.get("attributes")


def verify_issue_signatures(
    items: Sequence[Mapping[str, Any]],
    *,
    trust: DomesticTrustStore,
    issuer_nonce: str,
    issuer_pk_id: str,
    expected_attributes: Sequence[Mapping[str, str]],
) -> None:
    """Check every signature of an issue answer, in order, against what was asked.

    ``issuer_nonce`` and ``issuer_pk_id`` are the session's, from its prepare-issue message:
    the app built its commitment for that key, and the signer is handed the message back, so
    a credential signed with any other key, trusted or not, is not the session's.

    Raises:
        CredentialVerificationError: ``count-mismatch``, ``decode-failed``,
            ``nonce-mismatch``, ``payload-mismatch``, ``unknown-kid``, ``bad-signature`` or
            ``kid-mismatch``.
    """
    if len(items) != len(expected_attributes):
        raise _fail("count-mismatch", f"{len(items)} != {len(expected_attributes)}")
    for item, expected in zip(items, expected_attributes, strict=True):
        kid_text, kid, nonce, signature, attributes = _signature_message(item)
        if nonce != issuer_nonce:
            raise _fail("nonce-mismatch")
        if not isinstance(attributes, dict) or not all(
            isinstance(v, str) for v in attributes.values()
        ):
            raise _fail("decode-failed", "attributes must map strings to strings")
        if attributes != dict(expected):
            raise _fail("payload-mismatch")
        signed = cbor2.dumps([issuer_nonce, dict(expected)], canonical=True)
        _verify(trust, kid, signature, _ISSUE_CONTEXT + signed)
        if kid_text != issuer_pk_id:
            raise _fail("kid-mismatch", "signed with another key than the session's issuerPkId")
