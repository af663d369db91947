"""A stalled audit disk: a drain that cancels requests waiting on it records what they got."""

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
from signing_gateway.settings import ShutdownSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import eu_vaccination
from tests.api.signer_mocks import MockedSigners
from tests.support.audit import StalledDisk, records_by_request
from tests.support.gateway import SignerKeys, make_settings, running_gateway
from tests.support.polling import until_answered


def _settings(keys: SignerKeys, audit_file: Path) -> Any:
    return make_settings(
        keys,
        audit=AuditSettings(file=audit_file),
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
    settings = _settings(test_keys, audit_file)
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
