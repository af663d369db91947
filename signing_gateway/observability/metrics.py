"""Prometheus metrics of one gateway app, on a registry of its own (so tests can build many).

Every metric the gateway exposes is declared here, so `/metrics` has one place to read and
dashboards one list to follow. Label values are bounded sets (route templates, signer names,
outcome slugs): never a request id, a URL or anything a caller chose. The event counters
start with every label set they can count, at 0 (`counter_series`). `/metrics` shows no
`*_created` series (`render`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


_M = TypeVar("_M", bound=MetricWrapperBase)


class Children(Generic[_M]):
    """A labelled metric's children by label values, each found with ``labels()`` only once.

    prometheus_client's ``labels()`` converts every value with ``str()`` and takes the
    metric's lock on every call: 1.7 µs in a tight loop, 3.5-7 µs per call inside a request in
    bench S1's profile, seven calls per signing. The request path repeats a few label tuples,
    so after the first call one dict lookup (0.2 µs) finds the child. Values are passed as
    ``str``, in the metric's label order; the metric itself still holds every child.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _M) -> None:
        """Serve the children of `metric`."""
        self._metric = metric
        self._children: dict[tuple[str, ...], _M] = {}

    def __call__(self, *values: str) -> _M:
        """The child for `values`, as ``metric.labels(*values)`` returns it."""
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class _WithoutCreated:
    """A registry's metrics without the `*_created` sample of each counter and histogram.

    prometheus_client adds one to every child (the Unix time it was made). The text format has
    no place for it, so it is rendered as one more gauge series per child, which no dashboard
    or alert of the gateway reads and which each scrape would render on the event loop. It is
    dropped here rather than with prometheus_client's ``disable_created_metrics()``: that is one
    switch for every registry of the process.
    """

    __slots__ = ("_registry",)

    def __init__(self, registry: CollectorRegistry) -> None:
        """Collect from `registry`."""
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        """Each metric of the registry, its `*_created` samples left out."""
        for metric in self._registry.collect():
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


class GatewayMetrics:
    """The gateway's metrics, registered on `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Declare every metric on the registry."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._exposed = _WithoutCreated(self.registry)
        r = self.registry
        # Inbound requests and the "nothing lost" accounting: every request counted as
        # received is counted once as sent (status class, or "disconnected") when it ends, so
        # received - sum(sent) == in progress at every scrape. Received has no route label:
        # it is counted on arrival, before routing has picked a route.
        self.requests_received = Counter(
            "gateway_requests_received", "Inbound HTTP requests received", registry=r
        )
        self.responses_sent = Counter(
            "gateway_responses_sent",
            "Requests ended, by route and status class (2xx..5xx, or disconnected)",
            ["route", "status_class"],
            registry=r,
        )
        self.responses_by_status = Counter(
            "gateway_responses", "Responses sent, by route and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from request start to response end",
            ["route", "status_class"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests_in_progress = Gauge(
            "gateway_requests_in_progress", "Inbound requests being served", registry=r
        )
        # Signer calls.
        self.signer_calls = Counter(
            "gateway_signer_calls",
            "Signer calls by signer, endpoint and outcome",
            ["signer", "endpoint", "outcome"],
            registry=r,
        )
        self.signer_call_duration = Histogram(
            "gateway_signer_call_duration_seconds",
            "Duration of one signer call attempt, by outcome",
            ["signer", "endpoint", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.signer_in_flight = Gauge(
            "gateway_signer_in_flight", "Signer calls in flight", ["signer"], registry=r
        )
        # The children every request or signer call updates, looked up without labels().
        self.responses_sent_for = Children(self.responses_sent)
        self.responses_by_status_for = Children(self.responses_by_status)
        self.request_duration_for = Children(self.request_duration)
        self.signer_calls_for = Children(self.signer_calls)
        self.signer_call_duration_for = Children(self.signer_call_duration)
        self.signer_in_flight_for = Children(self.signer_in_flight)
        self.signer_shed = Counter(
            "gateway_signer_shed",
            "Calls shed, nothing sent: the signer's slots and queue were full, or no slot came "
            "within max_wait_seconds",
            ["signer"],
            registry=r,
        )
        self.signer_retries = Counter(
            "gateway_signer_retries", "Signer call retries", ["signer", "endpoint", "reason"],
            registry=r,
        )  # fmt: skip
        self.signer_retry_budget_exhausted = Counter(
            "gateway_signer_retry_budget_exhausted",
            "Retries not made because the retry budget was spent",
            ["signer"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_signer_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["signer"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "gateway_signer_breaker_transitions", "Breaker state changes", ["signer", "to"],
            registry=r,
        )  # fmt: skip
        self.credential_rejections = Counter(
            "gateway_credential_verification_failures",
            "Signer credentials that failed verification and were withheld",
            ["signer", "reason"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "gateway_dependency_up",
            "1 while a dependency answered its last readiness probe; 0 when down or not probed yet",
            ["dependency", "required"],
            registry=r,
        )
        self.eu_signing_certificate_remaining = Gauge(
            "gateway_eu_signing_certificate_remaining_seconds",
            "Seconds until the notAfter of the DSC signing this key usage now (0: none valid)",
            ["key_usage"],
            registry=r,
        )
        # Runtime health.
        self.event_loop_lag = Histogram(
            "gateway_event_loop_lag_seconds",
            "How late the event loop woke a periodic timer",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.event_loop_lag_max = Gauge(
            "gateway_event_loop_lag_max_seconds",
            "Largest event-loop lag seen since start",
            registry=r,
        )
        self.event_loop_core_wait = Counter(
            "gateway_event_loop_core_wait_seconds",
            "Time the event loop's thread was ready to run but had no CPU: other processes on "
            "its cores, or the container's CPU quota spent (stays 0 where Linux does not count it)",
            registry=r,
        )
        self.cpu_queue_timeouts = Counter(
            "gateway_cpu_queue_timeouts",
            "New /v1 requests refused 503 overloaded: no CPU permit within the queue timeout",
            registry=r,
        )
        # A counter of its own, not a label of the one above: that one's series and the
        # alerts on it keep their meaning.
        self.cpu_queue_overflows = Counter(
            "gateway_cpu_queue_overflows",
            "New /v1 requests refused 503 overloaded at once: the CPU gate's queue of new "
            "requests was full",
            registry=r,
        )
        # Security.
        self.auth_failures = Counter(
            "gateway_auth_failures", "Refused callers by reason", ["reason"], registry=r
        )
        self.stoken_refusals = Counter(
            "gateway_stoken_refusals",
            "Stokens refused 401 stoken-invalid, by cause: stoken-unknown (unknown, expired or "
            "used), stoken-not-owned (another caller's live session)",
            ["cause"],
            registry=r,
        )
        self.session_store_failures = Counter(
            "gateway_session_store_failures",
            "Operations of the shared issuance-session store (Redis) that failed or timed out, "
            "by operation: open, take (answered 503 session-store-unavailable), put_back (the "
            "request keeps its own answer)",
            ["operation"],
            registry=r,
        )
        # Every check that reached a verdict, passed or refused: the divisor of the refused
        # share. A check that could not run (workers being replaced, the request's deadline,
        # a session key the gateway lacks) counts in neither.
        self.commitment_proofs_checked = Counter(
            "gateway_commitment_proofs_checked",
            "App commitments whose proofs of U were checked to a verdict, passed or refused "
            "(idemix scheme): the divisor of the share refused",
            registry=r,
        )
        self.commitment_proof_refusals = Counter(
            "gateway_commitment_proof_refusals",
            "Domestic issuances refused 422 commitment-proof-failed (idemix scheme): the app's "
            "proofs of its commitments U did not verify; no signer was called",
            registry=r,
        )
        self.connections_refused = Counter(
            "gateway_connections_refused",
            "Connections closed by the gateway before a request could be handled, by reason: "
            "header-too-large (431), header-timeout (408), malformed (400: not HTTP/1.1), "
            "idle (nothing sent in time)",
            ["reason"],
            registry=r,
        )
        self.audit_write_failures = Counter(
            "gateway_audit_write_failures", "Audit records that could not be written", registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric, without `*_created` series."""
        return generate_latest(self._exposed)
