"""A CPU-bound gateway refuses what it cannot start in time: 503 overloaded, no signer call."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.issuance.deadline import BUDGET_SPENT_BEFORE_SIGNING
from signing_gateway.settings import LoopLagSettings
from tests.api.signer_mocks import failing_eu_signer
from tests.support.gateway import make_settings, running_gateway, served_gateway
from tests.support.polling import until
from tests.support.raw_http import exchange_answer


def _one_permit(test_keys, queue_timeout: float):
    """Settings with one CPU permit and the given queue timeout (seconds)."""
    return make_settings(
        test_keys,
        loop_lag=LoopLagSettings(cpu_permits=1, cpu_queue_timeout_seconds=queue_timeout),
    )


def _overloaded(response: httpx.Response, request_id: str) -> dict[str, Any]:
    """Check `response` is the CPU gate's 503 `overloaded` for `request_id`; its problem body."""
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"] == request_id
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/overloaded")
    assert problem["requestId"] == request_id
    return problem


async def _post_while_every_permit_is_held(settings, headers=None) -> tuple[httpx.Response, str]:
    """POST /v1/dcc while the CPU gate's one permit is taken for 0.3 s, as a busy loop would.

    Returns the answer and the gateway's /metrics text after it.
    """
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        gate = app.state.cpu_gate
        async with gate.request():
            pending = asyncio.create_task(
                client.post("/v1/dcc", json=examples.EU_VACCINATION, headers=headers or {})
            )
            await asyncio.sleep(0.3)
        response = await pending
        return response, (await client.get("/metrics")).text


async def test_a_request_not_started_within_the_queue_timeout_is_refused(test_keys, signers):
    """503 problem+json `overloaded` with Retry-After and the request id; the signer saw nothing."""
    seen = failing_eu_signer(signers)
    settings = _one_permit(test_keys, 0.1)
    response, metrics_text = await _post_while_every_permit_is_held(
        settings, {"X-Request-ID": "shed-1"}
    )
    assert "0.1 s" in _overloaded(response, "shed-1")["detail"]
    assert seen == []
    assert metrics_text.count("gateway_cpu_queue_timeouts_total 1.0") == 1


async def test_a_request_admitted_within_the_queue_timeout_is_served(test_keys, signers):
    """Waiting 0.3 s of a 5 s queue timeout is fine: the request goes on to its signer."""
    seen = failing_eu_signer(signers)
    settings = _one_permit(test_keys, 5)
    response, _ = await _post_while_every_permit_is_held(settings)
    assert response.status_code == 502  # the mock signer's 500, so it was reached
    assert len(seen) == 1


async def test_the_callers_budget_counts_the_wait_for_a_permit(test_keys, signers):
    """X-Request-Timeout 0.2 s, 0.3 s spent waiting at the gate: 504 at once, no signer call."""
    seen = failing_eu_signer(signers)
    settings = _one_permit(test_keys, 5)
    response, _ = await _post_while_every_permit_is_held(settings, {"X-Request-Timeout": "0.2"})
    assert response.status_code == 504
    assert response.json()["type"].endswith("/deadline-exceeded")
    assert seen == []


async def test_a_callers_budget_ending_before_the_queue_timeout_is_a_504_at_its_deadline(
    test_keys, signers
):
    """X-Request-Timeout 0.1 s, queue timeout 0.5 s, permit held 1 s: 504 at 0.1 s, not 503.

    Its detail says the budget ran out before signing started and names no part or signer.
    """
    seen = failing_eu_signer(signers)
    settings = _one_permit(test_keys, 0.5)
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        async with app.state.cpu_gate.request():
            started = time.monotonic()
            pending = asyncio.create_task(
                client.post(
                    "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-Timeout": "0.1"}
                )
            )
            await until(pending.done, limit=1.0)
            waited = time.monotonic() - started
        response = await pending
        metrics_text = (await client.get("/metrics")).text
    assert response.status_code == 504, response.text
    problem = response.json()
    assert problem["type"].endswith("/deadline-exceeded")
    assert problem["detail"] == BUDGET_SPENT_BEFORE_SIGNING
    assert "part" not in problem
    assert 0.09 <= waited < 0.45
    assert seen == []
    assert "gateway_cpu_queue_timeouts_total 0.0" in metrics_text


async def test_the_body_limits_wait_for_a_permit_too(test_keys, signers):
    """A body the limits would refuse (415) waits at the gate like any other: 503 `overloaded`.

    The gate is outside the body limits, so that a burst of new requests parks there instead of
    having their heads checked (and their bodies read) all in one loop pass.
    """
    seen = failing_eu_signer(signers)
    settings = _one_permit(test_keys, 0.1)
    response, _ = await _post_while_every_permit_is_held(settings, {"Content-Type": "text/plain"})
    assert response.status_code == 503, response.text
    assert response.json()["type"].endswith("/overloaded")
    assert seen == []


async def test_a_request_over_the_queue_bound_is_refused_at_once(test_keys, signers):
    """One new request parked of one allowed: the next gets 503 `overloaded` at once, unsigned.

    Well before the 5 s queue timeout, with Retry-After; it is counted apart from the timeouts,
    and /readyz shows the bound and the refusal. The parked one still reaches its signer.
    """
    seen = failing_eu_signer(signers)
    settings = make_settings(
        test_keys,
        loop_lag=LoopLagSettings(cpu_permits=1, cpu_queue_timeout_seconds=5, cpu_queue_max=1),
    )
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        gate = app.state.cpu_gate
        async with gate.request():
            parked = asyncio.create_task(client.post("/v1/dcc", json=examples.EU_VACCINATION))
            await until(lambda: gate.admitting == 1)
            started = time.monotonic()
            refused = await client.post(
                "/v1/dcc", json=examples.EU_VACCINATION, headers={"X-Request-ID": "full-1"}
            )
            elapsed = time.monotonic() - started
            gate_view = (await client.get("/readyz")).json()["cpuGate"]
        assert (await parked).status_code == 502  # the mock signer's 500: it was reached
        metrics_text = (await client.get("/metrics")).text
    assert elapsed < 1
    assert "too many requests waiting" in _overloaded(refused, "full-1")["detail"]
    assert len(seen) == 1  # the parked request's call only
    assert (gate_view["queueMax"], gate_view["overflowed"], gate_view["timedOut"]) == (1, 1, 0)
    assert metrics_text.count("gateway_cpu_queue_overflows_total 1.0") == 1
    assert metrics_text.count("gateway_cpu_queue_timeouts_total 0.0") == 1


def _hold_the_loop(seconds: float) -> None:
    """CPU work on the event loop for `seconds`: no other task runs, no timer fires meanwhile."""
    until_ = time.perf_counter() + seconds
    while time.perf_counter() < until_:
        pass


#: A body /v1/dcc refuses 422 once it reads and validates it.
INVALID_DCC = b'{"not": "a dcc"}'


def _dcc_head(*, budget: bytes, expect: bool) -> bytes:
    fields = b"Host: gateway\r\nContent-Type: application/json\r\n"
    fields += b"Content-Length: %d\r\nX-Request-Timeout: %s\r\n" % (len(INVALID_DCC), budget)
    if expect:
        fields += b"Expect: 100-continue\r\n"
    return b"POST /v1/dcc HTTP/1.1\r\n" + fields + b"\r\n"


async def _until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Everything the gateway sends until it ends the connection; the body sent if asked."""
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
        if received == b"HTTP/1.1 100 Continue\r\n\r\n":
            writer.write(INVALID_DCC)  # asked for: the body is read
    return received


@pytest.mark.parametrize("expect", [False, True], ids=["body-sent", "body-held-back"])
async def test_a_permit_reaching_a_spent_budget_is_a_504_without_reading_the_body(
    test_keys, signers, expect
):
    """Pin that a request handed its permit with no attempt's time left is answered at once.

    The permit is held past the caller's 0.5 s (a loop turn running late, as under overload)
    and handed over before the budget's own timer runs. The request is answered 504
    before-signing-started without its body being read or checked (an invalid body: not
    422), with `Connection: close`, as a refusal of a body unread is; a caller holding its
    body back is not asked for it. The permit goes on: the next request is served. Before,
    the request read and validated its body and was answered 422 on a kept connection.
    """
    seen = failing_eu_signer(signers)
    app = create_app(_one_permit(test_keys, 5))
    async with served_gateway(app) as port:
        gate = app.state.cpu_gate
        holder = gate.request()
        await holder.__aenter__()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = _dcc_head(budget=b"0.5", expect=expect)
            writer.write(head if expect else head + INVALID_DCC)
            await until(lambda: gate.admitting == 1)
            _hold_the_loop(0.55)
            await holder.__aexit__(None, None, None)  # the permit reaches it, spent
            async with asyncio.timeout(10):
                answer = await _until_closed(reader, writer)
        finally:
            writer.close()
        status, _, problem = await exchange_answer(
            port, _dcc_head(budget=b"5", expect=False) + INVALID_DCC
        )
    head_text, _, body = answer.partition(b"\r\n\r\n")
    assert head_text.startswith(b"HTTP/1.1 504 "), answer[:200]
    assert b"\r\nconnection: close" in head_text.lower()
    assert orjson.loads(body)["detail"] == BUDGET_SPENT_BEFORE_SIGNING
    assert status == 422, problem  # served after it: the permit was passed on
    assert (gate.busy, gate.waiting) == (0, 0)
    assert seen == []


@pytest.mark.parametrize("expect", [False, True], ids=["body-sent", "body-held-back"])
async def test_an_overload_refusal_of_a_body_held_back_ends_the_connection(
    test_keys, signers, expect
):
    """Pin that the gate's 503 closes the connection of a caller still holding its body back.

    The caller sends `Expect: 100-continue` and waits to be asked for its body, which the
    refused request never asks for. Kept open, the connection would read the caller's next
    request as that body, and never answer it. A body already sent is read on and dropped by
    the server, so that connection stays open and its next request is answered. Before, the
    503 said nothing of the connection, and the next request after a held-back body hung.
    """
    seen = failing_eu_signer(signers)
    app = create_app(_one_permit(test_keys, 0.2))
    async with served_gateway(app) as port:
        gate = app.state.cpu_gate
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with gate.request():
                head = _dcc_head(budget=b"5", expect=expect)
                writer.write(head if expect else head + INVALID_DCC)
                async with asyncio.timeout(5):
                    refused = await reader.readuntil(b"\r\n\r\n")
                    length = int(refused.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
            writer.write(_dcc_head(budget=b"5", expect=False) + INVALID_DCC)
            async with asyncio.timeout(5):
                after = await reader.read(65536)
        finally:
            writer.close()
    assert refused.startswith(b"HTTP/1.1 503 "), refused
    if expect:
        assert b"\r\nconnection: close" in refused.lower()
        assert after == b""  # ended, not waiting for a body that will not come
    else:
        assert b"connection: close" not in refused.lower()
        assert after.startswith(b"HTTP/1.1 422 "), after[:200]
    assert (gate.busy, gate.waiting) == (0, 0)
    assert seen == []
