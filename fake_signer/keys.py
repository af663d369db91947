"""Key material of a fake signer: a CSCA, one ES256 key + DSC per key usage, one Ed25519 key.

Keys are generated at start, or loaded from a keys directory so restarts keep the same keys (the
directory is filled on first use). Every function here is synchronous and does file I/O: call it
before serving or through `asyncio.to_thread`.

Files in a keys directory (PEM; private keys unencrypted, mode 0600, because this is a test double):
`csca.key.pem`, `csca.crt.pem`, `dsc-<usage>.key.pem`, `dsc-<usage>.crt.pem` for each key usage,
and `domestic-ed25519.key.pem`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

CSCA_VALIDITY = dt.timedelta(days=3650)
# Long enough that a gateway can issue credentials valid for about a year.
DSC_VALIDITY = dt.timedelta(days=730)
# Backdating tolerates small clock differences between the fake and its clients.
BACKDATE = dt.timedelta(hours=1)
# A loaded certificate must stay valid at least this long: a fake started on one that ends
# sooner would refuse or mis-sign every EU request part way through a working day.
VALIDITY_MARGIN = dt.timedelta(days=1)

_Loaded = TypeVar("_Loaded")


class KeyUsage(StrEnum):
    """The DCC key usages, one DSC each."""

    VACCINATION = "vaccination"
    TEST = "test"
    RECOVERY = "recovery"

    @property
    def eku_oid(self) -> x509.ObjectIdentifier:
        """The extended-key-usage OID the DCC trust framework assigns to this usage."""
        return x509.ObjectIdentifier(_EKU_OIDS[self])


_EKU_OIDS = {
    KeyUsage.TEST: "1.3.6.1.4.1.1847.2021.1.1",
    KeyUsage.VACCINATION: "1.3.6.1.4.1.1847.2021.1.2",
    KeyUsage.RECOVERY: "1.3.6.1.4.1.1847.2021.1.3",
}


@dataclass(frozen=True)
class EuSigningKey:
    """An ES256 private key with its DSC, for one key usage."""

    usage: KeyUsage
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    kid: bytes

    @classmethod
    def of(
        cls, usage: KeyUsage, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
    ) -> EuSigningKey:
        """Bind a key and its DSC, deriving the kid (first 8 bytes of SHA-256 of the DER)."""
        der = cert.public_bytes(serialization.Encoding.DER)
        return cls(usage, key, cert, hashlib.sha256(der).digest()[:8])


@dataclass(frozen=True)
class DomesticSigningKey:
    """The Ed25519 key that stands in for the domestic Idemix issuer key."""

    private_key: ed25519.Ed25519PrivateKey
    public_raw: bytes
    kid: bytes

    @classmethod
    def of(cls, key: ed25519.Ed25519PrivateKey) -> DomesticSigningKey:
        """Bind a key, deriving the kid (first 8 bytes of SHA-256 of the raw public key)."""
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(key, raw, hashlib.sha256(raw).digest()[:8])


@dataclass(frozen=True)
class KeyMaterial:
    """All keys of one fake-signer process."""

    csca_key: ec.EllipticCurvePrivateKey
    csca: x509.Certificate
    eu: dict[KeyUsage, EuSigningKey]
    domestic: DomesticSigningKey

    def signing_end(self, usage: KeyUsage) -> tuple[str, dt.datetime]:
        """The file name and end of whichever ends first: `usage`'s DSC or the CSCA above it."""
        dsc = self.eu[usage].certificate.not_valid_after_utc
        csca = self.csca.not_valid_after_utc
        return ("csca.crt.pem", csca) if csca < dsc else (f"dsc-{usage.value}.crt.pem", dsc)

    def published(self, *, eu: bool, domestic: bool) -> dict[str, list[Any]]:
        """The `GET /keys` document, limited to the services this process plays."""
        b64 = _b64
        return {
            "eu": [
                {
                    "kid": b64(k.kid),
                    "alg": "ES256",
                    "keyUsage": [k.usage.value],
                    "certificate": b64(k.certificate.public_bytes(serialization.Encoding.DER)),
                }
                for k in self.eu.values()
            ]
            if eu
            else [],
            "csca": [b64(self.csca.public_bytes(serialization.Encoding.DER))] if eu else [],
            "domestic": [
                {
                    "kid": b64(self.domestic.kid),
                    "alg": "Ed25519",
                    "publicKey": b64(self.domestic.public_raw),
                }
            ]
            if domestic
            else [],
        }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _country(certificate: x509.Certificate) -> str:
    """The countryName of `certificate`'s subject (the CSCA's, which its DSCs share)."""
    return str(certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value)


def _name(country: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fake-signer (test double)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate_csca(
    country: str, now: dt.datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Create a self-signed CSCA certificate (CA, may sign DSCs only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(country, f"fake-signer CSCA {country}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CSCA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_dsc(
    usage: KeyUsage,
    csca_key: ec.EllipticCurvePrivateKey,
    csca: x509.Certificate,
    now: dt.datetime,
) -> EuSigningKey:
    """Create a DSC key pair for `usage`, certified by the CSCA, carrying the usage's EKU OID."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(_country(csca), f"fake-signer DSC {usage.value}"))
        .issuer_name(csca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + DSC_VALIDITY, csca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage.eku_oid]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(csca_key.public_key()),
            critical=False,
        )
        .sign(csca_key, hashes.SHA256())
    )
    return EuSigningKey.of(usage, key, cert)


def generate_key_material(country: str, now: dt.datetime | None = None) -> KeyMaterial:
    """Create a fresh CSCA, one DSC per key usage and a domestic key."""
    now = now or dt.datetime.now(dt.UTC)
    csca_key, csca = generate_csca(country, now)
    eu = {usage: issue_dsc(usage, csca_key, csca, now) for usage in KeyUsage}
    return KeyMaterial(
        csca_key, csca, eu, DomesticSigningKey.of(ed25519.Ed25519PrivateKey.generate())
    )


def _file_names() -> list[str]:
    names = ["csca.key.pem", "csca.crt.pem", "domestic-ed25519.key.pem"]
    for usage in KeyUsage:
        names += [f"dsc-{usage.value}.key.pem", f"dsc-{usage.value}.crt.pem"]
    return names


class KeysDirError(ValueError):
    """A keys directory that cannot be used as it is (nothing in it is overwritten)."""


def load_or_create(keys_dir: Path, country: str, now: dt.datetime | None = None) -> KeyMaterial:
    """Load the keys in `keys_dir`, or generate them and write them there if it holds none.

    Raises:
        KeysDirError: the path is not a directory or cannot be read or written, a key file does
            not load, the directory holds only part of a key set (refusing to overwrite it),
            keys of another country (credentials would name one country as `iss` while their
            DSC names another, and a verifier refuses them), a certificate that has ended or
            ends within `VALIDITY_MARGIN` of `now` (every EU request would be refused, or
            signed with an expired DSC), or files of two key sets: a private key that is not
            its certificate's, or a DSC the CSCA did not issue (no credential would verify).
    """
    try:
        if keys_dir.exists() and not keys_dir.is_dir():
            raise KeysDirError(f"keys dir {keys_dir} is not a directory")
        present = [name for name in _file_names() if (keys_dir / name).exists()]
    except OSError as exc:
        raise KeysDirError(f"keys dir {keys_dir} cannot be read: {exc}") from exc
    if not present:
        material = generate_key_material(country)
        try:
            save(material, keys_dir)
        except OSError as exc:
            raise KeysDirError(f"keys dir {keys_dir} cannot be written: {exc}") from exc
        return material
    if len(present) != len(_file_names()):
        missing = sorted(set(_file_names()) - set(present))
        raise KeysDirError(f"keys dir {keys_dir} is incomplete, missing {missing}")
    material = load(keys_dir)
    held = _country(material.csca)
    if held != country:
        raise KeysDirError(f"keys dir {keys_dir} holds keys of country {held}, not {country}")
    _check_validity(material, keys_dir, now or dt.datetime.now(dt.UTC))
    _check_one_set(material, keys_dir)
    return material


def _check_one_set(material: KeyMaterial, keys_dir: Path) -> None:
    """Refuse files of two key sets: a private key not its certificate's, a DSC of another CSCA.

    Signed with such a key, or checked against such a chain, no credential would verify.
    """
    pairs = {"csca": (material.csca_key, material.csca)} | {
        f"dsc-{usage.value}": (key.private_key, key.certificate)
        for usage, key in material.eu.items()
    }
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for stem, (key, certificate) in pairs.items():
        if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
            raise KeysDirError(
                f"keys dir {keys_dir}: {stem}.key.pem is not the key of {stem}.crt.pem; "
                "delete or empty the directory for fresh keys"
            )
    for usage, signing in material.eu.items():
        try:
            signing.certificate.verify_directly_issued_by(material.csca)
        except (ValueError, TypeError, InvalidSignature):
            raise KeysDirError(
                f"keys dir {keys_dir}: dsc-{usage.value}.crt.pem is not issued by csca.crt.pem; "
                "delete or empty the directory for fresh keys"
            ) from None


def _check_validity(material: KeyMaterial, keys_dir: Path, now: dt.datetime) -> None:
    """Refuse a key set whose CSCA or a DSC ends before `now` + `VALIDITY_MARGIN`, or has not begun.

    A certificate not valid yet comes from a machine whose clock ran ahead (keys are backdated
    by `BACKDATE` when made): a verifier would refuse what the fake signs with it.
    """
    certificates = {"csca.crt.pem": material.csca} | {
        f"dsc-{usage.value}.crt.pem": key.certificate for usage, key in material.eu.items()
    }
    for name, certificate in certificates.items():
        start = certificate.not_valid_before_utc
        if start > now:
            raise KeysDirError(
                f"keys dir {keys_dir} holds a certificate not valid yet, {name} valid from "
                f"{start:%Y-%m-%dT%H:%M:%SZ}: check this machine's clock, or delete or empty "
                "the directory for fresh keys"
            )
        end = certificate.not_valid_after_utc
        if end < now + VALIDITY_MARGIN:
            what = "an expired certificate" if end <= now else "a certificate ending within a day"
            raise KeysDirError(
                f"keys dir {keys_dir} holds {what}, {name} valid until "
                f"{end:%Y-%m-%dT%H:%M:%SZ}: delete or empty the directory for fresh keys"
            )


def load(keys_dir: Path) -> KeyMaterial:
    """Read a complete key set written by `save`.

    Raises:
        KeysDirError: a file cannot be read or does not hold the key or certificate expected.
    """
    csca_key = _load(keys_dir / "csca.key.pem", _ec_key)
    csca = _load(keys_dir / "csca.crt.pem", x509.load_pem_x509_certificate)
    eu = {}
    for usage in KeyUsage:
        key = _load(keys_dir / f"dsc-{usage.value}.key.pem", _ec_key)
        cert = _load(keys_dir / f"dsc-{usage.value}.crt.pem", x509.load_pem_x509_certificate)
        eu[usage] = EuSigningKey.of(usage, key, cert)
    domestic = _load(keys_dir / "domestic-ed25519.key.pem", _ed25519_key)
    return KeyMaterial(csca_key, csca, eu, DomesticSigningKey.of(domestic))


def _load(path: Path, parse: Callable[[bytes], _Loaded]) -> _Loaded:
    try:
        return parse(path.read_bytes())
    # cryptography refuses bad PEM with ValueError, an encrypted key with TypeError.
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeysDirError(f"keys dir {path.parent}: cannot load {path.name}: {exc}") from exc


def _ec_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("not an EC private key")
    return key


def _ed25519_key(pem: bytes) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise TypeError("not an Ed25519 private key")
    return key


def save(material: KeyMaterial, keys_dir: Path) -> None:
    """Write a key set as PEM files, private keys readable by the owner only."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    _write_key(keys_dir / "csca.key.pem", material.csca_key)
    _write_cert(keys_dir / "csca.crt.pem", material.csca)
    for usage, key in material.eu.items():
        _write_key(keys_dir / f"dsc-{usage.value}.key.pem", key.private_key)
        _write_cert(keys_dir / f"dsc-{usage.value}.crt.pem", key.certificate)
    _write_key(keys_dir / "domestic-ed25519.key.pem", material.domestic.private_key)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start so the key is never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
