"""Public keys the gateway trusts to verify signer output.

EU: DSC certificates (X.509). The kid is the first 8 bytes of SHA-256 of the DER; the key
usages come from the DCC extended key usage OIDs (in either of their two forms), and a
certificate without any of them may sign all three kinds (eu-dcc-hcert-spec). Domestic: raw
Ed25519 keys of the NL2 simulation, kid = first 8 bytes of SHA-256 of the 32-byte key.

Stores load from files (sync: call at start-up) or from a fake signer's ``GET /keys`` JSON,
and render the gateway's own ``GET /v1/keys`` lists.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime
    from pathlib import Path

__all__ = [
    "DCC_ALTERNATIVE_EKU_OIDS",
    "DCC_EKU_OIDS",
    "KEY_USAGES",
    "MIN_RSA_KEY_BITS",
    "DomesticKey",
    "DomesticTrustStore",
    "DscCertificate",
    "EuTrustStore",
    "KeySet",
    "SigningStatus",
    "TrustConfigError",
]


class TrustConfigError(ValueError):
    """Raised when key material (a file or a ``/keys`` document) is malformed or inconsistent."""


#: Key usages in their canonical order.
KEY_USAGES: tuple[str, ...] = ("vaccination", "test", "recovery")

#: Extended key usage OIDs that restrict a DSC to one kind of certificate.
DCC_EKU_OIDS: dict[str, str] = {
    "test": "1.3.6.1.4.1.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.1847.2021.1.3",
}
#: The same restrictions with a ``0`` arc after the private-enterprise arc. DSCs in use carry
#: this form (the Dutch ones among them), and the verifier apps read either form as the same
#: usage; read as no DCC usage at all, it would let a DSC restricted to one usage pass for one
#: allowed all three.
DCC_ALTERNATIVE_EKU_OIDS: dict[str, str] = {
    "test": "1.3.6.1.4.1.0.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.0.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.0.1847.2021.1.3",
}
_USAGE_BY_OID = {
    oid: usage for oids in (DCC_EKU_OIDS, DCC_ALTERNATIVE_EKU_OIDS) for usage, oid in oids.items()
}

_KID_LENGTH = 8
_ED25519_KEY_LENGTH = 32
#: The shortest RSA modulus a PS256 DSC may have (eu-dcc-hcert-spec: RSASSA-PSS, 2048 bits
#: and more): a shorter key could be factored, and anything signed with it forged.
MIN_RSA_KEY_BITS = 2048


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, what: str) -> bytes:
    """Decode standard base64 strictly; TrustConfigError naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise TrustConfigError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:  # binascii.Error, or plain ValueError for non-ASCII text
        raise TrustConfigError(f"{what} is not valid base64") from exc


def _ordered(usages: Iterable[str]) -> list[str]:
    chosen = set(usages)
    return [u for u in KEY_USAGES if u in chosen]


def _key_usages(certificate: x509.Certificate) -> frozenset[str]:
    """DCC key usages allowed by the certificate's EKU (all three when none is named).

    Raises:
        TrustConfigError: an extension does not parse, or one is there twice.
    """
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset(KEY_USAGES)
    except ValueError as exc:  # the extensions are parsed on first use
        raise TrustConfigError("DSC extensions are not readable") from exc
    named = {_USAGE_BY_OID[oid.dotted_string] for oid in eku if oid.dotted_string in _USAGE_BY_OID}
    return frozenset(named) if named else frozenset(KEY_USAGES)


def _subject_country(certificate: x509.Certificate) -> str | None:
    """The countryName of the subject, None if it has none.

    Raises:
        TrustConfigError: the subject names two different countries.
    """
    try:
        attributes = certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    except ValueError as exc:  # the subject is parsed on first use
        raise TrustConfigError("DSC subject is not a readable name") from exc
    countries = {str(attribute.value) for attribute in attributes}
    if len(countries) > 1:
        raise TrustConfigError("DSC subject names more than one country")
    return countries.pop() if countries else None


@dataclass(frozen=True)
class DscCertificate:
    """One EU Document Signer Certificate, with what verification needs precomputed.

    ``country`` is the subject's countryName: the ``iss`` its credentials must carry.
    """

    der: bytes
    kid: bytes
    alg: Literal["ES256", "PS256"]
    country: str | None
    key_usages: frozenset[str]
    not_before: datetime
    not_after: datetime
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)

    @classmethod
    def from_der(cls, der: bytes) -> DscCertificate:
        """Parse a DER certificate; TrustConfigError unless its key is EC P-256 or RSA-2048+."""
        try:
            certificate = x509.load_der_x509_certificate(der)
            key = certificate.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise TrustConfigError("not a usable X.509 certificate") from exc
        alg: Literal["ES256", "PS256"]
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise TrustConfigError(f"DSC EC key on {key.curve.name}, ES256 needs P-256")
            alg = "ES256"
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_KEY_BITS:
                raise TrustConfigError(
                    f"DSC RSA key of {key.key_size} bits, PS256 needs at least {MIN_RSA_KEY_BITS}"
                )
            alg = "PS256"
        else:
            raise TrustConfigError(f"DSC key type {type(key).__name__} is not usable for DCCs")
        return cls(
            der=der,
            kid=hashlib.sha256(der).digest()[:_KID_LENGTH],
            alg=alg,
            country=_subject_country(certificate),
            key_usages=_key_usages(certificate),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            public_key=key,
            certificate=certificate,
        )

    @property
    def kid_b64(self) -> str:
        """The kid in standard base64, as the API shows it."""
        return _b64(self.kid)

    def valid_at(self, now: datetime) -> bool:
        """Whether ``now`` lies within the certificate's validity period."""
        return self.not_before <= now <= self.not_after

    def to_public_json(self) -> dict[str, Any]:
        """This certificate as one entry of the ``eu`` list of ``GET /v1/keys``."""
        return {
            "kid": self.kid_b64,
            "alg": self.alg,
            "keyUsage": _ordered(self.key_usages),
            "certificate": _b64(self.der),
        }


def _certificates_in(data: bytes) -> list[bytes]:
    """DER blobs in a file holding one DER certificate or one or more PEM certificates."""
    if b"-----BEGIN" in data:
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise TrustConfigError("not a PEM certificate file") from exc
        return [c.public_bytes(serialization.Encoding.DER) for c in certificates]
    return [data]


class SigningStatus(StrEnum):
    """Whether a key usage has a DSC to sign with at a given moment."""

    VALID = "valid"  # one of the usage's DSCs is valid
    EXPIRED = "expired"  # none is valid and one has ended (any successor starts later)
    NOT_YET_VALID = "not-yet-valid"  # none is valid and every one starts later
    MISSING = "missing"  # no DSC is configured for the usage at all


class EuTrustStore:
    """The DSC certificates the gateway accepts, by kid, and the signing one per key usage."""

    def __init__(
        self, certificates: Iterable[DscCertificate], *, cscas: Iterable[x509.Certificate] = ()
    ) -> None:
        """Index the certificates; with ``cscas``, each DSC must be issued by one of them.

        Raises:
            TrustConfigError: a DSC not issued by any given CSCA.
        """
        anchors = list(cscas)
        self._by_kid: dict[bytes, DscCertificate] = {}
        for dsc in certificates:
            if anchors and not any(_issued_by(dsc.certificate, csca) for csca in anchors):
                raise TrustConfigError(f"DSC {dsc.kid_b64} is not issued by a configured CSCA")
            self._by_kid[dsc.kid] = dsc
        # Per usage, every DSC allowed to sign it, preferred first: the most specific one,
        # and among equals the newest (key rotation). Validity is checked at each use, since
        # a DSC ends, or a successor starts, while the gateway runs.
        self._candidates: dict[str, tuple[DscCertificate, ...]] = {
            usage: tuple(
                sorted(
                    (d for d in self._by_kid.values() if usage in d.key_usages),
                    key=lambda d: (len(d.key_usages), -d.not_before.timestamp()),
                )
            )
            for usage in KEY_USAGES
        }

    def __len__(self) -> int:
        """Number of certificates held."""
        return len(self._by_kid)

    def lookup(self, kid: bytes) -> DscCertificate | None:
        """The certificate with this kid, if trusted."""
        return self._by_kid.get(kid)

    def signing_certificate(self, key_usage: str, *, now: datetime) -> DscCertificate | None:
        """The certificate the signer uses for ``key_usage`` (a KeyUsage value) at ``now``.

        Only certificates valid at ``now`` count; among them the most specific one wins, and
        among equals the newest. None when no certificate for the usage is valid at ``now``
        (``signing_status`` says why).
        """
        for dsc in self._candidates.get(str(key_usage), ()):
            if dsc.valid_at(now):
                return dsc
        return None

    def signing_status(self, key_usage: str, *, now: datetime) -> SigningStatus:
        """Whether ``key_usage`` has a certificate valid at ``now``, and if not, why."""
        candidates = self._candidates.get(str(key_usage), ())
        if not candidates:
            return SigningStatus.MISSING
        if any(dsc.valid_at(now) for dsc in candidates):
            return SigningStatus.VALID
        if all(now < dsc.not_before for dsc in candidates):
            return SigningStatus.NOT_YET_VALID
        return SigningStatus.EXPIRED

    def next_signing_start(self, key_usage: str, *, now: datetime) -> datetime | None:
        """The earliest ``notBefore`` after ``now`` among ``key_usage``'s DSCs (None: none)."""
        return min(
            (
                dsc.not_before
                for dsc in self._candidates.get(str(key_usage), ())
                if now < dsc.not_before
            ),
            default=None,
        )

    def to_public_json(self) -> list[dict[str, Any]]:
        """The ``eu`` list of ``GET /v1/keys``."""
        return [dsc.to_public_json() for dsc in self._by_kid.values()]

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> EuTrustStore:
        """Load DSC certificates from PEM or DER files (blocking file I/O: start-up only)."""
        certificates = [
            DscCertificate.from_der(der)
            for path in paths
            for der in _certificates_in(path.read_bytes())
        ]
        return cls(certificates)

    @classmethod
    def from_keys_json(cls, eu: object, csca: object = ()) -> EuTrustStore:
        """Build from the ``eu`` and ``csca`` lists of a fake signer's ``GET /keys``.

        Each entry's kid, alg and key usages must agree with its certificate, and no
        certificate may have two entries: they could state different key usages. An empty
        ``csca`` checks no chain: the CSCAs come from the same signer as the DSCs, so the
        check keeps the document consistent and adds no trust (docs/security.md).

        Raises:
            TrustConfigError: an entry is malformed, disagrees with its certificate or repeats
                another's kid.
        """
        if not isinstance(eu, list) or not isinstance(csca, list | tuple):
            raise TrustConfigError("eu and csca must be lists")
        anchors = [_load_csca(_unb64(c, "csca")) for c in csca]
        certificates: dict[bytes, DscCertificate] = {}
        for entry in eu:
            if not isinstance(entry, dict):
                raise TrustConfigError("eu entries must be objects")
            dsc = DscCertificate.from_der(_unb64(entry.get("certificate"), "certificate"))
            if _unb64(entry.get("kid"), "kid") != dsc.kid:
                raise TrustConfigError(f"kid does not match certificate {dsc.kid_b64}")
            _refuse_repeated_kid(certificates, dsc.kid)
            if entry.get("alg") != dsc.alg:
                raise TrustConfigError(f"alg does not match certificate {dsc.kid_b64}")
            usages = entry.get("keyUsage")
            # Strings only: a list or an object in the list would not even go into a set.
            if (
                not isinstance(usages, list)
                or not usages
                or not all(isinstance(usage, str) for usage in usages)
                or not set(usages) <= dsc.key_usages
            ):
                raise TrustConfigError(f"keyUsage not allowed by certificate {dsc.kid_b64}")
            # The signer's stated usages narrow what the certificate allows, never widen it.
            certificates[dsc.kid] = dataclasses.replace(dsc, key_usages=frozenset(usages))
        return cls(certificates.values(), cscas=anchors)


def _refuse_repeated_kid(seen: Mapping[bytes, object], kid: bytes) -> None:
    """TrustConfigError when a ``/keys`` list already holds an entry with ``kid``.

    The store keeps one key per kid: a second entry would silently replace the first.
    """
    if kid in seen:
        raise TrustConfigError(f"kid {_b64(kid)} is listed more than once")


def _load_csca(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise TrustConfigError("csca is not an X.509 certificate") from exc


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class DomesticKey:
    """One domestic signer public key (Ed25519 in the NL2 simulation)."""

    kid: bytes
    raw: bytes
    public_key: ed25519.Ed25519PublicKey = field(repr=False)
    alg: Literal["Ed25519"] = "Ed25519"

    @classmethod
    def from_raw(cls, raw: bytes) -> DomesticKey:
        """Build from the raw 32-byte public key."""
        if len(raw) != _ED25519_KEY_LENGTH:
            raise TrustConfigError("an Ed25519 public key is 32 bytes")
        return cls(
            kid=hashlib.sha256(raw).digest()[:_KID_LENGTH],
            raw=raw,
            public_key=ed25519.Ed25519PublicKey.from_public_bytes(raw),
        )

    @classmethod
    def from_pem(cls, data: bytes) -> DomesticKey:
        """Build from a PEM SubjectPublicKeyInfo holding an Ed25519 key."""
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise TrustConfigError("not a PEM public key") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise TrustConfigError("domestic keys are Ed25519")
        return cls.from_raw(
            key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    @property
    def kid_b64(self) -> str:
        """The kid in standard base64 (also the signer's ``issuerPkId``)."""
        return _b64(self.kid)

    def to_public_json(self) -> dict[str, Any]:
        """This key as one entry of the ``domestic`` list of ``GET /v1/keys``."""
        return {"kid": self.kid_b64, "alg": self.alg, "publicKey": _b64(self.raw)}


class DomesticTrustStore:
    """The domestic signer keys the gateway accepts, by kid."""

    def __init__(self, keys: Iterable[DomesticKey]) -> None:
        """Index the keys by kid."""
        self._by_kid = {key.kid: key for key in keys}

    def __len__(self) -> int:
        """Number of keys held."""
        return len(self._by_kid)

    def lookup(self, kid: bytes) -> DomesticKey | None:
        """The key with this kid, if trusted."""
        return self._by_kid.get(kid)

    def to_public_json(self) -> list[dict[str, Any]]:
        """The ``domestic`` list of ``GET /v1/keys``."""
        return [key.to_public_json() for key in self._by_kid.values()]

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> DomesticTrustStore:
        """Load PEM public keys (blocking file I/O: start-up only)."""
        return cls(DomesticKey.from_pem(path.read_bytes()) for path in paths)

    @classmethod
    def from_keys_json(cls, domestic: object) -> DomesticTrustStore:
        """Build from the ``domestic`` list of a fake signer's ``GET /keys``.

        Raises:
            TrustConfigError: an entry is malformed, its kid does not match its key, or it
                repeats another's kid.
        """
        if not isinstance(domestic, list):
            raise TrustConfigError("domestic must be a list")
        keys: dict[bytes, DomesticKey] = {}
        for entry in domestic:
            if not isinstance(entry, dict) or entry.get("alg") != "Ed25519":
                raise TrustConfigError("domestic entries must be Ed25519 key objects")
            key = DomesticKey.from_raw(_unb64(entry.get("publicKey"), "publicKey"))
            if _unb64(entry.get("kid"), "kid") != key.kid:
                raise TrustConfigError(f"kid does not match key {key.kid_b64}")
            _refuse_repeated_kid(keys, key.kid)
            keys[key.kid] = key
        return cls(keys.values())


@dataclass(frozen=True)
class KeySet:
    """Everything one ``GET /keys`` answer holds, parsed and checked."""

    eu: EuTrustStore
    domestic: DomesticTrustStore

    @classmethod
    def from_keys_json(cls, document: Mapping[str, Any]) -> KeySet:
        """Parse a whole ``GET /keys`` document; missing lists count as empty.

        Raises:
            TrustConfigError: any part is malformed.
        """
        return cls(
            eu=EuTrustStore.from_keys_json(document.get("eu", []), document.get("csca", [])),
            domestic=DomesticTrustStore.from_keys_json(document.get("domestic", [])),
        )
