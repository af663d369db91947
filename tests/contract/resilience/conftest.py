"""Fixtures for the fault matrix: real fake-signer processes, an in-process gateway per test."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Self

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signing_gateway.settings import ResilienceSettings, SignerSettings, TrustSettings
from tests.support.fake_signer_process import FakeSignerProcess, running_fake_signer
from tests.support.gateway import make_settings, running_gateway

DEFAULT_CONTROL = {
    "latencyMs": 5,
    "jitterMs": 0,
    "capacity": None,
    "overflow": "queue",
    "errorRate": 0,
    "fault": None,
}
#: The deadline every matrix test runs under (seconds), and the lateness allowed on top.
DEADLINE = 1.0
MARGIN = 0.35
#: Small but real resilience settings, so every mechanism shows within a second.
TEST_RESILIENCE = {
    "attempt_timeout_seconds": 0.4,
    "max_attempts": 3,
    "backoff_base_seconds": 0.02,
    "backoff_max_seconds": 0.1,
    "retry_budget_ratio": 0.2,
    "retry_budget_min_per_second": 1.0,
    "retry_budget_window_seconds": 10.0,
    "breaker_consecutive_failures": 5,
    "breaker_open_seconds": 2.0,
    "max_in_flight": 16,
    "max_pending": 16,
    "max_wait_seconds": 0.3,
}


@pytest.fixture(scope="session")
def eu_fake() -> Iterator[FakeSignerProcess]:
    """A fake EU signer process shared by the matrix."""
    with running_fake_signer("--role", "eu", "--seed", "1") as signer:
        yield signer


@pytest.fixture(scope="session")
def domestic_fake() -> Iterator[FakeSignerProcess]:
    """A fake domestic signer process shared by the matrix."""
    with running_fake_signer("--role", "domestic", "--seed", "2") as signer:
        yield signer


def control(signer: FakeSignerProcess, **values: Any) -> None:
    """PUT /_control on a fake signer."""
    httpx.put(f"{signer.base_url}/_control", json=values, timeout=5).raise_for_status()


def stats(signer: FakeSignerProcess) -> dict[str, Any]:
    """GET /_stats of a fake signer."""
    response = httpx.get(f"{signer.base_url}/_stats", timeout=5)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def seen(signer: FakeSignerProcess, endpoint: str) -> dict[str, int]:
    """Outcomes the fake counted for `endpoint`, once nothing is in flight any more."""
    deadline = time.monotonic() + 5
    while (current := stats(signer))["inFlight"] and time.monotonic() < deadline:
        time.sleep(0.02)  # polling interval while the fake finishes cancelled handlers
    totals: dict[str, int] = current["totals"].get(endpoint, {})
    return totals


@pytest.fixture
def fakes(
    eu_fake: FakeSignerProcess, domestic_fake: FakeSignerProcess
) -> Iterator[tuple[FakeSignerProcess, FakeSignerProcess]]:
    """Both fakes at default behaviour with zeroed counters for the test."""
    for signer in (eu_fake, domestic_fake):
        control(signer, **DEFAULT_CONTROL)
        httpx.post(f"{signer.base_url}/_stats/reset", timeout=5).raise_for_status()
    yield eu_fake, domestic_fake
    for signer in (eu_fake, domestic_fake):
        control(signer, **DEFAULT_CONTROL)


def signer_settings(url: str, **resilience: Any) -> SignerSettings:
    """Settings for one fake signer with the test resilience values (and overrides)."""
    return SignerSettings(
        url=url, resilience=ResilienceSettings(**{**TEST_RESILIENCE, **resilience})
    )


@asynccontextmanager
async def gateway_for(
    eu_url: str,
    domestic_url: str,
    *,
    deadline: float = DEADLINE,
    eu: dict[str, Any] | None = None,
    domestic: dict[str, Any] | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway in front of the given signers, trusting their published keys."""
    settings = make_settings(
        eu_signer=signer_settings(eu_url, **(eu or {})),
        domestic_signer=signer_settings(domestic_url, **(domestic or {})),
        trust=TrustSettings(fetch_from_signers=True),
        request_deadline_seconds=deadline,
    )
    async with running_gateway(settings) as client:
        # Warm the request path (validation, problem rendering, metrics) without a signer
        # call, so the first measured request does not pay one-off start-up costs.
        invalid = await client.post("/v1/dcc", json={"dcc": {}})
        assert invalid.status_code == 422
        await client.get("/readyz")
        await client.get("/metrics")
        yield client


class HealthWatch:
    """Polls /healthz every 20 ms in the background and keeps the slowest answer."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.latencies: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            response = await self.client.get("/healthz")
            self.latencies.append(time.monotonic() - started)
            self.failures += response.status_code != 200
            await asyncio.sleep(0.02)  # sampling period, not a wait for an event

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def assert_fast(self) -> None:
        """Liveness answered every time: at most 1 poll in 20 over 100 ms, none over 250 ms.

        A loop held by a signer call would hold a poll for the signer's latency or the deadline
        (seconds); the looser worst-case bound leaves room for a process of this test waiting for
        one of two shared cores, which says nothing about the gateway's loop.
        """
        assert self.latencies
        assert self.failures == 0
        slow = [took for took in self.latencies if took >= 0.1]
        worst = max(self.latencies)
        assert len(slow) <= len(self.latencies) // 20, f"/healthz over 100 ms: {slow}"
        assert worst < 0.25, f"/healthz took {worst * 1000:.0f} ms"


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """Sum of the samples of `name` (from GET /metrics) whose labels include `labels`."""
    response = await client.get("/metrics")
    response.raise_for_status()
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def breaker(client: httpx.AsyncClient, signer: str) -> str:
    """The breaker state /readyz reports for `signer` ("eu-signer" or "domestic-signer")."""
    body = (await client.get("/readyz")).json()
    state: str = body["signers"][signer]["breaker"]
    return state
