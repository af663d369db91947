"""AuditTrail: JSON lines on a writer thread, bounded pending writes, failures counted."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import orjson
import pytest

from signing_gateway.domain.errors import DomainValidationError, FieldError
from signing_gateway.errors import SignerUnavailable
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit import AuditFile, AuditTrail, IssuanceAudit
from signing_gateway.security.auth import Caller


class BlockingFile(AuditFile):
    """An audit file whose writes wait until released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()

    def append(self, line: bytes) -> None:
        self.release.wait(timeout=10)
        super().append(line)


async def test_records_are_appended_as_json_lines(tmp_path):
    """Each write appends one JSON object per line, in order."""
    trail = await AuditTrail.open(
        tmp_path / "a.jsonl", metrics=GatewayMetrics(), fail_closed=True, max_pending=8
    )
    assert await trail.write({"n": 1})
    assert await trail.write({"n": 2})
    await trail.close()
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [{"n": 1}, {"n": 2}]


async def test_pending_writes_are_bounded(tmp_path):
    """Beyond max_pending queued writes, a write fails at once instead of queueing more."""
    metrics = GatewayMetrics()
    sink = await asyncio.to_thread(BlockingFile, tmp_path / "b.jsonl")
    trail = AuditTrail(sink=sink, metrics=metrics, fail_closed=True, max_pending=2)
    queued = [asyncio.create_task(trail.write({"n": i})) for i in range(2)]
    for _ in range(500):  # poll with a bound: both writes taken (one running, one queued)
        if trail._pending == 2:
            break
        await asyncio.sleep(0.01)
    assert await trail.write({"n": "overflow"}) is False
    assert metrics.audit_write_failures._value.get() == 1
    sink.release.set()
    assert await asyncio.gather(*queued) == [True, True]
    await trail.close()
    assert len((tmp_path / "b.jsonl").read_bytes().splitlines()) == 2


async def test_write_runs_off_the_event_loop(tmp_path):
    """The loop keeps running while a file write is stuck."""
    sink = await asyncio.to_thread(BlockingFile, tmp_path / "c.jsonl")
    trail = AuditTrail(sink=sink, metrics=GatewayMetrics(), fail_closed=True, max_pending=4)
    write = asyncio.create_task(trail.write({"n": 1}))
    ticks = 0
    for _ in range(5):
        await asyncio.sleep(0)
        ticks += 1
    assert ticks == 5
    assert not write.done()
    sink.release.set()
    assert await write
    await trail.close()


async def _attempt_outcome(path: Path, raised: BaseException | None) -> list[dict]:
    """What `IssuanceAudit.attempt` wrote when its block raised `raised` (None: it returned).

    The block's own exception must come out of the attempt unchanged.
    """
    trail = await AuditTrail.open(path, metrics=GatewayMetrics(), fail_closed=True, max_pending=8)
    audit = IssuanceAudit(trail, request_id="r1", caller=Caller(subject="app"), endpoint="/v1/dcc")

    async def issue() -> None:
        async with audit.attempt() as entered:
            assert entered is audit
            if raised is not None:
                raise raised

    if raised is None:
        await issue()
    else:
        with pytest.raises(type(raised)) as caught:
            await issue()
        assert caught.value is raised
    await trail.close()
    written = await asyncio.to_thread(path.read_bytes)
    return [orjson.loads(line) for line in written.splitlines()]


async def test_an_attempt_records_each_way_it_can_end(tmp_path):
    """Issued, failed (the gateway error's status), refused (422) or error (500)."""
    cases = [
        (None, "issued", 200),
        (SignerUnavailable("down"), "failed", SignerUnavailable.status),
        (DomainValidationError([FieldError(("dcc",), "bad")]), "refused", 422),
        (RuntimeError("bug"), "error", 500),
    ]
    for i, (raised, outcome, status) in enumerate(cases):
        (record,) = await _attempt_outcome(tmp_path / f"attempt-{i}.jsonl", raised)
        assert (record["outcome"], record["status"]) == (outcome, status)


async def test_a_cancelled_attempt_writes_nothing(tmp_path):
    """The caller or the process went away mid-issuance: no outcome to record."""
    assert await _attempt_outcome(tmp_path / "a.jsonl", asyncio.CancelledError()) == []
