"""The EU signing DSCs as operators see them: the time-left gauge, start-up warnings, health."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.signing_certificates import (
    UsageCertificate,
    certificates_health,
    watch_signing_certificates,
)
from signing_gateway.verification.trust import DscCertificate, EuTrustStore, SigningStatus
from tests.support.credentials import make_dsc

GAUGE = "gateway_eu_signing_certificate_remaining_seconds"
NOW = datetime.now(UTC).replace(microsecond=0)


def _trust(usage: str, *, not_before: datetime, not_after: datetime) -> EuTrustStore:
    """A trust store with one DSC, for `usage` only."""
    dsc = make_dsc([usage], not_before=not_before, not_after=not_after)
    return EuTrustStore([DscCertificate.from_der(dsc.der)])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("left", "warned"),
    [(timedelta(days=14), True), (timedelta(days=14, seconds=1), False)],
    ids=["exactly-14-days", "a-second-more"],
)
def test_start_up_warns_of_a_dsc_ending_within_14_days_inclusive(
    caplog: pytest.LogCaptureFixture, left: timedelta, warned: bool
):
    """The warning names the usage, the DSC's kid and its notAfter."""
    trust = _trust("test", not_before=NOW - timedelta(days=300), not_after=NOW + left)
    with caplog.at_level(logging.WARNING, logger="signing_gateway"):
        watch_signing_certificates(trust, GatewayMetrics(), now=NOW)
    records = _warnings(caplog)
    assert len(records) == int(warned)
    if warned:
        (record,) = records
        dsc = trust.signing_certificate("test", now=NOW)
        assert dsc is not None
        assert (record.key_usage, record.kid, record.not_after) == (
            "test",
            dsc.kid_b64,
            dsc.not_after.isoformat(),
        )


@pytest.mark.parametrize(
    ("starts", "ends", "status"),
    [(-timedelta(days=30), -timedelta(days=1), "expired"),
     (timedelta(days=1), timedelta(days=30), "not-yet-valid")],
)  # fmt: skip
def test_start_up_warns_of_a_usage_without_a_valid_dsc_with_its_status(
    caplog: pytest.LogCaptureFixture, starts: timedelta, ends: timedelta, status: str
):
    """Why it has none (expired, not yet valid) is a field of the warning; its gauge is 0."""
    trust = _trust("recovery", not_before=NOW + starts, not_after=NOW + ends)
    metrics = GatewayMetrics()
    with caplog.at_level(logging.WARNING, logger="signing_gateway"):
        watch_signing_certificates(trust, metrics, now=NOW)
    (record,) = _warnings(caplog)
    assert (record.key_usage, record.status) == ("recovery", status)
    assert metrics.registry.get_sample_value(GAUGE, {"key_usage": "recovery"}) == 0


def test_the_gauge_follows_the_clock_and_skips_usages_without_any_dsc():
    """Read at each scrape: seconds left fall as time passes; no series for a missing usage.

    A DSC that began an hour ago signs now: its time left is counted from now. The test's
    own clock is read here, not at import: the whole suite runs for minutes before it.
    """
    now = datetime.now(UTC)
    trust = _trust(
        "vaccination", not_before=now - timedelta(hours=1), not_after=now + timedelta(days=30)
    )
    metrics = GatewayMetrics()
    watch_signing_certificates(trust, metrics, now=now)
    first = metrics.registry.get_sample_value(GAUGE, {"key_usage": "vaccination"})
    time.sleep(0.05)
    second = metrics.registry.get_sample_value(GAUGE, {"key_usage": "vaccination"})
    assert first is not None
    assert second is not None
    assert timedelta(days=30) - timedelta(minutes=5) < timedelta(seconds=first)
    assert 0.04 < first - second < 5
    for missing in ("test", "recovery"):
        assert metrics.registry.get_sample_value(GAUGE, {"key_usage": missing}) is None


V, E, N, M = (SigningStatus.VALID, SigningStatus.EXPIRED, SigningStatus.NOT_YET_VALID,
              SigningStatus.MISSING)  # fmt: skip


@pytest.mark.parametrize(
    ("statuses", "health"),
    [((V, V, V), "ok"), ((V, M, M), "ok"), ((M, M, M), "ok"), ((V, E, M), "degraded"),
     ((V, N, V), "degraded"), ((E, M, M), "unusable"), ((E, N, E), "unusable")],
)  # fmt: skip
def test_health_counts_only_configured_usages(statuses: tuple[SigningStatus, ...], health: str):
    """A usage with no DSC at all is a deployment choice: neither degraded nor unusable."""
    usages = {
        name: UsageCertificate(status, None)
        for name, status in zip(("vaccination", "test", "recovery"), statuses, strict=True)
    }
    assert certificates_health(usages) == health


def test_the_readyz_view_of_a_signing_dsc_is_its_kid_and_not_after():
    """Public data only: status, kid, notAfter (None for both without a DSC)."""
    trust = _trust("test", not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=9))
    dsc = trust.signing_certificate("test", now=NOW)
    assert dsc is not None
    assert UsageCertificate(V, dsc).to_json() == {
        "status": "valid",
        "kid": dsc.kid_b64,
        "notAfter": dsc.not_after.isoformat(),
    }
    assert UsageCertificate(E, None).to_json() == {
        "status": "expired",
        "kid": None,
        "notAfter": None,
    }
