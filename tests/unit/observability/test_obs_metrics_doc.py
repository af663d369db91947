"""docs/operations.md's metrics table is the list of what GatewayMetrics exposes.

Dashboards and the documented alerts are written against that table: a renamed metric or
label would leave them reading nothing, without an error anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.settings import LoopLagSettings, Settings
from tests.support.alert_rules import alert_rules
from tests.support.metric_series import declared_metrics

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
#: What the table writes for "no labels".
NO_LABELS = "\N{EN DASH}"
_ROW = re.compile(r"^\| `(gateway_[a-z_]+)` \| (counter|gauge|histogram) \| ([^|]+) \|")


def _documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        if match := _ROW.match(line):
            name, kind, labels = match.groups()
            label_names = () if labels.strip() == NO_LABELS else tuple(labels.strip().split(", "))
            rows[name] = (kind, label_names)
    return rows


def test_every_metric_is_documented_with_its_type_and_labels():
    """Name (as exposed, `_total` on counters), type and label names, row for row."""
    assert declared_metrics() == _documented()


def test_the_latency_buckets_reach_the_slowest_answer_and_the_alert_bounds():
    """A request may wait out the CPU queue and then its whole deadline: still a finite bucket.

    And the alerts' thresholds (p99 above 5 s) are bucket bounds.
    """
    queue = LoopLagSettings().cpu_queue_timeout_seconds
    slowest = queue + Settings.model_fields["request_deadline_seconds"].default
    metrics = GatewayMetrics()
    for histogram in (metrics.request_duration, metrics.signer_call_duration):
        bounds = histogram._upper_bounds
        assert max(b for b in bounds if b != float("inf")) >= slowest
        assert 5 in bounds


def test_the_lag_buckets_hold_the_alert_the_warning_and_a_lag_that_fails_readiness():
    """The p99-lag alert (docs/alerts) and the lag warning's threshold are bucket bounds.

    A healthy loop's sub-millisecond wake-ups have a bucket of their own, and a loop held past
    the readiness probe's timeout still lands in a finite one.
    """
    guide = OPERATIONS.read_text(encoding="utf-8")
    [alert] = [
        re.search(r"rate\(gateway_event_loop_lag_seconds_bucket\[5m\]\)\) > ([0-9.]+)$", rule.expr)
        for rule in alert_rules()
        if "gateway_event_loop_lag_seconds_bucket" in rule.expr
    ]
    readiness = re.search(r"readinessProbe:.*?timeoutSeconds: (\d+)", guide, re.DOTALL)
    assert alert is not None
    assert readiness is not None
    bounds = GatewayMetrics().event_loop_lag._upper_bounds
    assert float(alert.group(1)) in bounds
    assert LoopLagSettings().warn_threshold_seconds in bounds
    assert min(bounds) <= 0.001
    assert max(b for b in bounds if b != float("inf")) >= int(readiness.group(1))


def test_metrics_are_declared_on_the_registry_given():
    """A registry passed in holds every metric; none goes to a fresh one."""
    registry = CollectorRegistry()
    metrics = GatewayMetrics(registry)
    metrics.requests_received.inc()
    assert metrics.registry is registry
    assert registry.get_sample_value("gateway_requests_received_total") == 1
