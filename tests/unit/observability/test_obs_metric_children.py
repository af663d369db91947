"""`Children`: the request path's label lookups, without prometheus_client's labels() each time."""

from __future__ import annotations

from signing_gateway.observability.metrics import GatewayMetrics


def test_a_child_is_the_one_labels_returns_and_is_looked_up_once(monkeypatch):
    """The same child object as labels(), found without calling labels() again."""
    metrics = GatewayMetrics()
    calls = []
    labels = metrics.responses_sent.labels

    def counting_labels(*values: str):
        calls.append(values)
        return labels(*values)

    monkeypatch.setattr(metrics.responses_sent, "labels", counting_labels)
    first = metrics.responses_sent_for("/v1/dcc", "2xx")
    assert metrics.responses_sent_for("/v1/dcc", "2xx") is first
    assert first is labels("/v1/dcc", "2xx")
    assert calls == [("/v1/dcc", "2xx")]


def test_counts_through_children_are_exposed_per_label_tuple():
    """Updates through the cache land on the metric's own samples, each tuple on its own."""
    metrics = GatewayMetrics()
    metrics.responses_sent_for("/v1/dcc", "2xx").inc()
    metrics.responses_sent_for("/v1/dcc", "2xx").inc()
    metrics.responses_sent_for("/v1/dcc", "5xx").inc()
    metrics.signer_call_duration_for("eu", "get_credential", "ok").observe(0.25)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("gateway_responses_sent_total", route="/v1/dcc", status_class="2xx") == 2
    assert sample("gateway_responses_sent_total", route="/v1/dcc", status_class="5xx") == 1
    assert sample(
        "gateway_signer_call_duration_seconds_sum",
        signer="eu", endpoint="get_credential", outcome="ok",
    ) == 0.25  # fmt: skip
