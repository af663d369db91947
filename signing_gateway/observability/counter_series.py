"""The series every event and traffic counter starts with: each label set it counts, at 0.

prometheus_client creates a labelled counter's series at its first increment, and a series
born at 1 has an `increase()` of 0 there: the page on
`increase(gateway_credential_verification_failures_total[10m]) > 0` missed the first
verification failure after every start, and the same held for shedding, breaker changes,
retries and refused callers or connections. So `start_event_counters` creates them all when
the app is built, from the slug sets the code that counts is typed with (`Literal`s that mypy
holds every raise to), per signer with its own endpoints and verification failures.

The traffic counters lost the same first increment: the first 5xx of a route or the first
`connect_error` of a signer endpoint after a start did not show in `rate()` or `increase()`,
and `increase()` of the received requests ran ahead of the sent ones by one request per new
series, as if requests had been lost. `start_traffic_counters` creates, once the routes are
in place, `gateway_responses_sent_total` for every route template (and "unmatched") with each
way a request ends (`request_metrics.ENDINGS`), and `gateway_signer_calls_total` for every
signer endpoint with each outcome (`signer_calls.SIGNER_CALL_OUTCOMES`): some 100 series,
fewer lines per scrape than the `*_created` series the exposition leaves out.
`gateway_responses_total` and the histograms still get a series at their first response or
call: `status` has no fixed set (alerts read `gateway_responses_sent_total`'s classes), and
one lost first sample does not move a quantile.
"""

from __future__ import annotations

from collections.abc import Iterable

from signing_gateway.errors import STOKEN_REFUSALS
from signing_gateway.issuance import domestic, eu
from signing_gateway.issuance.stoken import STORE_OPERATIONS
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.request_metrics import ENDINGS, UNMATCHED
from signing_gateway.observability.signer_calls import SIGNER_CALL_OUTCOMES
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
    """Create every series of the event counters at 0 (71 series), and of the in-flight gauge."""
    for signer, (endpoints, failures) in _SIGNERS.items():
        # A gauge, not a counter, but the same gap: a dashboard showed "no data" for a
        # signer's calls in flight until its first call, where 0 is the truth.
        metrics.signer_in_flight.labels(signer)
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
    for cause in STOKEN_REFUSALS:
        metrics.stoken_refusals.labels(cause)
    for operation in STORE_OPERATIONS:
        metrics.session_store_failures.labels(operation)


def start_traffic_counters(metrics: GatewayMetrics, routes: Iterable[str]) -> None:
    """Create the traffic counters' series at 0: per route template, and per signer endpoint.

    `routes`: the app's route templates; "unmatched" is added. A route added later gets its
    series at its first request.
    """
    for route in dict.fromkeys([*routes, UNMATCHED]):
        for ending in ENDINGS:
            metrics.responses_sent.labels(route, ending)
    for signer, (endpoints, _) in _SIGNERS.items():
        for endpoint in endpoints:
            for outcome in SIGNER_CALL_OUTCOMES:
                metrics.signer_calls.labels(signer, endpoint, outcome)
