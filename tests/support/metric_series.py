"""What `/metrics` shows, from `GatewayMetrics`, and what a PromQL expression reads beyond it.

The alerting rules (docs/alerts) and the dashboard (docs/dashboards) are loaded by Prometheus
and Grafana as they are, and a metric or label they misspell reads an empty vector, which
neither reports. Their expressions are read with tests/support/promql.py and held to the
metrics as declared.
"""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from signing_gateway.observability.metrics import GatewayMetrics
from tests.support.promql import Grouping, PromqlNotRead, Selector, divisions_of, selectors_of

#: Labels Prometheus gives every series of a target, which `GatewayMetrics` does not declare:
#: `instance` tells the pods apart (each has its own breaker, CPU gate and event loop).
TARGET_LABELS = frozenset({"instance", "job"})
#: Series Prometheus writes itself for each target it scrapes, with their labels, which no
#: `/metrics` shows: `up` is 1 after a scrape that succeeded, 0 after one that failed.
SCRAPE_SERIES: dict[str, set[str]] = {"up": set(TARGET_LABELS)}
#: Functions that read a counter's growth: over a gauge, its drops read as resets.
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase"})


def declared_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each metric `GatewayMetrics` declares, as the guide's table names it, with type and labels.

    The name is the one `/metrics` shows, with `_total` on a counter; a histogram keeps its own
    name (`exposed_series` has its `_bucket`, `_sum` and `_count`).
    """
    declared = {}
    for metric in vars(GatewayMetrics()).values():
        if isinstance(metric, MetricWrapperBase):
            suffix = "_total" if metric._type == "counter" else ""
            declared[metric._name + suffix] = (metric._type, tuple(metric._labelnames))
    return declared


def series_of(name: str, kind: str) -> tuple[str, ...]:
    """The series names `/metrics` shows for the declared metric `name` of type `kind`."""
    if kind == "histogram":
        return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
    return (name,)


def exposed_series() -> dict[str, set[str]]:
    """Each series name `/metrics` can show, with its label names.

    A counter shows as `<name>_total`; a histogram as `<name>_bucket` (with `le`), `_sum` and
    `_count`; a gauge as its name.
    """
    series = {}
    for name, (kind, labels) in declared_metrics().items():
        for shown in series_of(name, kind):
            series[shown] = set(labels) | ({"le"} if shown.endswith("_bucket") else set())
    return series


def readable_series() -> dict[str, set[str]]:
    """Each series a rule or panel may read: what `/metrics` shows, and Prometheus' own."""
    return exposed_series() | SCRAPE_SERIES


def expression_problems(
    name: str,
    expr: str,
    exposed: dict[str, set[str]],
    target_labels: frozenset[str] = frozenset(),
) -> list[str]:
    """What expression `name` reads that the gateway does not expose: an empty list when nothing.

    `target_labels` are labels Prometheus gives every series of a target (`instance`), which
    `GatewayMetrics` does not declare.
    """
    try:
        selectors = selectors_of(expr)
        divisions = divisions_of(expr)
    except PromqlNotRead as exc:
        return [f"{name}: {exc}"]
    if not selectors:
        return [f"{name}: selects no series"]
    problems = [
        _division_problem(name, left, right)
        for left, right in divisions
        if _grouped(left) != _grouped(right)
    ]
    gauges = {name for name, (kind, _) in declared_metrics().items() if kind == "gauge"}
    for selector in selectors:
        if selector.metric not in exposed:
            problems.append(f"{name}: {selector.metric} is not exposed")
            continue
        problems.extend(
            f"{name}: {selector.metric} has no label {label!r}"
            for label in sorted(selector.labels_named - exposed[selector.metric] - target_labels)
        )
        problems.extend(_quantile_problems(name, selector))
        if selector.metric in gauges and (read := COUNTER_FUNCTIONS & set(selector.functions)):
            problems.append(f"{name}: {min(read)} of the gauge {selector.metric}")
    return problems


def _grouped(grouping: Grouping | None) -> tuple[str, frozenset[str]] | None:
    """What a grouping keeps, whatever the order of its labels."""
    return None if grouping is None else (grouping.kind, frozenset(grouping.labels))


def _division_problem(name: str, left: Grouping | None, right: Grouping | None) -> str:
    """A `/` whose sides group differently: its result matches no series, or the wrong ones."""

    def shown(grouping: Grouping | None) -> str:
        return "no aggregation" if grouping is None else f"{grouping.kind} {grouping.labels}"

    return f"{name}: the sides of / group differently: {shown(left)}, {shown(right)}"


def _quantile_problems(name: str, selector: Selector) -> list[str]:
    """A histogram_quantile must read buckets, and every aggregation in between must keep `le`."""
    if selector.quantile_groupings is None:
        return []
    problems = [
        f"{name}: {grouping.kind} {grouping.labels} drops le"
        for grouping in selector.quantile_groupings
        if (grouping.kind == "by") != ("le" in grouping.labels)
    ]
    if not selector.metric.endswith("_bucket"):
        problems.append(f"{name}: histogram_quantile of {selector.metric}, not of buckets")
    return problems
