"""The security refusals' challenges and the reasons their counter starts with."""

from __future__ import annotations

from typing import get_args

from signing_gateway.observability.counter_series import start_event_counters
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.errors import AuthenticationFailed, TokenRefusal

#: A token's refusals (401) and a missing scope's (403), as docs/security.md lists them.
DOCUMENTED_REASONS = {*get_args(TokenRefusal), "insufficient-scope"}


def test_every_documented_refusal_reason_is_counted_from_zero() -> None:
    """Pin that each reason's series, the 403's too, exists at 0 before any refusal."""
    metrics = GatewayMetrics()
    start_event_counters(metrics)
    [family] = metrics.auth_failures.collect()
    counted = {s.labels["reason"] for s in family.samples if s.name.endswith("_total")}
    assert counted == DOCUMENTED_REASONS
    assert {s.value for s in family.samples if s.name.endswith("_total")} == {0}


def test_a_refused_token_is_challenged_with_its_reason_in_words() -> None:
    """Pin RFC 6750's challenge: `invalid_token` and the refusal's own bounded description."""
    refused = AuthenticationFailed("the token has expired", reason="expired")
    assert refused.headers() == {
        "WWW-Authenticate": 'Bearer realm="signing-gateway", error="invalid_token", '
        'error_description="the token has expired"'
    }
