"""Encoding of EU DCC credentials ("HC1:" strings), as the EU issuance server produces them.

Pipeline: CWT claims {1: iss, 4: exp, 6: iat, -260: {1: dcc}} → CBOR → COSE_Sign1 (CBOR tag 18,
protected header {1: -7 (ES256), 4: kid}, empty unprotected map) signed with ES256 as a raw
64-byte r‖s → zlib → Base45 → "HC1:" prefix.

The whole pipeline costs well under 100 µs per credential (measured), so it runs on the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fake_signer.base45 import b45encode

if TYPE_CHECKING:
    from collections.abc import Mapping

COSE_SIGN1_TAG = 18
ALG_ES256 = -7
HEADER_ALG = 1
HEADER_KID = 4
CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_HCERT = -260
HCERT_EU_DCC_V1 = 1
PREFIX = "HC1:"
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True)
class SignedCredential:
    """An encoded credential with the raw signature it carries."""

    credential: str
    signature: bytes

    @property
    def proof_identifier(self) -> str:
        """Base64 of the first 16 bytes of SHA-256 of the signature."""
        return proof_identifier(self.signature)


def proof_identifier(signature: bytes) -> str:
    """Base64 (standard, padded) of the first 16 bytes of SHA-256 of a signature."""
    return base64.b64encode(hashlib.sha256(signature).digest()[:16]).decode("ascii")


def cwt_payload(*, issuer: str, issued_at: int, expires_at: int, dcc: Mapping[str, Any]) -> bytes:
    """CBOR-encode the CWT claims that carry a DCC."""
    return cbor2.dumps(
        {
            CLAIM_ISS: issuer,
            CLAIM_EXP: expires_at,
            CLAIM_IAT: issued_at,
            CLAIM_HCERT: {HCERT_EU_DCC_V1: dict(dcc)},
        }
    )


def es256_raw(key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """Sign with ECDSA P-256/SHA-256 and return the raw 64-byte r‖s form COSE requires."""
    r, s = decode_dss_signature(key.sign(message, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign1(
    payload: bytes,
    key: ec.EllipticCurvePrivateKey,
    kid: bytes,
    *,
    header_kid: bytes | None = None,
    corrupt_signature: bool = False,
) -> tuple[bytes, bytes]:
    """Build a tagged COSE_Sign1 over `payload`; return (encoded message, signature).

    `header_kid` puts another kid in the header than the one the key belongs to, and
    `corrupt_signature` flips a bit of the signature after signing: both exist to inject faults.
    """
    protected = cbor2.dumps(
        {HEADER_ALG: ALG_ES256, HEADER_KID: kid if header_kid is None else header_kid}
    )
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    signature = es256_raw(key, to_be_signed)
    if corrupt_signature:
        signature = bytes([signature[0] ^ 0x01]) + signature[1:]
    message = cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
    return message, signature


def encode_hc1(cose_message: bytes) -> str:
    """Compress, Base45-encode and prefix a COSE message."""
    encoded: bytes = b45encode(zlib.compress(cose_message, 9))
    return PREFIX + encoded.decode("ascii")


def issue_credential(
    *,
    key: ec.EllipticCurvePrivateKey,
    kid: bytes,
    issuer: str,
    issued_at: int,
    expires_at: int,
    dcc: Mapping[str, Any],
    header_kid: bytes | None = None,
    corrupt_signature: bool = False,
) -> SignedCredential:
    """Produce a complete "HC1:" credential for a DCC payload."""
    payload = cwt_payload(issuer=issuer, issued_at=issued_at, expires_at=expires_at, dcc=dcc)
    message, signature = sign1(
        payload, key, kid, header_kid=header_kid, corrupt_signature=corrupt_signature
    )
    return SignedCredential(encode_hc1(message), signature)
