"""`serve` with tracing on, as a real process: the spans of its last requests are sent."""

from __future__ import annotations

import signal

import httpx
import pytest

from signing_gateway.api.examples import EU_VACCINATION
from tests.contract.gateway.gateway_process import gateway_env, running_gateway_process
from tests.support.otlp_collector import otlp_collector
from tests.support.polling import until

pytestmark = pytest.mark.timeout(60)

REQUESTS = 6


@pytest.mark.parametrize("workers", [1, 2])
async def test_spans_queued_at_a_sigterm_reach_the_collector(fakes, workers: int):
    """Stopped before its batch was due, each process still sends the spans it holds.

    A worker of `--workers` ends by its SIGTERM raised again, which runs no exit handler.
    """
    eu, domestic = fakes
    with otlp_collector() as (port, received):
        env = gateway_env(
            eu.base_url,
            domestic.base_url,
            SIGNING_GATEWAY_LOG_LEVEL="INFO",
            SIGNING_GATEWAY_OBSERVABILITY__TRACING_ENABLED="true",
            SIGNING_GATEWAY_READINESS_PROBE_INTERVAL_SECONDS="3600",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_BSP_SCHEDULE_DELAY="60000",  # no batch sent before the stop
        )
        with running_gateway_process(env, "--workers", str(workers)) as gateway:
            await until(lambda: gateway.log().count("Application startup complete.") >= workers, 15)
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                for _ in range(REQUESTS):
                    response = await client.post("/v1/dcc", json=EU_VACCINATION)
                    assert response.status_code == 200, response.text
            gateway.process.send_signal(signal.SIGTERM)
            assert gateway.process.wait(timeout=15) == 0
        names = received.names()
    assert names.count("POST /v1/dcc") == REQUESTS, names
    assert names.count("signer eu get_credential") == REQUESTS, names
