"""The soak's figures: what it counts as a success, a hang, a 500, a delivered signing."""

from __future__ import annotations

import argparse
import asyncio
import functools
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from bench import soak
from bench.auth import BenchAuth

#: The gateway's answer per route: a 200, a 500 and a 429 (the prepare-issue call never answers).
STATUS = {"/v1/dcc": 200, "/v1/domestic/static": 500, "/v1/print": 429}
#: The fakes' counts: 5 plain answers, 2 slow ones that still deliver, 3 injected 500s.
SIGNER_TOTALS = {"get_credential": {"ok": 5, "fault:slow-body": 2, "fault:status": 3}}


#: An idle gateway's gauges, as its own scrape reads them: the scrape is the one in progress.
IDLE_METRICS = (
    "gateway_requests_received_total 0.0\n"
    "gateway_requests_in_progress 1.0\n"
    'gateway_signer_in_flight{signer="eu"} 0.0\n'
)


def _answer(request: httpx.Request) -> httpx.Response:
    """The gateway and the fakes, as the soak's callers and injector see them."""
    path = request.url.path
    if path == "/v1/domestic/prepare-issue":
        raise httpx.ReadTimeout("no answer within the deadline", request=request)
    if path == "/_stats":
        return httpx.Response(200, json={"totals": SIGNER_TOTALS})
    if path == "/metrics":
        return httpx.Response(200, text=IDLE_METRICS)
    return httpx.Response(STATUS.get(path, 200), json={})


def test_the_soak_counts_200s_as_successes_timeouts_as_hung_and_every_other_status_as_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 429 is no success, a 500 is one of the 500s, a timed-out request hung: not healthy."""
    transport = httpx.MockTransport(_answer)
    monkeypatch.setattr(
        soak.httpx, "AsyncClient", functools.partial(httpx.AsyncClient, transport=transport)
    )
    args = argparse.Namespace(duration=0.3, concurrency=2, fault_share=0.1, seed=1)
    fakes = {"eu": "http://127.0.0.1:1", "domestic": "http://127.0.0.1:2"}
    auth = BenchAuth(tmp_path / "jwks.json", "t")
    result = asyncio.run(soak._drive("http://127.0.0.1:3", fakes, args, auth))
    sent = result["sent_by_kind"]
    assert {"dcc", "static", "print", "prepare"} <= sent.keys()
    assert result["succeeded"] == sent["dcc"]
    assert result["status_500"] == sent["static"]
    assert result["failed_by_status"] == {"429": sent["print"], "500": sent["static"]}
    assert result["hung"] == sent["prepare"]
    assert result["transport_errors"] == {}
    # The slow answers delivered a signing; the injected 500s did not (two fakes, 7 each).
    assert result["signer_ok_signings"] == {"get_credential": 14}
    assert result["left_in_flight"] == {"requests": 0, "signer_calls": 0}
    assert soak.healthy(result) is False


def test_the_soak_reads_what_is_left_in_flight_without_its_own_scrape() -> None:
    """A request or signer call still in flight after the load is reported, not waited out."""
    scrapes = iter([
        'gateway_requests_in_progress 3.0\ngateway_signer_in_flight{signer="eu"} 2.0\n',
        'gateway_requests_in_progress 2.0\ngateway_signer_in_flight{signer="domestic"} 1.0\n',
    ])  # fmt: skip
    transport = httpx.MockTransport(lambda _: httpx.Response(200, text=next(scrapes)))

    async def left(bound_s: float) -> dict[str, float]:
        async with httpx.AsyncClient(base_url="http://gw", transport=transport) as client:
            return await soak._left_in_flight(client, bound_s)

    assert asyncio.run(left(0.0)) == {"requests": 2, "signer_calls": 2}
    assert asyncio.run(left(0.0)) == {"requests": 1, "signer_calls": 1}


def test_the_soak_reports_the_gateway_memory_warm_at_the_end_and_idle_again() -> None:
    """RSS and descriptors: the first sample, the first warmed up, the last, the idle one."""
    resources = soak.Resources(psutil.Process())
    resources.samples = [(0.0, 50_000_000, 20), (60.0, 80_000_000, 90), (300.0, 81_000_000, 70)]
    figures = resources.figures(resources.sample(311.0))
    assert (figures["rss_mb"]["start"], figures["rss_mb"]["warm"], figures["rss_mb"]["end"]) == (
        50.0,
        80.0,
        81.0,
    )
    assert figures["warm_at_s"] == 60.0
    assert figures["fds"]["start"] == 20
    assert figures["fds"]["most"] == 90
    assert figures["fds"]["idle_after"] == psutil.Process().num_fds()
    rows = soak._resource_rows(figures)
    assert rows[0].startswith(
        "| gateway RSS, MB: at the start / at 60 s / at the end / idle again "
        "| 50.0 / 80.0 / 81.0 / "
    )
    assert rows[1].startswith(
        "| gateway open descriptors: at the start / most / idle again | 20 / 90 / "
    )


@pytest.mark.parametrize(
    ("figures", "healthy"),
    [
        ({}, True),
        ({"hung": 1}, False),
        ({"status_500": 1}, False),
        ({"transport_errors": {"ReadError": 1}}, False),
        ({"left_in_flight": {"requests": 1, "signer_calls": 0}}, False),
        ({"left_in_flight": {"requests": 0, "signer_calls": 1}}, False),
    ],
)
def test_a_soak_is_healthy_only_without_hangs_500s_transport_errors_and_leftovers(
    figures: dict[str, Any], healthy: bool
) -> None:
    """`make soak` exits 1 on any of the four."""
    idle = {"requests": 0, "signer_calls": 0}
    result = {"hung": 0, "status_500": 0, "transport_errors": {}, "left_in_flight": idle} | figures
    assert soak.healthy(result) is healthy
