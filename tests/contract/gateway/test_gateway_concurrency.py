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

from signing_gateway.api import examples
from tests.api.bodies import with_own_uvcis
from tests.contract.gateway.conftest import set_control
from tests.support.core_wait import THIS_THREAD, Latencies, main_thread
from tests.support.fake_signer_process import FakeSignerProcess

LATENCY_S = 1.0
CONCURRENT = 200
#: The signer latency of the 200-request burst. The gateway spends CPU on each request before
#: its signer call, so on a busy two-core machine taking in 200 requests took up to 3 s (3.9 s
#: for the whole burst at 1 s latency, with only 95 calls at the signer together): the calls
#: must stay in the signer long enough for the last to start before the first end.
BURST_LATENCY_S = 3.0
#: Of the 200 signer calls, at least this many must be in the fake signer's latency wait at
#: once. A gateway that called its signer one at a time would peak at 1, one with a pool or a
#: bulkhead of N at N.
PEAK_BAR = 180
#: Loose sanity bound on the whole burst. The overlap itself is proven by the peak count; this
#: only catches a gateway that, after overlapping the signer calls, finished them one at a time
#: (600 s) or in small batches. A loaded machine stretches the burst by a second or two.
BURST_SANITY_S = 3 * BURST_LATENCY_S
# /healthz bounds, on the time the gateway took to answer: wall time less what the gateway's
# loop thread and the polling thread waited for a core (`tests.support.core_wait`). A held loop
# shows as polls as slow as a signer call: the replaced service froze every poll for a whole
# call. Beside 3 busy loops, a loop held for 300 ms in 1 call in 20, sleeping or computing,
# failed this test. A bound on the typical poll and a loose one on the worst.
HEALTHZ_TYPICAL_S = 0.050  # 95th percentile
HEALTHZ_WORST_S = 0.250  # a quarter of a 1 s signer call
LOAD_CLIENT = Path(__file__).with_name("load_client.py")


async def _post(session: aiohttp.ClientSession, url: str, body: Any) -> int:
    async with session.post(url, data=orjson.dumps(body), headers=_JSON) as response:
        await response.read()
        return response.status


_JSON = {"Content-Type": "application/json"}


async def _poll_healthz(
    session: aiohttp.ClientSession, url: str, stop: asyncio.Event, latencies: Latencies
) -> None:
    """GET `url` every ~10 ms until `stop`, timing each answer less its core waits."""
    while not stop.is_set():
        with latencies.timed():
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200
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


async def _signer_stats(session: aiohttp.ClientSession, signer: FakeSignerProcess) -> Any:
    async with session.get(f"{signer.base_url}/_stats") as response:
        assert response.status == 200
        return await response.json()


async def test_200_concurrent_dcc_overlap_and_healthz_stays_fast(
    gateway_url, gateway_process, fakes
):
    """200 concurrent /v1/dcc at 3 s signer latency are all at the signer at once; /healthz fast.

    Overlap is counted where it happens, not inferred from the wall time: the fake EU signer's
    peak of calls in its latency wait together, which a gateway that queued or serialised its
    calls cannot reach whatever the machine. The wall time is only checked to be far below one
    call after another; how long the gateway's CPU work takes is the load's business.
    """
    eu_signer = fakes[0]
    dcc_url = f"{gateway_url}/v1/dcc"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        # Warm up, at no latency: the probe connection and the gateway's signer pool, as in a
        # running service (the cold start of 200 signer connections is not what is measured).
        assert await _post(session, dcc_url, examples.EU_VACCINATION) == 200
        await _load_in_own_process(dcc_url, CONCURRENT, examples.EU_VACCINATION)
        for signer in fakes:
            set_control(signer, latencyMs=BURST_LATENCY_S * 1000, jitterMs=0)
        async with session.post(f"{eu_signer.base_url}/_stats/reset") as response:
            assert response.status == 200
        stop = asyncio.Event()
        pid = gateway_process.process.pid
        polls = Latencies((main_thread(pid), THIS_THREAD))
        poller = asyncio.create_task(_poll_healthz(session, f"{gateway_url}/healthz", stop, polls))
        try:
            summary = await _load_in_own_process(dcc_url, CONCURRENT, examples.EU_VACCINATION)
        finally:
            stop.set()
            await poller
        stats = await _signer_stats(session, eu_signer)
    served = polls.served()
    p95 = served[int(len(served) * 0.95)]
    print(  # noqa: T201 - the figures the report quotes
        f"\n{CONCURRENT} concurrent /v1/dcc: {summary['elapsed']:.3f} s, signer peak in flight "
        f"{stats['peakInFlight']}; /healthz polls: {len(served)}, median "
        f"{served[len(served) // 2] * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, worst "
        f"{[round(w * 1000, 1) for w in served[-3:]]} ms (less core waits; worst wall "
        f"{max(polls.wall) * 1000:.1f} ms, most waited {max(polls.core_wait) * 1000:.1f} ms)"
    )
    assert summary["statuses"] == {"200": CONCURRENT}
    assert stats["totals"]["get_credential"] == {"ok": CONCURRENT}
    assert stats["peakInFlight"] >= PEAK_BAR, stats
    assert BURST_LATENCY_S <= summary["elapsed"] < BURST_SANITY_S
    assert len(served) >= 50
    # The CPU gate parks the arrival burst of 200 requests, so the loop keeps answering /healthz
    # between them: less core waits, median ~0.5 ms, 95th percentile 1-3 ms, worst 4-20 ms seen
    # here, idle or beside 3 busy loops (whose polls took up to 220 ms of wall time).
    slowest = [round(took * 1000, 1) for took in served[-5:]]
    assert p95 < HEALTHZ_TYPICAL_S, f"p95 {p95 * 1000:.1f} ms; slowest {slowest} ms"
    assert served[-1] < HEALTHZ_WORST_S, f"slowest {slowest} ms"


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
            "european": with_own_uvcis(
                examples.EU_VACCINATION, examples.EU_TEST, examples.EU_VACCINATION
            ),
        }
        started = time.monotonic()
        status = await _post(session, f"{gateway_url}/v1/credentials", body)
        elapsed = time.monotonic() - started
    print(f"\n/v1/credentials (3 EU + domestic): {elapsed:.3f} s")  # noqa: T201
    assert status == 200
    assert LATENCY_S <= elapsed < 2 * LATENCY_S
