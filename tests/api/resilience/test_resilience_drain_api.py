"""The drain sees a request from its arrival: one parked at the CPU gate is answered 503 too."""

from __future__ import annotations

import asyncio

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.settings import LoopLagSettings, ShutdownSettings
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import failing_eu_signer
from tests.support.gateway import make_settings, running_gateway
from tests.support.polling import until


async def test_a_request_parked_for_a_cpu_permit_is_drained_with_its_request_id(test_keys, signers):
    """Parked for the one CPU permit at shutdown: cancelled at the drain timeout, 503, counted.

    The drain used to start inside the CPU gate, so a parked request was not in flight for
    it: the drain ended at once and left it waiting for a permit past the shutdown.
    """
    seen = failing_eu_signer(signers)
    settings = make_settings(
        test_keys,
        loop_lag=LoopLagSettings(cpu_permits=1, cpu_queue_timeout_seconds=10),
        shutdown=ShutdownSettings(drain_timeout_seconds=0.2, cancel_grace_seconds=1),
    )
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        gate = app.state.cpu_gate
        async with gate.request():  # the one permit, taken as a busy loop would hold it
            pending = asyncio.create_task(
                client.post(
                    "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-ID": "parked-1"}
                )
            )
            await until(lambda: gate.waiting == 1)
            cancelled = await app.state.drain.drain()
            # Answered while the permit is still taken: the drain, not the gate, ended it.
            async with asyncio.timeout(1):
                response = await pending
        result = await scrape(client)
    assert cancelled == 1
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "parked-1"
    problem = response.json()
    assert problem["type"].endswith("/shutting-down")
    assert problem["requestId"] == "parked-1"
    assert gate.waiting == 0
    assert seen == []
    assert result.value("gateway_responses_total", route="unmatched", status="503") == 1
