"""`serve --events-per-pass`: the gateway handles ready sockets in slices and still answers all."""

from __future__ import annotations

from signing_gateway.api import examples
from tests.contract.gateway.gateway_process import gateway_env, running_gateway_process
from tests.contract.gateway.test_gateway_concurrency import _load_in_own_process

CONCURRENT = 100


async def test_one_socket_per_pass_still_answers_every_request(eu_signer, domestic_signer, fakes):
    """At one ready socket per loop pass, 100 concurrent /v1/dcc all get their credential."""
    env = gateway_env(
        eu_signer.base_url, domestic_signer.base_url, SIGNING_GATEWAY_LOG_LEVEL="INFO"
    )
    with running_gateway_process(env, "--events-per-pass", "1") as gateway:
        summary = await _load_in_own_process(
            f"{gateway.base_url}/v1/dcc", CONCURRENT, examples.EU_VACCINATION
        )
        log = gateway.log()
    assert "event loop: asyncio, at most 1 ready sockets per pass" in log
    assert summary["statuses"] == {"200": CONCURRENT}


def test_the_default_is_64_ready_sockets_per_pass(eu_signer, domestic_signer):
    """Without the option the gateway handles at most 64 ready sockets per loop pass."""
    env = gateway_env(
        eu_signer.base_url, domestic_signer.base_url, SIGNING_GATEWAY_LOG_LEVEL="INFO"
    )
    with running_gateway_process(env) as gateway:
        assert "event loop: asyncio, at most 64 ready sockets per pass" in gateway.log()
