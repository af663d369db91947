"""The Idemix check workers: checks run off the event loop, and a dead worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from signing_gateway.errors import VerificationUnavailable
from signing_gateway.runtime.cpu_gate import CpuGate
from signing_gateway.runtime.idemix_pool import IdemixCheckPool
from signing_gateway.verification.errors import CredentialVerificationError
from tests.support.idemix_issuer import TEST_KEY, issue_answer
from tests.support.polling import until
from tests.unit.verification.idemix_testdata import DENIED, DENIED_PROOF_IDENTIFIER, DENIED_QR


@pytest.fixture
async def pool() -> AsyncIterator[IdemixCheckPool]:
    """One worker with the test key, started and closed as the app does."""
    checks = IdemixCheckPool({"VWS-TEST-0": TEST_KEY}, workers=1, max_in_flight=4)
    await checks.start()
    try:
        yield checks
    finally:
        await checks.close()


async def check(pool: IdemixCheckPool, expected: dict[str, str] = DENIED) -> None:
    """Verify the denied QR in the pool against `expected`."""
    await pool.verify_static(DENIED_QR, DENIED_PROOF_IDENTIFIER, expected=expected, part="domestic")


async def test_checks_verify_and_refuse_in_the_worker(pool):
    """A real QR passes in the worker; one over other attributes comes back refused."""
    await check(pool)
    with pytest.raises(CredentialVerificationError) as caught:
        await check(pool, {**DENIED, "birthDay": "2"})
    assert caught.value.reason == "payload-mismatch"


async def test_checks_do_not_hold_the_event_loop(pool):
    """Forty checks (~0.3 s of CPU) cost the loop almost none of it, and it keeps turning."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    cpu_started = time.thread_time()
    await asyncio.gather(*(check(pool) for _ in range(40)))
    loop_cpu = time.thread_time() - cpu_started
    took = time.perf_counter() - started
    stop.set()
    await ticker
    # The loop's own CPU time, which the machine's other load cannot inflate: the forty checks
    # on the loop would cost it ~0.3 s (~7 ms each); off it, the loop only hands them over.
    assert loop_cpu < 0.15, (loop_cpu, took)
    # And the loop kept turning; the bound leaves room for a busy machine's scheduling.
    assert max(gaps) < 0.2, (max(gaps), took)
    assert len(gaps) > took / 0.2


async def test_checks_beyond_the_bound_wait_for_a_slot(pool):
    """No more than max_in_flight checks are in the pool at once; the rest wait their turn."""
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(pool.snapshot()["inFlight"])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(check(pool) for _ in range(10)))
    watcher.cancel()
    assert max(seen) == 4


async def test_killed_worker_answers_unavailable_then_is_replaced(pool):
    """A killed worker fails its checks as unavailable; new workers then take checks again."""
    await check(pool)
    (pid,) = pool.worker_pids()
    # Stopped first, the worker finishes none of them before it is killed: the three take it
    # ~20 ms, which this process, held back on a busy machine, could let pass before the kill.
    os.kill(pid, signal.SIGSTOP)
    running = asyncio.gather(*(check(pool) for _ in range(3)), return_exceptions=True)
    await until(lambda: pool.snapshot()["inFlight"] == 3)
    os.kill(pid, signal.SIGKILL)
    outcomes = await running
    assert any(isinstance(o, VerificationUnavailable) for o in outcomes), outcomes
    assert all(o is None or isinstance(o, VerificationUnavailable) for o in outcomes), outcomes
    await until(lambda: pool.up, limit=30)
    await pool.probe()
    assert pool.worker_pids() != (pid,)
    assert pool.replacements == 1
    await check(pool)


async def test_probe_fails_while_workers_are_replaced(pool):
    """Readiness fails from the moment a dead worker is noticed until new ones are up."""
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(VerificationUnavailable):
        # The first check after the death finds the executor broken and starts the replacement.
        await check(pool)
    assert not pool.up
    with pytest.raises(VerificationUnavailable):
        await pool.probe()
    await until(lambda: pool.up, limit=30)
    await check(pool)


async def test_a_request_waiting_for_its_check_holds_no_cpu_permit(pool):
    """While its check runs in a worker, a request's CPU permit serves another request."""
    gate = CpuGate(1)

    async def request_with_a_check() -> None:
        async with gate.request():
            await check(pool)

    checking = asyncio.create_task(request_with_a_check())
    # A check takes a worker ~7 ms: look at every turn of the loop, not every 10 ms.
    await until(lambda: pool.snapshot()["inFlight"] == 1, interval=0)
    assert gate.busy == 0
    async with gate.request():
        assert pool.snapshot()["inFlight"] == 1  # the other request runs meanwhile
    await checking


#: The issuer nonce the app's proofs are made for (the gateway does not check them).
ISSUER_NONCE = 1 << 100
ISSUED = [
    {**DENIED, "isPaperProof": "0"},
    {**DENIED, "isPaperProof": "0", "category": "1"},
]


async def verify_issue(
    pool: IdemixCheckPool, items: list[dict[str, Any]], commitment: bytes
) -> None:
    """Check `items`, answering ISSUED, against the app's `commitment` in the pool."""
    await pool.verify_issue(
        items, commitment=commitment, issuer_pk_id="VWS-TEST-0", expected=ISSUED, part="domestic"
    )


async def test_every_issued_item_is_checked_in_the_workers(pool):
    """Both items pass; a second item carrying the first's signature is refused."""
    items, commitment = issue_answer(ISSUED, nonce1=ISSUER_NONCE)
    await verify_issue(pool, items, commitment)
    second = {**items[1], "issueSignatureMessage": items[0]["issueSignatureMessage"]}
    with pytest.raises(CredentialVerificationError) as caught:
        await verify_issue(pool, [items[0], second], commitment)
    assert caught.value.reason == "bad-signature"


async def test_item_count_other_than_the_sets_asked_is_refused(pool):
    """One item fewer than the attribute sets asked for is refused before any check runs."""
    items, commitment = issue_answer(ISSUED, nonce1=ISSUER_NONCE)
    with pytest.raises(CredentialVerificationError) as caught:
        await verify_issue(pool, items[:1], commitment)
    assert caught.value.reason == "count-mismatch"


async def test_checks_while_workers_are_replaced_are_unavailable_not_skipped(pool, monkeypatch):
    """Until new workers are up, each check is answered unavailable; none passes unchecked."""
    starting = threading.Event()
    start_workers = pool._started_executor

    def held_start() -> Any:
        starting.wait(30)
        return start_workers()

    monkeypatch.setattr(pool, "_started_executor", held_start)
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGKILL)
    try:
        with pytest.raises(VerificationUnavailable):
            await check(pool)  # finds the executor broken: the replacement starts, held
        for _ in range(2):
            with pytest.raises(VerificationUnavailable):
                await check(pool)
    finally:
        starting.set()
    await until(lambda: pool.up, limit=30)
    await check(pool)
