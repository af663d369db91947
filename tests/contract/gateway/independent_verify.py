"""Decode and verify gateway output with libraries only: pycose, cbor2, base45, zlib, cryptography.

Nothing here comes from `signing_gateway` or `fake_signer`: a shared bug cannot hide itself.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pycose.keys import CoseKey
from pycose.messages import Sign1Message


def b64d(value: str) -> bytes:
    """Strict standard base64."""
    return base64.b64decode(value, validate=True)


@dataclass
class DecodedHc1:
    """The parts of a verified HC1 credential."""

    kid: bytes
    alg: int
    claims: dict[int, Any]

    @property
    def dcc(self) -> dict[str, Any]:
        """The DCC payload (claim -260, key 1)."""
        return dict(self.claims[-260][1])


def _thaw(value: Any) -> Any:
    """cbor2 may give frozendict/tuple; turn them into dict/list for comparisons."""
    if isinstance(value, dict) or type(value).__name__ == "frozendict":
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


def verify_hc1(credential: str, certificate_der: bytes) -> DecodedHc1:
    """Verify an HC1 credential's COSE_Sign1 with pycose against a DSC; return its parts."""
    assert credential.startswith("HC1:")
    tagged = cbor2.loads(zlib.decompress(base45.b45decode(credential[4:])))
    assert isinstance(tagged, cbor2.CBORTag)
    assert tagged.tag == 18
    protected, unprotected, payload, signature = tagged.value
    message = Sign1Message.from_cose_obj(
        [protected, dict(unprotected), payload, signature], allow_unknown_attributes=True
    )
    certificate = x509.load_der_x509_certificate(certificate_der)
    pem = certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    message.key = CoseKey.from_pem_public_key(pem.decode())
    assert message.verify_signature(), "COSE signature does not verify against the DSC"
    header = cbor2.loads(protected)
    return DecodedHc1(kid=header[4], alg=header[1], claims=_thaw(cbor2.loads(payload)))


def dsc_kid(certificate_der: bytes) -> bytes:
    """The DCC kid of a DSC: first 8 bytes of SHA-256 of its DER."""
    return hashlib.sha256(certificate_der).digest()[:8]


def verify_static_qr(qr: str, public_key: bytes) -> dict[str, str]:
    """Verify an NL2 static QR with the raw Ed25519 key; return the attributes it carries."""
    assert qr.startswith("NL2:")
    kid, attrs_cbor, signature = cbor2.loads(base45.b45decode(qr[4:]))
    assert kid == hashlib.sha256(public_key).digest()[:8]
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, b"NL2-static\x00" + attrs_cbor)
    return dict(cbor2.loads(attrs_cbor))


def verify_issue_item(item: dict[str, Any], nonce: str, public_key: bytes) -> None:
    """Verify one domestic /issue signature over the nonce and the attributes."""
    message = item["issueSignatureMessage"]
    assert message["issuerNonce"] == nonce
    assert b64d(message["kid"]) == hashlib.sha256(public_key).digest()[:8]
    signed = b"NL2-issue\x00" + cbor2.dumps([nonce, item["attributes"]], canonical=True)
    Ed25519PublicKey.from_public_bytes(public_key).verify(b64d(message["signature"]), signed)
