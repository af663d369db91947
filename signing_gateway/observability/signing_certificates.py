"""The EU signer's DSC per key usage as operators see it: in /readyz, a gauge and the logs.

A key usage whose DSCs are all expired or not yet valid cannot be issued: every request for
it gets 503 (``issuance/eu``). That state is computed from the trust store in memory whenever
it is asked for (a /readyz, a scrape), since a DSC ends (or a successor starts) while the
gateway runs. A usage with no DSC configured at all is a deployment choice, shown but never
counted as degraded. At start-up each usage without a valid DSC, or whose DSC ends within
``EXPIRY_WARNING``, is logged as a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from signing_gateway.verification.trust import KEY_USAGES, SigningStatus

if TYPE_CHECKING:
    from signing_gateway.observability.metrics import GatewayMetrics
    from signing_gateway.verification.trust import DscCertificate, EuTrustStore

logger = logging.getLogger(__name__)

#: A signing DSC that ends within this is logged as a warning at start-up.
EXPIRY_WARNING = timedelta(days=14)

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
    return {usage: _usage_certificate(trust, usage, now) for usage in KEY_USAGES}


def _usage_certificate(trust: EuTrustStore, usage: str, now: datetime) -> UsageCertificate:
    # A certificate is returned exactly when the status is VALID: ask why only without one.
    dsc = trust.signing_certificate(usage, now=now)
    if dsc is not None:
        return UsageCertificate(SigningStatus.VALID, dsc)
    return UsageCertificate(trust.signing_status(usage, now=now), None)


def certificates_health(usages: dict[str, UsageCertificate]) -> CertificatesHealth:
    """How the configured usages stand: all signable, some not, or none."""
    configured = [u.status for u in usages.values() if u.status is not SigningStatus.MISSING]
    valid = configured.count(SigningStatus.VALID)
    if valid == len(configured):
        return "ok"
    return "degraded" if valid else "unusable"


def _remaining_seconds(trust: EuTrustStore, key_usage: str) -> float:
    now = datetime.now(UTC)
    dsc = trust.signing_certificate(key_usage, now=now)
    return 0.0 if dsc is None else (dsc.not_after - now).total_seconds()


def watch_signing_certificates(
    trust: EuTrustStore, metrics: GatewayMetrics, *, now: datetime
) -> None:
    """Warn about configured usages unusable or ending soon; expose each one's time left.

    The gauge is read at every scrape, so it follows the DSCs after start-up too.
    """
    for usage, current in usage_certificates(trust, now=now).items():
        if current.status is SigningStatus.MISSING:
            continue
        gauge = metrics.eu_signing_certificate_remaining.labels(usage)
        gauge.set_function(partial(_remaining_seconds, trust, usage))
        dsc = current.certificate
        if dsc is None:
            logger.warning(
                "no EU signing certificate is valid now for this key usage: "
                "its requests get 503 until one is",
                extra={"key_usage": usage, "status": current.status.value},
            )
        elif dsc.not_after - now <= EXPIRY_WARNING:
            logger.warning(
                "the EU signing certificate for this key usage expires soon",
                extra={
                    "key_usage": usage,
                    "kid": dsc.kid_b64,
                    "not_after": dsc.not_after.isoformat(),
                },
            )
