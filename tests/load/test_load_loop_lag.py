"""500 concurrent /v1/dcc against a real server: the event loop is never held.

The gateway runs under uvicorn on this test's (pure-Python asyncio) loop, a real fake-signer
process answers after 200 ms, and a separate client process sends the burst. While it runs,
every loop callback is timed (``slow_callback_detector``: none may compute for 100 ms),
blockbuster watches for blocking calls, and afterwards the gateway's own loop-lag monitor is
read from ``/readyz``. The monitor measures wall-clock lateness, which also counts the moments
the whole process waits for a core while the client and the fake signer load the same two
cores, so it is held to what an orchestrator's probe notices: no wake-up 250 ms late, and at
most one in twenty over the 100 ms warning threshold. What is left once the loop thread's own
wait for a core is taken off (``maxHeldLagSeconds``), the time the process itself held the
loop, must stay under that threshold every time: 14-30 ms here, idle, beside two busy
processes, or held to half a CPU by a cgroup quota (2026-12-07).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import (
    LoopLagSettings,
    ResilienceSettings,
    Settings,
    SignerSettings,
    TrustSettings,
)
from tests.support.fake_signer_process import FakeSignerProcess, running_fake_signer
from tests.support.polling import until

BURST = 500
SIGNER_LATENCY_MS = 200
LAG_LIMIT = 0.25
LATE_SHARE = 0.05
HELD_LIMIT = 0.1
CLIENT = Path(__file__).with_name("burst_client.py")


@pytest.fixture(scope="module")
def slow_signer() -> Iterator[FakeSignerProcess]:
    """One fake signer (EU and domestic) answering every signing request after 200 ms."""
    with running_fake_signer(
        "--role", "all", "--latency-ms", str(SIGNER_LATENCY_MS),
        "--latency-distribution", "fixed", "--log-level", "warning",
    ) as signer:  # fmt: skip
        yield signer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(signer_url: str) -> Settings:
    def signer() -> SignerSettings:
        return SignerSettings(
            url=signer_url,
            max_connections=BURST + 64,
            resilience=ResilienceSettings(max_in_flight=BURST, max_pending=BURST),
        )

    return Settings(
        eu_signer=signer(),
        domestic_signer=signer(),
        trust=TrustSettings(fetch_from_signers=True),
        auth=AuthSettings(mode="disabled"),
        loop_lag=LoopLagSettings(interval_seconds=0.02),
    )


async def test_burst_of_500_never_holds_the_loop(
    slow_signer: FakeSignerProcess, slow_callback_detector, tmp_path: Path
) -> None:
    """All 500 answer 200; no callback computes 100 ms; loop lag under 250 ms, rarely over 100.

    The loop is never held 100 ms by the process itself (lag less the wait for a core).
    """
    port = _free_port()
    config = uvicorn.Config(
        create_app(_settings(slow_signer.base_url)),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        backlog=2048,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    body = tmp_path / "dcc.json"
    body.write_text(json.dumps(examples.EU_VACCINATION))
    base = f"http://127.0.0.1:{port}"
    try:
        await until(lambda: server.started or serving.done(), limit=30)
        assert not serving.done(), "the gateway stopped during start-up"
        client = await asyncio.create_subprocess_exec(
            sys.executable, str(CLIENT), f"{base}/v1/dcc", str(BURST), str(body),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        # Watched from here: start-up may parse keys, and spawning the client is this test's
        # own blocking fork and exec (it held the loop 371 ms on a busy machine); serving may
        # not hold it. The client starts its interpreter before it sends its first request.
        slow_callback_detector.watching = True
        output, _ = await asyncio.wait_for(client.communicate(), timeout=90)
        result = json.loads(output)
        async with httpx.AsyncClient(base_url=base) as http:
            ready = (await http.get("/readyz")).json()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
    assert result["statuses"] == {"200": BURST}, result
    assert slow_callback_detector.callbacks > BURST  # the detector really watched the loop
    assert slow_callback_detector.slow == [], slow_callback_detector.report()
    lag = ready["eventLoop"]
    context = {"eventLoop": lag, "gc": ready["gc"], "loop": slow_callback_detector.summary()}
    assert lag["samples"] > 0
    assert lag["maxLagSeconds"] < LAG_LIMIT, context
    assert lag["samplesOverThreshold"] <= LATE_SHARE * lag["samples"], context
    assert lag["maxHeldLagSeconds"] < HELD_LIMIT, context
