"""AuditTrail: JSON lines on a writer thread, bounded pending writes, failures counted."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
from pathlib import Path

import orjson
import pytest

from signing_gateway.domain.errors import DomainValidationError, FieldError
from signing_gateway.errors import PROBLEM_BASE, SignerUnavailable
from signing_gateway.observability.context import request_id_var
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit import IssuanceAudit
from signing_gateway.security.audit_file import AuditFile
from signing_gateway.security.audit_trail import AuditTrail
from signing_gateway.security.auth import ANONYMOUS, Caller
from signing_gateway.security.errors import AuditUnavailable
from tests.support.audit import BlockingFile, records_by_request
from tests.support.logs import as_written
from tests.support.polling import until

#: Long enough never to end a test's wait on a healthy write.
NO_TIMEOUT = 30.0


async def _open_trail(
    path: Path, *, metrics: GatewayMetrics | None = None, answered: bool = False
) -> AuditTrail:
    """A fail-closed trail appending to the file at `path`."""
    return await AuditTrail.open(
        path,
        metrics=metrics or GatewayMetrics(),
        fail_closed=True,
        max_pending=8,
        write_timeout=NO_TIMEOUT,
        cancellations_answered=answered,
    )


async def _stuck_trail(
    path: Path,
    *,
    metrics: GatewayMetrics | None = None,
    max_pending: int = 8,
    write_timeout: float = NO_TIMEOUT,
    fail: bool = False,
    answered: bool = False,
) -> tuple[AuditTrail, BlockingFile]:
    """A fail-closed trail whose file writes wait until the `BlockingFile` is released."""
    sink = await asyncio.to_thread(BlockingFile, path, fail=fail)
    trail = AuditTrail(
        sink=sink,
        metrics=metrics or GatewayMetrics(),
        fail_closed=True,
        max_pending=max_pending,
        write_timeout=write_timeout,
        cancellations_answered=answered,
    )
    return trail, sink


async def test_records_are_appended_as_json_lines(tmp_path):
    """Each write appends one JSON object per line, in order."""
    trail = await _open_trail(tmp_path / "a.jsonl")
    assert await trail.write({"n": 1})
    assert await trail.write({"n": 2})
    await trail.close()
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == [{"n": 1}, {"n": 2}]


async def test_pending_writes_are_bounded(tmp_path):
    """Beyond max_pending queued writes, a write fails at once instead of queueing more."""
    metrics = GatewayMetrics()
    trail, sink = await _stuck_trail(tmp_path / "b.jsonl", metrics=metrics, max_pending=2)
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
    trail, sink = await _stuck_trail(tmp_path / "c.jsonl")
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


async def _attempt_outcome(
    path: Path, raised: BaseException | None, *, answered: bool = False
) -> list[dict]:
    """What `IssuanceAudit.attempt` wrote when its block raised `raised` (None: it returned).

    The block's own exception must come out of the attempt unchanged.
    """
    trail = await _open_trail(path, answered=answered)
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
    """Issued, failed (the gateway error's status and type), refused (422) or error (500)."""
    cases = [
        (None, "issued", 200, None),
        (
            SignerUnavailable("down"),
            "failed",
            SignerUnavailable.status,
            PROBLEM_BASE + SignerUnavailable.slug,
        ),
        (
            DomainValidationError([FieldError(("dcc",), "bad")]),
            "refused",
            422,
            PROBLEM_BASE + "validation-failed",
        ),
        (RuntimeError("bug"), "error", 500, PROBLEM_BASE + "internal"),
    ]
    for i, (raised, outcome, status, problem) in enumerate(cases):
        (record,) = await _attempt_outcome(tmp_path / f"attempt-{i}.jsonl", raised)
        assert (record["outcome"], record["status"], record["problemType"]) == (
            outcome,
            status,
            problem,
        )


@pytest.mark.parametrize(
    ("raised", "outcome"),
    [
        (None, "issued"),
        (SignerUnavailable("down"), "failed"),
        (DomainValidationError([FieldError(("dcc",), "bad")]), "refused"),
        (RuntimeError("bug"), "error"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
async def test_each_way_an_attempt_ends_logs_the_one_record_the_file_holds(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    raised: BaseException | None,
    outcome: str,
) -> None:
    """Pin that the audit logger gets exactly one record per attempt: the one in the file.

    The logger is the trail where no file is set, so an outcome missing there is missing
    from the audit trail altogether.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.audit")
    written = await _attempt_outcome(tmp_path / "a.jsonl", raised, answered=True)
    logged = [r.__dict__["audit"] for r in caplog.records if r.name == "signing_gateway.audit"]
    assert [r["outcome"] for r in written] == [outcome]
    assert logged == written


async def test_a_record_holds_who_what_and_how_it_ended_and_nothing_else(tmp_path: Path) -> None:
    """Pin the fields of a record: the documented ones only, `time` to the millisecond in UTC.

    No name, birth date, attribute, token or credential has a field to go into; a caller
    without authentication (auth disabled) is recorded as such.
    """
    path = tmp_path / "r.jsonl"
    trail = await _open_trail(path)
    callers = [Caller(subject="backend-1", client_id="cc-backend"), ANONYMOUS]
    for caller in callers:
        audit = IssuanceAudit(trail, request_id="r1", caller=caller, endpoint="/v1/print")
        async with audit.attempt():
            audit.domestic("domestic", kind="domestic-static", proof_identifier="proof-1")
    await trail.close()
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for record in records:
        assert record.keys() == {
            "time",
            "auditId",
            "requestId",
            "caller",
            "clientId",
            "authenticated",
            "endpoint",
            "items",
            "outcome",
            "status",
            "problemType",
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
        assert record["items"] == [
            {
                "part": "domestic",
                "kind": "domestic-static",
                "count": 1,
                "proofIdentifier": "proof-1",
            }
        ]
    assert [(r["caller"], r["clientId"], r["authenticated"]) for r in records] == [
        ("backend-1", "cc-backend", True),
        ("anonymous", None, False),
    ]


async def test_audit_ids_are_sixteen_hex_digits_and_a_count_from_one(tmp_path: Path) -> None:
    """Pin the documented form of `auditId`: the trail's random part, then 1, 2, ..."""
    trail = await _open_trail(tmp_path / "ids.jsonl")
    ids = [trail.new_audit_id() for _ in range(3)]
    await trail.close()
    prefixes = {audit_id.rpartition("-")[0] for audit_id in ids}
    assert len(prefixes) == 1
    assert re.fullmatch(r"[0-9a-f]{16}", prefixes.pop())
    assert [audit_id.rpartition("-")[2] for audit_id in ids] == ["1", "2", "3"]


async def test_a_failed_attempt_is_answered_only_once_its_record_is_written(
    tmp_path: Path,
) -> None:
    """Pin that a failure's answer, like a credential, waits for its record (bounded).

    Its answer does not depend on the write, but it does not leave before it: otherwise a
    stalled disk would let failures through unrecorded while successes wait.
    """
    trail, sink = await _stuck_trail(tmp_path / "w.jsonl")
    audit = IssuanceAudit(trail, request_id="r3", caller=Caller(subject="app"), endpoint="/v1/dcc")
    attempt = asyncio.create_task(_attempt(audit, SignerUnavailable("down")))
    await until(lambda: sink.started == 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not attempt.done()
    sink.release.set()
    with pytest.raises(SignerUnavailable):
        await attempt
    await trail.close()
    assert [r["outcome"] for r in records_by_request(tmp_path / "w.jsonl")["r3"]] == ["failed"]


async def test_a_withheld_credential_is_logged_as_withheld_with_its_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pin what the audit log says of a credential withheld for want of its record.

    One record, `withheld`, with the 503 `audit-unavailable` the caller got (and never the
    `issued` one it replaces), and the refusal asks the caller to come back in 5 s.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.audit")
    trail, sink = await _stuck_trail(tmp_path / "x.jsonl", write_timeout=0.05)
    audit = IssuanceAudit(trail, request_id="r4", caller=Caller(subject="app"), endpoint="/v1/dcc")
    with pytest.raises(AuditUnavailable) as refused:
        await _attempt(audit, None)
    sink.release.set()
    await trail.close()
    logged = [r.__dict__["audit"] for r in caplog.records if r.name == "signing_gateway.audit"]
    assert [(r["outcome"], r["status"], r["problemType"]) for r in logged] == [
        ("withheld", 503, PROBLEM_BASE + "audit-unavailable")
    ]
    assert refused.value.headers() == {"Retry-After": "5"}


async def test_each_attempt_has_an_audit_id_of_its_own(tmp_path: Path) -> None:
    """Attempts sharing a request id, and attempts of two trails (restarts), never share one."""
    ids = []
    for n in range(2):
        path = tmp_path / f"trail-{n}.jsonl"
        trail = await _open_trail(path)
        for _ in range(2):
            audit = IssuanceAudit(
                trail, request_id="same", caller=Caller(subject="app"), endpoint="/v1/dcc"
            )
            await _attempt(audit, None)
        await trail.close()
        ids += [orjson.loads(line)["auditId"] for line in path.read_bytes().splitlines()]
    assert len(ids) == 4
    assert len(set(ids)) == 4


async def test_a_cancelled_attempt_is_recorded_as_answered(tmp_path):
    """Cancelled behind the drain middleware: a `cancelled` record with its 503, still cancelled."""
    (record,) = await _attempt_outcome(
        tmp_path / "a.jsonl", asyncio.CancelledError(), answered=True
    )
    assert (record["outcome"], record["status"]) == ("cancelled", 503)
    assert record["problemType"].endswith("/shutting-down")
    assert record["requestId"] == "r1"


@pytest.mark.parametrize(
    ("raised", "answered"),
    [(asyncio.CancelledError(), False), (SystemExit(1), True), (KeyboardInterrupt(), True)],
)
async def test_an_attempt_ended_without_an_answer_is_recorded_without_a_status(
    tmp_path: Path, raised: BaseException, answered: bool
) -> None:
    """Nothing of the gateway's own answers it (no drain middleware; the process exiting)."""
    (record,) = await _attempt_outcome(tmp_path / "a.jsonl", raised, answered=answered)
    assert (record["outcome"], record["status"], record["problemType"]) == (
        "cancelled",
        None,
        None,
    )


async def test_a_cancelled_attempt_does_not_wait_for_the_file(tmp_path):
    """Its record is queued, not awaited: a stuck disk does not hold up the cancellation.

    `close` still writes it before the file closes.
    """
    trail, sink = await _stuck_trail(tmp_path / "d.jsonl", answered=True)
    audit = IssuanceAudit(trail, request_id="r2", caller=Caller(subject="app"), endpoint="/v1/dcc")
    entered = asyncio.Event()

    async def issue() -> None:
        async with audit.attempt():
            entered.set()
            await asyncio.Event().wait()  # the signer call the drain cancels

    task = asyncio.create_task(issue())
    await entered.wait()
    task.cancel()
    # The file write is stuck: the exit must not wait for it. (A timeout around the await
    # would not do: its cancellation is the CancelledError the block expects.)
    finished, _ = await asyncio.wait({task}, timeout=1)
    assert finished == {task}
    with pytest.raises(asyncio.CancelledError):
        await task
    sink.release.set()
    await trail.close()
    (line,) = (tmp_path / "d.jsonl").read_bytes().splitlines()
    assert orjson.loads(line)["outcome"] == "cancelled"


async def test_a_record_submitted_after_close_is_counted_not_raised(tmp_path):
    """A trail already closed refuses the record as a failed write, without raising."""
    metrics = GatewayMetrics()
    trail = await _open_trail(tmp_path / "e.jsonl", metrics=metrics)
    await trail.close()
    trail.submit({"n": 1})
    assert metrics.audit_write_failures._value.get() == 1


@pytest.mark.parametrize("late", ["written", "failed"])
async def test_a_write_past_its_timeout_is_counted_once_and_not_dropped(
    tmp_path: Path, late: str
) -> None:
    """The wait ends at `write_timeout` (False, counted); the write stays queued.

    Written later, the record is in the file; failing later, it is not counted a second time.
    """
    metrics = GatewayMetrics()
    trail, sink = await _stuck_trail(
        tmp_path / "f.jsonl", metrics=metrics, write_timeout=0.3, fail=late == "failed"
    )
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(5):
        assert await trail.write({"auditId": "a-1", "requestId": "late"}) is False
    assert 0.29 < loop.time() - began < 0.75  # at the timeout: neither before it nor long after
    assert metrics.audit_write_failures._value.get() == 1
    assert trail.snapshot()["pendingWrites"] == 1
    assert trail.snapshot()["timedOut"] == 1
    sink.release.set()
    await trail.close()
    assert trail.snapshot()["pendingWrites"] == 0
    assert metrics.audit_write_failures._value.get() == 1
    expected = {"late": [{"auditId": "a-1", "requestId": "late"}]} if late == "written" else {}
    assert records_by_request(tmp_path / "f.jsonl") == expected


async def test_closing_the_trail_lets_every_queued_record_reach_the_file(tmp_path: Path) -> None:
    """Pin that `close` waits for the records queued before it, one stalled on the disk too.

    Closing the file under them instead would lose each record still queued at shutdown.
    """
    path = tmp_path / "closing.jsonl"
    trail, sink = await _stuck_trail(path)
    for n in range(3):
        trail.queue({"auditId": f"a-{n}", "requestId": f"r-{n}"})
    await until(lambda: sink.started == 1)
    closing = asyncio.create_task(trail.close())
    await asyncio.sleep(0.1)
    assert not closing.done()
    sink.release.set()
    async with asyncio.timeout(5):
        await closing
    assert list(records_by_request(path)) == ["r-0", "r-1", "r-2"]


async def _attempt(audit: IssuanceAudit, raised: Exception | None) -> None:
    async with audit.attempt():
        if raised is not None:
            raise raised


@pytest.mark.parametrize(
    ("raised", "outcome"), [(None, "issued"), (SignerUnavailable("down"), "failed")]
)
async def test_an_attempt_cancelled_while_its_record_waits_is_recorded_as_cancelled(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    raised: Exception | None,
    outcome: str,
) -> None:
    """The drain cancels two attempts whose records wait on a stuck disk: both say cancelled.

    The one being written is followed by its `cancelled` record; the one still queued is
    written as `cancelled` instead. The cancellation does not wait for the disk, the audit
    log has the `cancelled` records at once, and every pending write is accounted for.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.audit")
    trail, sink = await _stuck_trail(tmp_path / "g.jsonl", answered=True)
    tasks = []
    for request_id in ("first", "second"):
        audit = IssuanceAudit(
            trail, request_id=request_id, caller=Caller(subject="app"), endpoint="/v1/dcc"
        )
        tasks.append(asyncio.create_task(_attempt(audit, raised)))
    await until(lambda: sink.started == 1 and trail.snapshot()["pendingWrites"] == 2)
    for task in tasks:
        task.cancel()
    finished, _ = await asyncio.wait(tasks, timeout=1)  # the disk is stuck: they must not wait
    assert finished == set(tasks)
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    logged = [r.__dict__["audit"] for r in caplog.records if r.name == "signing_gateway.audit"]
    assert sorted((r["requestId"], r["outcome"], r["status"]) for r in logged) == [
        ("first", "cancelled", 503),
        ("second", "cancelled", 503),
    ]
    sink.release.set()
    await trail.close()
    assert trail.snapshot()["pendingWrites"] == 0
    written = records_by_request(tmp_path / "g.jsonl")
    assert [r["outcome"] for r in written["first"]] == [outcome, "cancelled"]
    assert [r["outcome"] for r in written["second"]] == ["cancelled"]


async def test_a_withheld_credential_is_corrected_in_the_file_even_with_the_queue_full(
    tmp_path: Path,
) -> None:
    """A withheld credential's record is corrected in the file even when the queue is full.

    A stalled disk: the first record is being written, the second waits, and the queue
    (`max_pending` 2) is full when the first one's wait times out. Before, its `withheld`
    correction was refused as one write too many, and the file said `issued` for a
    credential the caller never got.
    """
    trail, sink = await _stuck_trail(tmp_path / "h.jsonl", max_pending=2, write_timeout=0.2)

    async def issue(request_id: str) -> int:
        audit = IssuanceAudit(
            trail, request_id=request_id, caller=Caller(subject="app"), endpoint="/v1/dcc"
        )
        with pytest.raises(AuditUnavailable) as refused:
            await _attempt(audit, None)
        return refused.value.status

    first = asyncio.create_task(issue("first"))
    await until(lambda: sink.started == 1)
    second = asyncio.create_task(issue("second"))
    async with asyncio.timeout(5):
        assert [await first, await second] == [503, 503]
    sink.release.set()
    await trail.close()
    written = records_by_request(tmp_path / "h.jsonl")
    assert {rid: records[-1]["outcome"] for rid, records in written.items()} == {
        "first": "withheld",
        "second": "withheld",
    }


async def test_failed_and_late_writes_are_logged_with_their_message_and_slug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that failed, and one that did not finish in time: each line says so in words."""
    caplog.set_level(logging.ERROR, logger="signing_gateway.security")
    failing, failing_sink = await _stuck_trail(tmp_path / "i.jsonl", fail=True)
    failing_sink.release.set()
    assert await failing.write({"n": 1}) is False
    await failing.close()
    late, late_sink = await _stuck_trail(tmp_path / "j.jsonl", write_timeout=0.05)
    assert await late.write({"n": 2}) is False
    late_sink.release.set()
    await late.close()
    records = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert [(r["event"], r["security_event"]) for r in records] == [
        ("audit record not written", "audit-write-failed"),
        ("audit record not written in time", "audit-write-timed-out"),
    ]


class FullDisk(AuditFile):
    """An audit file on a full disk: every append fails with ENOSPC."""

    def append(self, line: bytes) -> None:
        """Refuse `line` as the OS does when the disk is full."""
        del line  # none of it is written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def test_a_failed_write_is_logged_with_its_request_id_and_the_oss_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer thread's failure line names the request and what the OS said (ENOSPC)."""
    caplog.set_level(logging.ERROR, logger="signing_gateway.security")
    sink = await asyncio.to_thread(FullDisk, tmp_path / "k.jsonl")
    trail = AuditTrail(
        sink=sink, metrics=GatewayMetrics(), fail_closed=True, max_pending=8, write_timeout=30
    )
    token = request_id_var.set("audit-9")
    try:
        assert await trail.write({"requestId": "audit-9"}) is False
    finally:
        request_id_var.reset(token)
    await trail.close()
    [record] = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert record["event"] == "audit record not written"
    assert record["request_id"] == "audit-9"
    assert (record["error"], record["errno"]) == ("OSError", "ENOSPC")
    assert record["strerror"] == os.strerror(errno.ENOSPC)


@pytest.mark.parametrize("status", [None, 500, 503])
async def test_an_issued_answer_that_did_not_go_out_is_recorded_undelivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int | None
) -> None:
    """Told its answer did not get to the connection, an issued attempt records `undelivered`.

    After the `issued` record, under its `auditId` and time, with its items (the UVCI, kid and
    proof nobody got), in the file and the log, once however often it is told: the caller
    hung up (None), or an error or the drain's 503 went out instead. An `issued` record was
    all there was, for a certificate that reached nobody.
    """
    caplog.set_level(logging.INFO, logger="signing_gateway.audit")
    path = tmp_path / "u.jsonl"
    trail = await _open_trail(path)
    audit = IssuanceAudit(trail, request_id="r5", caller=Caller(subject="app"), endpoint="/v1/dcc")
    async with audit.attempt():
        audit.domestic("domestic", kind="domestic-static", proof_identifier="proof-5")
    audit.answered(status)
    audit.answered(status)
    await trail.close()
    issued, undelivered = records_by_request(path)["r5"]
    assert issued["outcome"] == "issued"
    assert undelivered == {**issued, "outcome": "undelivered", "status": None, "problemType": None}
    logged = [r for r in caplog.records if r.name == "signing_gateway.audit"]
    assert [r.__dict__["audit"] for r in logged] == [issued, undelivered]
    # Logged once the request has ended, out of its context: under its id all the same.
    assert [r.__dict__["request_id"] for r in logged] == ["r5", "r5"]


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (None, 200),
        (SignerUnavailable("down"), None),
        (DomainValidationError([FieldError(("dcc",), "bad")]), None),
        (RuntimeError("bug"), None),
    ],
)
async def test_a_delivered_or_unreleased_answer_gets_no_second_record(
    tmp_path: Path, raised: Exception | None, status: int | None
) -> None:
    """Pin that only a released credential's lost answer is recorded again.

    An issued answer that went out whole stays `issued`; an attempt that released nothing
    (failed, refused, error) says what it answered already, whether or not that got there.
    """
    path = tmp_path / "d.jsonl"
    trail = await _open_trail(path)
    audit = IssuanceAudit(trail, request_id="r6", caller=Caller(subject="app"), endpoint="/v1/dcc")
    with contextlib.suppress(type(raised) if raised is not None else ()):
        await _attempt(audit, raised)
    audit.answered(status)
    await trail.close()
    assert len(records_by_request(path)["r6"]) == 1


async def test_a_withheld_credential_whose_503_did_not_go_out_stays_withheld(
    tmp_path: Path,
) -> None:
    """Nothing was released: its `withheld` record, not an `undelivered` one, is the last.

    The `issued` record was being written when its wait timed out: `withheld` follows it.
    """
    trail, sink = await _stuck_trail(tmp_path / "w.jsonl", write_timeout=0.05)
    audit = IssuanceAudit(trail, request_id="r7", caller=Caller(subject="app"), endpoint="/v1/dcc")
    with pytest.raises(AuditUnavailable):
        await _attempt(audit, None)
    audit.answered(None)
    sink.release.set()
    await trail.close()
    written = records_by_request(tmp_path / "w.jsonl")["r7"]
    assert [r["outcome"] for r in written] == ["issued", "withheld"]
