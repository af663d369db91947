"""Capacity limits and concurrency: queue vs. reject, and 5,000 concurrent signings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.contract.fake_signer.signer_wire import eu_body


async def test_queue_overflow_caps_in_flight(client):
    """Capacity 10 + queue: 50 requests at 200 ms all succeed in ~5 waves, peak exactly 10."""
    await client.put(
        "/_control",
        json={
            "capacity": 10,
            "overflow": "queue",
            "latencyMs": 200,
            "latencyDistribution": "fixed",
        },
    )
    started = time.monotonic()
    responses = await asyncio.gather(
        *(client.post("/get_credential", json=eu_body()) for _ in range(50))
    )
    wall = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 50
    stats = (await client.get("/_stats")).json()
    assert stats["peakInFlight"] == 10
    assert stats["inFlight"] == 0
    assert stats["queued"] == 0
    assert 0.95 <= wall < 1.8, wall


async def test_reject_overflow_answers_429(client):
    """Capacity 5 + reject: 20 concurrent requests give 5 successes and 15 plain-text 429s."""
    await client.put(
        "/_control",
        json={
            "capacity": 5,
            "overflow": "reject",
            "latencyMs": 300,
            "latencyDistribution": "fixed",
        },
    )
    responses = await asyncio.gather(
        *(client.post("/get_credential", json=eu_body()) for _ in range(20))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [429] * 15
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["retry-after"] == "1"
    assert rejected.headers["content-type"].startswith("text/plain")
    stats = (await client.get("/_stats")).json()
    assert stats["totals"]["get_credential"] == {"ok": 5, "rejected": 15}
    assert stats["peakInFlight"] == 5


@pytest.mark.slow
def test_five_thousand_concurrent_signings(fake_signer_factory):
    """5,000 concurrent signings at 1 s latency, no capacity limit: all done in 3 s (best of 2)."""
    signer = fake_signer_factory(
        "--role", "eu", "--latency-ms", "1000", "--latency-distribution", "fixed"
    )
    # Best of two bursts: on a shared 2-core machine a neighbour's CPU spike can cost a few
    # hundred ms; a server that cannot make 3 s never passes either attempt.
    walls = []
    for _ in range(2):
        result = subprocess.run(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "tests.contract.fake_signer.signer_load",
                str(signer.port),
                "5000",
            ],
            capture_output=True,
            check=True,
            timeout=60,
            cwd=Path(__file__).parents[3],
        )
        figures = orjson.loads(result.stdout)
        assert figures["ok"] == 5000
        walls.append(figures["wall"])
        print(f"5000 concurrent /get_credential at 1 s latency: wall {figures['wall']:.2f} s")  # noqa: T201
        if figures["wall"] <= 3.0:
            break
    assert min(walls) <= 3.0, walls
