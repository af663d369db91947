"""New connections are accepted promptly while a flood of slow signings holds the gateway busy.

An orchestrator's HTTP health probe opens a new connection every time. With uvloop as the
event loop the gateway accepted about one connection per loop iteration while busy: a fresh
`/healthz` connection made as 1,000 clients connected waited 2-3 s in the kernel's accept
queue (measured), long enough for a probe with a 1 s timeout to fail and restart a healthy
gateway. The served gateway therefore runs on asyncio's own loop, which accepts every pending
connection at once. This test floods a real `signing-gateway serve` process with 800
connections against a 1 s signer and times fresh-connection `/healthz` probes throughout,
on the main port (beside the flood) and on the probe port (`serve --probe-port`), each less
what the gateway's loop thread and the probing thread waited for a core
(`tests.support.core_wait`): on a busy machine that wait is the machine's, not the gateway's.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signing_gateway.api import examples
from tests.contract.gateway.gateway_process import (
    free_port,
    gateway_env,
    running_gateway_process,
)
from tests.support.core_wait import THIS_THREAD, Latencies, main_thread
from tests.support.fake_signer_process import FakeSignerProcess, running_fake_signer

FLOOD = 800
PROBE_LIMIT_S = 1.0  # a typical orchestrator probe timeout (on the gateway's time)
ROOT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def one_second_signer() -> Iterator[FakeSignerProcess]:
    """A fake signer (both roles) answering every signing after 1 s."""
    with running_fake_signer(
        "--role", "all", "--latency-ms", "1000", "--latency-distribution", "fixed",
        "--log-level", "warning",
    ) as signer:  # fmt: skip
        yield signer


def _probe(host: str, port: int) -> int:
    """GET /healthz on a new connection, as an orchestrator does; the status."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.slow
def test_fresh_health_probes_are_answered_during_a_connection_flood(
    one_second_signer: FakeSignerProcess, tmp_path: Path
) -> None:
    """Every fresh-connection probe made while 800 clients connect answers 200 within 1 s."""
    sizing = {
        f"SIGNING_GATEWAY_{name}_SIGNER__{key}": value
        for name in ("EU", "DOMESTIC")
        for key, value in {
            "MAX_CONNECTIONS": str(FLOOD + 64),
            "RESILIENCE__MAX_IN_FLIGHT": str(FLOOD),
            "RESILIENCE__MAX_PENDING": str(FLOOD),
        }.items()
    }
    url = one_second_signer.base_url
    body = tmp_path / "dcc.json"
    body.write_text(json.dumps(examples.EU_VACCINATION))
    probe_port = free_port()
    with running_gateway_process(
        gateway_env(url, url, **sizing), "--probe-port", str(probe_port)
    ) as gateway:
        host, port = "127.0.0.1", int(gateway.base_url.rsplit(":", 1)[1])
        flood = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [
                sys.executable,
                "-m",
                "tests.load.flood_client",
                host,
                str(port),
                "/v1/dcc",
                str(FLOOD),
                str(body),
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        # Both ports are served on the gateway's event loop, its main thread; this thread is
        # the orchestrator. What either waited for a core is the machine's, not the gateway's.
        threads = (main_thread(gateway.process.pid), THIS_THREAD)
        ports = {"main port": port, "probe port": probe_port}
        probes = {name: Latencies(threads) for name in ports}
        statuses: list[int] = []
        while flood.poll() is None:
            for name, probed in ports.items():
                with probes[name].timed():
                    statuses.append(_probe(host, probed))
            time.sleep(0.05)  # a probe of each port every 50 ms while the flood lasts
        output, _ = flood.communicate(timeout=60)
    result = json.loads(output)
    assert result["statuses"] == {"200": FLOOD}, result
    assert len(probes["main port"].wall) >= 10  # the flood lasted long enough to probe through it
    assert set(statuses) == {200}, statuses
    for name, latencies in probes.items():
        print(f"\n/healthz, new connection, {name}: slowest {latencies.slowest()} ms")  # noqa: T201
        assert latencies.served()[-1] < PROBE_LIMIT_S, f"{name}: {latencies.slowest()} ms"
