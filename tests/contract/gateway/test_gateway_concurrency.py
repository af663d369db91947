"""Concurrency through a real gateway process: signer latency overlaps, liveness stays instant."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from signing_gateway.api import examples
from tests.contract.gateway.conftest import set_control

LATENCY_S = 1.0
CONCURRENT = 200
# /healthz bounds. A held loop shows as polls as slow as the signer (1 s): the replaced service
# froze every poll for a whole signer call. Five processes share two cores here (test client, load
# client, gateway, two signers), so one poll may wait for a core; a bound on the typical poll and
# a loose one on the worst keep the test about the loop, not about the scheduler.
HEALTHZ_TYPICAL_S = 0.050  # 95th percentile
HEALTHZ_WORST_S = 0.250  # a quarter of the signer latency
LOAD_CLIENT = Path(__file__).with_name("load_client.py")


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> int:
    async with session.post(url, data=orjson.dumps(body), headers=_JSON) as response:
        await response.read()
        return response.status


_JSON = {"Content-Type": "application/json"}


async def _poll_healthz(
    session: aiohttp.ClientSession, url: str, stop: asyncio.Event, latencies: list[float]
) -> None:
    """GET /healthz every ~10 ms until `stop`, recording each answer's latency."""
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            assert response.status == 200
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)


async def _load_in_own_process(url: str, count: int, body: Any) -> dict[str, Any]:
    """Run `load_client.py` against `url` and return its summary."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(LOAD_CLIENT),
        url,
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(orjson.dumps(body)), timeout=60)
    assert process.returncode == 0, stderr.decode(errors="replace")
    summary: dict[str, Any] = orjson.loads(stdout)
    return summary


async def test_200_concurrent_dcc_overlap_and_healthz_stays_fast(
    gateway_url, gateway_process, fakes
):
    """200 concurrent /v1/dcc at 1 s signer latency finish in < 2 s; /healthz stays fast.

    The 2 s holds where the gateway's CPU for the burst (validating, verifying and answering
    200 requests on one core) fits in well under a second; on a slower or busier machine the
    bound is the latency plus that measured CPU plus 0.5 s (a full suite run once took 2.83 s).
    A gateway that called its signers one after another would take 200 s either way.
    """
    dcc_url = f"{gateway_url}/v1/dcc"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Warm up, at no latency: the probe connection and the gateway's signer pool, as in a
        # running service (the cold start of 200 signer connections is not what is measured).
        assert await _post(session, dcc_url, examples.EU_VACCINATION) == 200
        await _load_in_own_process(dcc_url, CONCURRENT, examples.EU_VACCINATION)
        for signer in fakes:
            set_control(signer, latencyMs=LATENCY_S * 1000, jitterMs=0)
        stop = asyncio.Event()
        latencies: list[float] = []
        poller = asyncio.create_task(
            _poll_healthz(session, f"{gateway_url}/healthz", stop, latencies)
        )
        gateway_cpu = psutil.Process(gateway_process.process.pid)
        cpu_before = sum(gateway_cpu.cpu_times()[:2])
        try:
            summary = await _load_in_own_process(dcc_url, CONCURRENT, examples.EU_VACCINATION)
            cpu = sum(gateway_cpu.cpu_times()[:2]) - cpu_before
        finally:
            stop.set()
            await poller
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    print(  # noqa: T201 - the figures the report quotes
        f"\n{CONCURRENT} concurrent /v1/dcc: {summary['elapsed']:.3f} s, gateway CPU "
        f"{cpu:.2f} s; /healthz polls: "
        f"{len(latencies)}, median {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, "
        f"worst {[round(w * 1000, 1) for w in latencies[-3:]]} ms"
    )
    assert summary["statuses"] == {"200": CONCURRENT}
    assert LATENCY_S <= summary["elapsed"] < max(2 * LATENCY_S, LATENCY_S + cpu + 0.5), cpu
    assert len(latencies) >= 50
    # The CPU gate parks the arrival burst of 200 requests, so the loop keeps answering /healthz
    # between them: median ~2 ms, 95th percentile 5-14 ms, worst 22-54 ms seen here.
    assert p95 < HEALTHZ_TYPICAL_S, latencies[-10:]
    assert latencies[-1] < HEALTHZ_WORST_S, latencies[-10:]


async def test_credentials_parts_run_concurrently(gateway_url, fakes):
    """/v1/credentials with three EU parts and a domestic part takes about one signer latency."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(f"{gateway_url}/v1/domestic/prepare-issue") as response:
            assert response.status == 200
            prepared = await response.json()
        nonce = orjson.loads(base64.b64decode(prepared["prepareIssueMessage"]))["issuerNonce"]
        for signer in fakes:
            set_control(signer, latencyMs=LATENCY_S * 1000, jitterMs=0)
        attrs = {**examples.DOMESTIC_ATTRIBUTES, "validFrom": str(int(time.time()))}
        body = {
            "stoken": prepared["stoken"],
            "issueCommitmentMessage": base64.b64encode(
                orjson.dumps({"issuerNonce": nonce})
            ).decode(),
            "domestic": [attrs],
            "european": [examples.EU_VACCINATION, examples.EU_TEST, examples.EU_VACCINATION],
        }
        started = time.monotonic()
        status = await _post(session, f"{gateway_url}/v1/credentials", body)
        elapsed = time.monotonic() - started
    print(f"\n/v1/credentials (3 EU + domestic): {elapsed:.3f} s")  # noqa: T201
    assert status == 200
    assert LATENCY_S <= elapsed < 2 * LATENCY_S
