"""Fixtures for the fault matrix: real fake-signer processes, an in-process gateway per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Self

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signing_gateway.settings import ResilienceSettings, SignerSettings, TrustSettings
from tests.support.core_wait import THIS_THREAD, Latencies
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


def seen(signer: FakeSignerProcess, endpoint: str) -> dict[str, int]:
    """Outcomes the fake counted for `endpoint`, once nothing is in flight any more."""
    deadline = time.monotonic() + 5
    while (current := signer.stats())["inFlight"] and time.monotonic() < deadline:
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
        signer.reset_stats()
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


#: How often `HealthWatch` polls /healthz.
HEALTH_POLL_PERIOD = 0.02


class HealthWatch:
    """Polls /healthz every 20 ms in the background and times how late each answer came.

    The gateway runs in-process (`gateway_for`), on this test's event loop: the ASGI transport
    hands a poll to the app, which answers it without letting any other callback run. So a
    poll cannot be caught behind a held loop the way an orchestrator's probe is; what a held
    loop delays is the poll's start, the end of the 20 ms sleep before it. Each poll is timed
    from the start of that sleep to its answer, less the sleep: the loop's lateness in waking
    the poller plus the answer, as a probe arriving then would see it.

    Client and gateway are one thread here, the one this loop runs on: its waits for a core
    are subtracted once (`THIS_THREAD`, see `tests.support.core_wait`); the fake signers'
    processes are not watched, as no poll waits for them. The time the thread spent running or
    blocked stays in: a signer call holding the loop, computing or in a blocking call, holds
    the poll due meanwhile.
    """

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.latencies = Latencies((THIS_THREAD,))
        self.failures = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        sleep = 0.0  # the first poll at once, so even a short watch has one
        while True:
            with self.latencies.timed(idle=sleep):
                await asyncio.sleep(sleep)  # sampling period, not a wait for an event
                response = await self.client.get("/healthz")
            self.failures += response.status_code != 200
            if self._stop.is_set():
                return
            sleep = HEALTH_POLL_PERIOD

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop after the poll under way, which counts a loop held up to now."""
        assert self._task is not None
        self._stop.set()
        await self._task

    def assert_fast(self) -> None:
        """Liveness answered every time: at most 1 poll in 20 over 100 ms, none over 250 ms.

        On the time the gateway took, less core waits. A loop held by a signer call holds the
        poll due meanwhile for as long (a blocking call: the signer's latency or the deadline,
        seconds; one of 300 ms fails this); polls here take 1-20 ms of it, idle or beside two
        busy loops.
        """
        served = self.latencies.served()
        assert served
        assert self.failures == 0
        slow = [took for took in served if took >= 0.1]
        slowest = self.latencies.slowest()
        assert len(slow) <= len(served) // 20, f"/healthz over 100 ms: {len(slow)}; {slowest} ms"
        assert served[-1] < 0.25, f"/healthz slowest: {slowest} ms"


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
