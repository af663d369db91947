"""Build signer keys, certificates and credentials for tests, independently of fake_signer.

Everything is generated on demand (no work at import time). The builders take explicit knobs
for each way a credential can be wrong, so a test tampers with exactly one part.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

EKU = {
    "test": "1.3.6.1.4.1.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.1847.2021.1.3",
}

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(common_name: str, countries: Iterable[str] = ("NL",)) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, c) for c in countries]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Csca:
    """A test country signing CA."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        """The CSCA certificate in DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)


def make_csca(common_name: str = "Test CSCA") -> Csca:
    """A self-signed P-384 CSCA valid from a year ago for ten years."""
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Csca(key, certificate)


@dataclass
class Dsc:
    """A test document signer: private key and certificate."""

    key: SigningKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        """The DSC certificate in DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        """The DSC certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key in PEM (PKCS#8), encrypted with `password` if one is given."""
        encryption = (
            serialization.NoEncryption()
            if password is None
            else serialization.BestAvailableEncryption(password)
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @property
    def kid(self) -> bytes:
        """The DCC kid: first 8 bytes of SHA-256 of the DER."""
        return hashlib.sha256(self.der).digest()[:8]

    @property
    def alg(self) -> str:
        """ES256 for EC keys, PS256 for RSA keys."""
        return "ES256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "PS256"

    def keys_entry(self, key_usage: list[str]) -> dict[str, Any]:
        """This DSC as an entry of the fake signer's ``GET /keys`` ``eu`` list."""
        return {
            "kid": b64(self.kid),
            "alg": self.alg,
            "keyUsage": key_usage,
            "certificate": b64(self.der),
        }


def make_dsc(
    key_usages: list[str] | None = None,
    *,
    rsa_key: bool = False,
    rsa_bits: int = 2048,
    curve: ec.EllipticCurve | None = None,
    issuer: Csca | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extra_eku: list[str] | None = None,
    countries: Iterable[str] = ("NL",),
    eku_der: bytes | None = None,
) -> Dsc:
    """A DSC with the DCC EKUs of ``key_usages`` (None: no EKU extension at all).

    ``countries`` are the countryName attributes of its subject, in order (none, one or more).
    ``eku_der``, instead of the usages, is the EKU extension's value as written, unchecked.
    """
    key: SigningKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        if rsa_key
        else ec.generate_private_key(curve or ec.SECP256R1())
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("Test DSC", countries))
        .issuer_name(issuer.certificate.subject if issuer else _name("Test DSC", countries))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=730))
    )
    if eku_der is not None:
        raw = x509.UnrecognizedExtension(x509.ExtensionOID.EXTENDED_KEY_USAGE, eku_der)
        builder = builder.add_extension(raw, critical=False)
    elif key_usages is not None or extra_eku:
        oids = [x509.ObjectIdentifier(EKU[u]) for u in key_usages or []]
        oids += [x509.ObjectIdentifier(o) for o in extra_eku or []]
        builder = builder.add_extension(x509.ExtendedKeyUsage(oids), critical=False)
    signer_key = issuer.key if issuer else key
    certificate = builder.sign(signer_key, hashes.SHA256())
    return Dsc(key, certificate)


def b64(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def proof_identifier(signature: bytes) -> str:
    """base64 of the first 16 bytes of SHA-256 of the signature."""
    return b64(hashlib.sha256(signature).digest()[:16])


def _sign(key: SigningKey, message: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    return key.sign(message, pss, hashes.SHA256())


def wrap_cose(cose: bytes) -> str:
    """zlib, Base45 and the HC1: prefix around an encoded COSE message."""
    return "HC1:" + base45.b45encode(zlib.compress(cose)).decode("ascii")


@dataclass
class Hc1:
    """A built credential with the parts tests compare against."""

    text: str
    signature: bytes
    kid: bytes

    @property
    def proof_identifier(self) -> str:
        """The proof identifier matching this credential's signature."""
        return proof_identifier(self.signature)


@dataclass
class Hc1Spec:
    """What goes into a credential; each field can be bent by a test.

    ``shadow_header`` and ``shadow_claims`` are written into the protected header and the
    claims map before the real entries (repeats kept), so a decoder where the last key wins
    sees only the real ones. ``payload_trailer`` and ``cose_trailer`` are bytes appended after
    the signed claims map and after the COSE message. ``encode`` writes the protected header
    and the claims map (the shadows always use plain ``cbor2.dumps``). ``extra_header`` and
    ``extra_unprotected`` add entries to the protected and the unprotected header.
    """

    dcc: dict[str, Any]
    exp: int
    iat: int
    iss: str = "NL"
    alg: int | None = None
    kid: bytes | None = None
    kid_in_unprotected: bool = False
    tamper_signature: bool = False
    tamper_payload_after_signing: bool = False
    extra_claims: dict[int, Any] = field(default_factory=dict)
    extra_header: dict[int, Any] = field(default_factory=dict)
    extra_unprotected: dict[int, Any] = field(default_factory=dict)
    shadow_header: dict[int, Any] = field(default_factory=dict)
    shadow_claims: dict[int, Any] = field(default_factory=dict)
    payload_trailer: bytes = b""
    cose_trailer: bytes = b""
    encode: Callable[[Any], bytes] = cbor2.dumps


def cbor_map(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A definite-length CBOR map of already-encoded keys and values, in order, repeats kept.

    ``cbor2.dumps`` cannot write a map that repeats a key; a faulty signer can.
    """
    entries = list(pairs)
    head = cbor2.dumps(len(entries))  # major type 0 with the count; 0xA0 turns it into a map
    return bytes([head[0] | 0xA0]) + head[1:] + b"".join(key + value for key, value in entries)


def _encode_map(
    entries: dict[int, Any], shadow: dict[int, Any], encode: Callable[[Any], bytes]
) -> bytes:
    if not shadow:
        return encode(entries)
    shadowed = [(cbor2.dumps(k), cbor2.dumps(v)) for k, v in shadow.items()]
    return cbor_map(shadowed + [(encode(k), encode(v)) for k, v in entries.items()])


def make_hc1(dsc: Dsc, spec: Hc1Spec) -> Hc1:
    """Sign ``spec`` with ``dsc`` the way the EU signer does, with the requested defects."""
    alg = spec.alg if spec.alg is not None else (-7 if dsc.alg == "ES256" else -37)
    kid = spec.kid if spec.kid is not None else dsc.kid
    header: dict[int, Any] = {1: alg}
    unprotected: dict[int, Any] = {}
    if spec.kid_in_unprotected:
        unprotected[4] = kid
    else:
        header[4] = kid
    header.update(spec.extra_header)
    unprotected.update(spec.extra_unprotected)
    protected = _encode_map(header, spec.shadow_header, spec.encode)
    claims = {1: spec.iss, 4: spec.exp, 6: spec.iat, -260: {1: spec.dcc}, **spec.extra_claims}
    payload = _encode_map(claims, spec.shadow_claims, spec.encode) + spec.payload_trailer
    signature = _sign(dsc.key, cbor2.dumps(["Signature1", protected, b"", payload]))
    if spec.tamper_signature:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    if spec.tamper_payload_after_signing:
        claims[-260] = {1: {**spec.dcc, "ver": "9.9.9"}}
        payload = cbor2.dumps(claims)
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload, signature]))
    return Hc1(wrap_cose(cose + spec.cose_trailer), signature, kid)


def forge_hc1(
    dsc: Dsc, protected: bytes, payload: bytes, unprotected: dict[Any, Any] | None = None
) -> Hc1:
    """A credential of exactly these encoded parts, validly signed with ``dsc``.

    For shapes ``Hc1Spec`` cannot describe: the parts are taken as given, unchecked.
    """
    signature = _sign(dsc.key, cbor2.dumps(["Signature1", protected, b"", payload]))
    cose = cbor2.CBORTag(18, [protected, unprotected or {}, payload, signature])
    return Hc1(wrap_cose(cbor2.dumps(cose)), signature, dsc.kid)


def _head(major: int, value: int) -> bytes:
    """A CBOR head with the argument always in 8 bytes: valid, and never the shortest form."""
    return bytes([major << 5 | 27]) + value.to_bytes(8, "big")


def _shortest_float(value: float) -> bytes:
    for marker, fmt in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(fmt, value)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == value:
            return bytes([marker]) + packed
    return b"\xfb" + struct.pack(">d", value)


def loose_cbor(value: Any) -> bytes:
    """Encode ``value`` with every liberty RFC 8949 allows a signer, where cbor2 takes none.

    Integers get 8-byte heads, text and byte strings are sent as indefinite-length chunks,
    arrays and maps are indefinite-length, and each float takes the shortest of half, single
    or double precision that holds it exactly (cbor2 writes doubles only). Decodes to the
    same value as ``cbor2.dumps(value)``; 64-bit integers at most.
    """
    if value is None or isinstance(value, bool):
        return cbor2.dumps(value)
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return _shortest_float(value)
    if isinstance(value, str | bytes):
        # Major type 3 (text) or 2 (bytes), indefinite length: chunks of three, then a break.
        marker = b"\x7f" if isinstance(value, str) else b"\x5f"
        chunks = (cbor2.dumps(value[i : i + 3]) for i in range(0, len(value), 3))
        return marker + b"".join(chunks) + b"\xff"
    if isinstance(value, list | tuple):
        return b"\x9f" + b"".join(map(loose_cbor, value)) + b"\xff"
    if isinstance(value, dict):
        items = (loose_cbor(k) + loose_cbor(v) for k, v in value.items())
        return b"\xbf" + b"".join(items) + b"\xff"
    raise TypeError(f"loose_cbor cannot encode {type(value).__name__}")


def sample_dcc() -> dict[str, Any]:
    """A small vaccination DCC payload."""
    return {
        "ver": "1.3.0",
        "nam": {"fn": "Tester", "fnt": "TESTER", "gn": "Ada", "gnt": "ADA"},
        "dob": "1964-08-12",
        "v": [
            {
                "tg": "840539006",
                "vp": "1119349007",
                "mp": "EU/1/20/1528",
                "ma": "ORG-100030215",
                "dn": 2,
                "sd": 2,
                "dt": "2021-05-29",
                "co": "NL",
                "is": "Ministry of Health Welfare and Sport",
                "ci": "URN:UVCI:01:NL:TEST0001#K",
            }
        ],
    }


@dataclass
class DomesticSigner:
    """A test domestic (NL2 simulation) signing key."""

    key: ed25519.Ed25519PrivateKey

    @property
    def raw_public(self) -> bytes:
        """The raw 32-byte public key."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_pem(self) -> bytes:
        """The public key as PEM SubjectPublicKeyInfo."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def kid(self) -> bytes:
        """First 8 bytes of SHA-256 of the raw public key."""
        return hashlib.sha256(self.raw_public).digest()[:8]

    def keys_entry(self) -> dict[str, Any]:
        """This key as an entry of the fake signer's ``GET /keys`` ``domestic`` list."""
        return {"kid": b64(self.kid), "alg": "Ed25519", "publicKey": b64(self.raw_public)}

    def static_qr(
        self,
        attrs: dict[str, str],
        *,
        kid: bytes | None = None,
        signed_attrs: dict[str, str] | None = None,
    ) -> tuple[str, bytes]:
        """An NL2 static QR over ``attrs`` (signature over ``signed_attrs`` if given)."""
        attrs_cbor = cbor2.dumps(attrs, canonical=True)
        signed = cbor2.dumps(signed_attrs, canonical=True) if signed_attrs else attrs_cbor
        signature = self.key.sign(b"NL2-static\x00" + signed)
        body = cbor2.dumps([kid or self.kid, attrs_cbor, signature])
        return "NL2:" + base45.b45encode(body).decode("ascii"), signature

    def issue_item(
        self, nonce: str, attrs: dict[str, str], *, kid: bytes | None = None
    ) -> dict[str, Any]:
        """One item of an ``/issue`` answer for ``attrs`` under ``nonce``."""
        signature = self.key.sign(b"NL2-issue\x00" + cbor2.dumps([nonce, attrs], canonical=True))
        return {
            "issueSignatureMessage": {
                "kid": b64(kid or self.kid),
                "issuerNonce": nonce,
                "signature": b64(signature),
            },
            "attributes": attrs,
        }


def make_domestic_signer() -> DomesticSigner:
    """A fresh Ed25519 domestic signer."""
    return DomesticSigner(ed25519.Ed25519PrivateKey.generate())


def sample_attributes() -> dict[str, str]:
    """Domestic attributes as the signer receives them."""
    return {
        "isSpecimen": "0",
        "isPaperProof": "1",
        "validFrom": "1700000000",
        "validForHours": "24",
        "firstNameInitial": "A",
        "lastNameInitial": "T",
        "birthDay": "12",
        "birthMonth": "8",
    }
