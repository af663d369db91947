"""The soak's figures: what it counts as a success, a hang, a 500, a delivered signing."""

from __future__ import annotations

import argparse
import asyncio
import functools
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import soak
from bench.auth import BenchAuth

#: The gateway's answer per route: a 200, a 500 and a 429 (the prepare-issue call never answers).
STATUS = {"/v1/dcc": 200, "/v1/domestic/static": 500, "/v1/print": 429}
#: The fakes' counts: 5 plain answers, 2 slow ones that still deliver, 3 injected 500s.
SIGNER_TOTALS = {"get_credential": {"ok": 5, "fault:slow-body": 2, "fault:status": 3}}


def _answer(request: httpx.Request) -> httpx.Response:
    """The gateway and the fakes, as the soak's callers and injector see them."""
    path = request.url.path
    if path == "/v1/domestic/prepare-issue":
        raise httpx.ReadTimeout("no answer within the deadline", request=request)
    if path == "/_stats":
        return httpx.Response(200, json={"totals": SIGNER_TOTALS})
    if path == "/metrics":
        return httpx.Response(200, text="gateway_requests_received_total 0.0\n")
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
    assert soak.healthy(result) is False


@pytest.mark.parametrize(
    ("figures", "healthy"),
    [
        ({}, True),
        ({"hung": 1}, False),
        ({"status_500": 1}, False),
        ({"transport_errors": {"ReadError": 1}}, False),
    ],
)
def test_a_soak_is_healthy_only_without_hangs_500s_and_transport_errors(
    figures: dict[str, Any], healthy: bool
) -> None:
    """`make soak` exits 1 on any of the three."""
    result = {"hung": 0, "status_500": 0, "transport_errors": {}} | figures
    assert soak.healthy(result) is healthy
