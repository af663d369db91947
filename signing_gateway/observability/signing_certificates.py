"""The EU signer's DSC per key usage as operators see it: in /readyz, a gauge and the logs.

A key usage whose DSCs are all expired or not yet valid cannot be issued: every request for
it gets 503 (``issuance/eu``). That state is computed from the trust store in memory whenever
it is asked for, since a DSC ends (or a successor starts) while the gateway runs. A usage
with no DSC configured at all is a deployment choice, shown but never counted as degraded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from signing_gateway.verification.trust import KEY_USAGES, SigningStatus

if TYPE_CHECKING:
    from datetime import datetime

    from signing_gateway.verification.trust import DscCertificate, EuTrustStore

#: ``ok``: every configured usage has a DSC valid now; ``degraded``: some have none;
#: ``unusable``: none has (the EU signer can sign nothing through this gateway).
CertificatesHealth = Literal["ok", "degraded", "unusable"]


@dataclass(frozen=True, slots=True)
class UsageCertificate:
    """Whether one key usage has a DSC valid now, and which one signs it."""

    status: SigningStatus
    certificate: DscCertificate | None  # the signing one; None unless status is VALID

    def to_json(self) -> dict[str, Any]:
        """The /readyz view: status, and the signing DSC's kid and notAfter (public data)."""
        dsc = self.certificate
        return {
            "status": self.status.value,
            "kid": None if dsc is None else dsc.kid_b64,
            "notAfter": None if dsc is None else dsc.not_after.isoformat(),
        }


def usage_certificates(trust: EuTrustStore, *, now: datetime) -> dict[str, UsageCertificate]:
    """Every key usage's signing DSC at ``now`` (in KEY_USAGES order)."""
    return {
        usage: UsageCertificate(
            trust.signing_status(usage, now=now), trust.signing_certificate(usage, now=now)
        )
        for usage in KEY_USAGES
    }


def certificates_health(usages: dict[str, UsageCertificate]) -> CertificatesHealth:
    """How the configured usages stand: all signable, some not, or none."""
    configured = [u.status for u in usages.values() if u.status is not SigningStatus.MISSING]
    valid = configured.count(SigningStatus.VALID)
    if valid == len(configured):
        return "ok"
    return "degraded" if valid else "unusable"
