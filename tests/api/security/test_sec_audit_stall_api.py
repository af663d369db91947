"""A stalled audit disk: bounded waits without a CPU permit, and drains that record the truth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from signing_gateway.app import create_app
from signing_gateway.security.settings import AuditSettings
from signing_gateway.settings import LoopLagSettings, ShutdownSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import eu_vaccination
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import MockedSigners
from tests.support.audit import StalledDisk, records_by_request
from tests.support.gateway import SignerKeys, make_settings, running_gateway
from tests.support.polling import until_answered


def _settings(keys: SignerKeys, audit_file: Path, **audit: Any) -> Any:
    # A short CPU-queue timeout: a request that cannot get a permit is refused quickly.
    return make_settings(
        keys,
        audit=AuditSettings(file=audit_file, **audit),
        loop_lag=LoopLagSettings(cpu_queue_timeout_seconds=0.5),
        shutdown=ShutdownSettings(drain_timeout_seconds=0.1, cancel_grace_seconds=1),
    )


async def _audit_state(client: httpx.AsyncClient) -> dict[str, Any]:
    state: dict[str, Any] = (await client.get("/readyz")).json()["audit"]
    return state


def _issue(client: httpx.AsyncClient, request_id: str) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        client.post("/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": request_id})
    )


async def _audit_until(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll /readyz until its audit state is `done`."""
    return await until_answered(partial(_audit_state, client), done)


def _two_waiting_on_the_disk(state: dict[str, Any]) -> bool:
    """Two records wait for the writer: one stuck in its write, one queued behind it."""
    return state["pendingWrites"] == 2 and state["writeInProgressSeconds"] is not None


async def test_a_stalled_audit_write_holds_no_cpu_permit(
    test_keys: SignerKeys, mocked: MockedSigners, stalled_disk: StalledDisk, audit_file: Path
) -> None:
    """Two requests wait on a stuck disk: other /v1 requests are served meanwhile.

    Both used to wait for the disk holding the CPU gate's two permits, so every other /v1
    request (even GET /v1/keys, which writes no record) was refused 503 `overloaded`.
    """
    settings = _settings(test_keys, audit_file, write_timeout_seconds=30)
    async with running_gateway(settings) as client:
        first, second = _issue(client, "stuck-1"), _issue(client, "stuck-2")
        await _audit_until(client, _two_waiting_on_the_disk)
        keys = await client.get("/v1/keys")
        gate = (await client.get("/readyz")).json()["cpuGate"]
        stalled_disk.release()
        answers = await asyncio.gather(first, second)
    assert keys.status_code == 200, keys.text
    assert gate["busy"] == 0
    assert [a.status_code for a in answers] == [200, 200]


async def test_an_audit_write_that_outlasts_its_timeout_fails_closed(
    test_keys: SignerKeys, mocked: MockedSigners, stalled_disk: StalledDisk, audit_file: Path
) -> None:
    """Past `write_timeout_seconds` the credential is withheld (503) and the file says so.

    Timed-out writes stay queued, so `max_pending_writes` is reached and the next request
    fails at once; a stalled disk used to hold every caller until it recovered.
    """
    settings = _settings(test_keys, audit_file, write_timeout_seconds=0.3, max_pending_writes=3)
    async with running_gateway(settings) as client:
        answers = await asyncio.gather(_issue(client, "slow-1"), _issue(client, "slow-2"))
        during = await _audit_state(client)
        refused = await client.post("/v1/dcc", json=eu_vaccination())
        after = await _audit_state(client)
        failures = (await scrape(client)).value("gateway_audit_write_failures_total")
        stalled_disk.release()
    for answer in answers:
        body = assert_problem(answer, 503, "audit-unavailable")
        assert "credential" not in body
    assert_problem(refused, 503, "audit-unavailable")
    # Two writes timed out: one stuck, one queued (its record replaced), and the one stuck
    # followed by the record that supersedes it; the third never waited.
    assert (during["pendingWrites"], during["timedOut"]) == (3, 2)
    assert during["writeInProgressSeconds"] >= 0
    assert (after["pendingWrites"], after["timedOut"]) == (3, 2)
    assert failures == 3
    written = records_by_request(audit_file)
    assert sorted([r["outcome"] for r in written[rid]] for rid in ("slow-1", "slow-2")) == [
        ["issued", "withheld"],
        ["withheld"],
    ]
    assert all(written[rid][-1]["status"] == 503 for rid in ("slow-1", "slow-2"))
    assert len(written) == 2  # the refused one is in the log only


async def test_failing_open_releases_after_the_write_timeout(
    test_keys: SignerKeys, mocked: MockedSigners, stalled_disk: StalledDisk, audit_file: Path
) -> None:
    """With fail_closed=false a write past its timeout is counted and the credential released."""
    settings = _settings(test_keys, audit_file, write_timeout_seconds=0.1, fail_closed=False)
    async with running_gateway(settings) as client:
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": "open-1"}
        )
        failures = (await scrape(client)).value("gateway_audit_write_failures_total")
        stalled_disk.release()
    assert response.status_code == 200, response.text
    assert response.json()["credential"].startswith("HC1:")
    assert failures == 1
    # Not dropped: written once the disk took it, and true (the caller got the credential).
    assert [r["outcome"] for r in records_by_request(audit_file)["open-1"]] == ["issued"]


async def test_a_drain_during_the_audit_write_records_the_cancellation(
    test_keys: SignerKeys,
    mocked: MockedSigners,
    stalled_disk: StalledDisk,
    audit_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Signed, then cancelled by the drain while the record waits: the records say cancelled.

    The drain answers 503; the record said `issued` (when its write had started) or was
    lost (when it was still queued), and the audit log had nothing for either.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.audit")
    settings = _settings(test_keys, audit_file, write_timeout_seconds=30)
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        first, second = _issue(client, "drained-1"), _issue(client, "drained-2")
        await _audit_until(client, _two_waiting_on_the_disk)
        assert await app.state.drain.drain() == 2
        answers = await asyncio.gather(first, second)
        stalled_disk.release()
        # Every write reserved is accounted for once done, the ones of cancelled requests too.
        await _audit_until(client, lambda state: state["pendingWrites"] == 0)
    for answer in answers:
        detail = assert_problem(answer, 503, "shutting-down")["detail"]
        assert "no credential was released" in detail
        assert "nothing was issued" not in detail
    logged = [r.__dict__["audit"] for r in caplog.records if r.name == "signing_gateway.audit"]
    assert sorted((r["requestId"], r["outcome"], r["status"]) for r in logged) == [
        ("drained-1", "cancelled", 503),
        ("drained-2", "cancelled", 503),
    ]
    written = records_by_request(audit_file)
    assert sorted([r["outcome"] for r in written[rid]] for rid in ("drained-1", "drained-2")) == [
        ["cancelled"],
        ["issued", "cancelled"],
    ]
    for rid in ("drained-1", "drained-2"):
        last = written[rid][-1]
        assert (last["status"], last["problemType"]) == (503, answers[0].json()["type"])
        assert "kid" in last["items"][0]  # signed before the cancellation: the record says so
