"""GET /metrics after real traffic: route templates, status classes, received == sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from signing_gateway.app import create_app
from signing_gateway.settings import Settings
from tests.api.bodies import eu_vaccination
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway


@asynccontextmanager
async def gateway_with_failing_route(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with one extra route that raises, served without re-raising into the test."""
    app = create_app(settings)

    async def explode() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/test-only/explode/{item}", explode, methods=["GET"])
    async with running_gateway(settings, app=app, raise_app_exceptions=False) as client:
        yield client


async def test_metrics_is_prometheus_text(gateway: httpx.AsyncClient):
    """/metrics answers 200 in the Prometheus text format, without credentials."""
    response = await gateway.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "# TYPE gateway_requests_received_total counter" in response.text


async def test_metrics_has_no_created_series(gateway: httpx.AsyncClient, mocked: MockedSigners):
    """No `*_created` family or sample, for counters and histograms alike, after traffic.

    The text format can only show them as one more gauge per child. They are left out of this
    app's exposition alone: a counter on another registry of the process keeps its own.
    """
    assert (await gateway.post("/v1/dcc", json=eu_vaccination())).status_code == 200
    text = (await gateway.get("/metrics")).text
    assert [line for line in text.splitlines() if "_created" in line] == []
    result = await scrape(gateway)
    assert result.value("gateway_requests_received_total") == 3
    assert result.value("gateway_request_duration_seconds_count", route="/v1/dcc",
                        status_class="2xx") == 1  # fmt: skip
    other = CollectorRegistry()
    Counter("other_events", "Another registry's counter", registry=other).inc()
    assert b"\nother_events_created " in generate_latest(other)


async def test_event_loop_lag_is_exposed(gateway: httpx.AsyncClient):
    """The event-loop lag histogram and its maximum appear in the exposition."""
    result = await scrape(gateway)
    names = {name for name, _ in result.samples}
    assert "gateway_event_loop_lag_seconds_count" in names
    assert "gateway_event_loop_lag_max_seconds" in names


async def test_requests_are_counted_by_route_template_and_status(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Responses are labelled by route template (unmatched paths as "unmatched") and status."""
    assert (await gateway.post("/v1/dcc", json=eu_vaccination())).status_code == 200
    assert (await gateway.post("/v1/dcc", json={"dcc": {}})).status_code == 422
    assert (await gateway.get("/no/such/path/12345")).status_code == 404
    assert (await gateway.get("/healthz")).status_code == 200

    result = await scrape(gateway)
    assert result.value("gateway_responses_total", route="/v1/dcc", status="200") == 1
    assert result.value("gateway_responses_total", route="/v1/dcc", status="422") == 1
    assert result.value("gateway_responses_total", route="unmatched", status="404") == 1
    assert result.value("gateway_responses_sent_total", route="/v1/dcc", status_class="2xx") == 1
    assert result.value("gateway_responses_sent_total", route="/v1/dcc", status_class="4xx") == 1
    routes = result.label_values("gateway_responses_total", "route")
    assert not any("12345" in route for route in routes)
    assert result.value("gateway_request_duration_seconds_count", route="/v1/dcc",
                        status_class="2xx") == 1  # fmt: skip


async def test_received_equals_sent_plus_in_progress(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Every request received is counted once as sent; only the scrape itself is in progress."""
    for _ in range(3):
        await gateway.post("/v1/dcc", json=eu_vaccination())
    await gateway.post("/v1/dcc", content=b"not json", headers={"content-type": "application/json"})
    await gateway.get("/nothing-here")
    await gateway.get("/readyz")

    result = await scrape(gateway)
    received = result.value("gateway_requests_received_total")
    sent = result.total("gateway_responses_sent_total")
    in_progress = result.value("gateway_requests_in_progress")
    assert received == 6 + 1  # the six above and this scrape
    assert in_progress == 1  # the scrape, counted on arrival, answered after rendering
    assert received == sent + in_progress


async def test_unhandled_error_counts_as_5xx(test_keys: SignerKeys, signers):
    """A request whose handler raises is still counted as sent, as a 500 on its route."""
    async with gateway_with_failing_route(make_settings(test_keys)) as client:
        response = await client.get("/test-only/explode/1")
        assert response.status_code == 500
        result = await scrape(client)
    route = "/test-only/explode/{item}"
    assert result.value("gateway_responses_sent_total", route=route, status_class="5xx") == 1
    assert result.value("gateway_responses_total", route=route, status="500") == 1
    received = result.value("gateway_requests_received_total")
    assert received == result.total("gateway_responses_sent_total") + 1
