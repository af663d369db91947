"""The series every event counter starts with: each label set it can count, at 0.

prometheus_client creates a labelled counter's series at its first increment, and a series
born at 1 has an `increase()` of 0 there: the page on
`increase(gateway_credential_verification_failures_total[10m]) > 0` missed the first
verification failure after every start, and the same held for shedding, breaker changes,
retries and refused callers or connections. So `start_event_counters` creates them all when
the app is built, from the slug sets the code that counts is typed with (`Literal`s that mypy
holds every raise to), per signer with its own endpoints and verification failures.

The traffic counters (`gateway_responses_sent_total`, `gateway_responses_total`,
`gateway_signer_calls_total`) get a series at their first request of a kind instead: they
feed ratios of rates, which one lost increment does not move, and starting every route and
endpoint with every status class and outcome would add some 150 series, more than doubling
what each scrape renders on the event loop. `gateway_responses_total`'s `status` has no fixed
set anyway.
"""

from __future__ import annotations

from signing_gateway.issuance import domestic, eu
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.resilience.breaker import BreakerState
from signing_gateway.resilience.policy import RETRY_REASONS
from signing_gateway.runtime.http_protocol import CONNECTION_REFUSALS
from signing_gateway.security.errors import AUTH_FAILURE_REASONS
from signing_gateway.verification.errors import (
    DOMESTIC_VERIFICATION_FAILURES,
    EU_VERIFICATION_FAILURES,
)

#: Per signer (its name in the metrics): the endpoints issuance calls, and why its
#: credentials can fail verification.
_SIGNERS = {
    "eu": (eu.SIGNER_ENDPOINTS, EU_VERIFICATION_FAILURES),
    "domestic": (domestic.SIGNER_ENDPOINTS, DOMESTIC_VERIFICATION_FAILURES),
}


def start_event_counters(metrics: GatewayMetrics) -> None:
    """Create every series of the event counters at 0 (65 series)."""
    for signer, (endpoints, failures) in _SIGNERS.items():
        metrics.signer_shed.labels(signer)
        metrics.signer_retry_budget_exhausted.labels(signer)
        for state in BreakerState:
            metrics.breaker_transitions.labels(signer, state.value)
        for endpoint in endpoints:
            for reason in RETRY_REASONS:
                metrics.signer_retries.labels(signer, endpoint, reason)
        for reason in failures:
            metrics.credential_rejections.labels(signer, reason)
    for reason in AUTH_FAILURE_REASONS:
        metrics.auth_failures.labels(reason)
    for reason in CONNECTION_REFUSALS:
        metrics.connections_refused.labels(reason)
