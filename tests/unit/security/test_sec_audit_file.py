"""The audit file and its writer: whole lines, in order, appended, nothing lost unsaid."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit_file import AuditFile
from signing_gateway.security.audit_trail import AuditTrail
from tests.support.audit import BlockingFile
from tests.support.logs import as_written
from tests.support.polling import until

REPO = Path(__file__).resolve().parents[3]

#: Long enough never to end a test's wait on a healthy write.
NO_TIMEOUT = 30.0


def _trail(sink: AuditFile, *, metrics: GatewayMetrics | None = None) -> AuditTrail:
    return AuditTrail(
        sink=sink,
        metrics=metrics or GatewayMetrics(),
        fail_closed=True,
        max_pending=8,
        write_timeout=NO_TIMEOUT,
    )


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


class _RawFile:
    """Stands in for the OS file under an `AuditFile`: takes `per_write` bytes a call at most.

    `room` bytes in all, then every write fails as a full disk's does (ENOSPC), until the
    test frees room again. `calls` counts the writes, and a write loop that never ends
    fails the test instead of hanging it.
    """

    def __init__(self, real: object, *, per_write: int, room: int | None = None) -> None:
        self.real = real
        self.per_write = per_write
        self.room = room
        self.calls = 0

    def write(self, data: memoryview) -> int:
        self.calls += 1
        assert self.calls < 1000, "the write loop does not end"
        take = min(len(data), self.per_write)
        if self.room is not None:
            if self.room == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            take = min(take, self.room)
            self.room -= take
        written: int = self.real.write(data[:take])  # type: ignore[attr-defined]
        return written

    def close(self) -> None:
        self.real.close()  # type: ignore[attr-defined]


def _sink(path: Path, *, per_write: int, room: int | None = None) -> tuple[AuditFile, _RawFile]:
    sink = AuditFile(path)
    raw = _RawFile(sink._file, per_write=per_write, room=room)
    sink._file = raw  # type: ignore[assignment]
    return sink, raw


def test_a_line_the_os_takes_in_parts_is_written_whole(tmp_path: Path) -> None:
    """Pin that a short write is followed by the rest of the line, not taken as the whole."""
    path = tmp_path / "parts.jsonl"
    sink, raw = _sink(path, per_write=5)
    line = orjson.dumps({"auditId": "a-1", "outcome": "issued"}) + b"\n"
    sink.append(line)
    sink.close()
    assert path.read_bytes() == line
    assert raw.calls == -(-len(line) // 5)


def test_a_file_that_accepts_no_bytes_fails_the_write(tmp_path: Path) -> None:
    """Pin that a write taking nothing is a failed write (OSError), never a loop without end."""
    sink, _ = _sink(tmp_path / "none.jsonl", per_write=0)
    with pytest.raises(OSError, match="accepted no bytes"):
        sink.append(b"{}\n")
    sink.close()


def test_the_file_is_appended_to_and_each_line_reaches_it_at_once(tmp_path: Path) -> None:
    """Pin that opening keeps the records already there (a restart) and writes unbuffered.

    Each appended line is in the file when `append` returns: nothing waits in a buffer for
    a later flush that a crash would lose.
    """
    path = tmp_path / "kept.jsonl"
    path.write_bytes(b'{"auditId":"before-restart"}\n')
    sink = AuditFile(path)
    try:
        sink.append(b'{"auditId":"after-restart"}\n')
        assert _lines(path) == [b'{"auditId":"before-restart"}', b'{"auditId":"after-restart"}']
    finally:
        sink.close()


async def test_a_record_the_disk_cut_short_leaves_the_next_ones_whole(tmp_path: Path) -> None:
    """A write the OS took in part before failing does not take the next record with it.

    The disk fills up in the middle of a record (the OS takes part of it, then ENOSPC): that
    write fails, counted. Once there is room again, the next record is reported written and
    the credential released on it, so it must be a line of its own. Before, it was appended
    to the half line left behind, and the file held no readable record of it.
    """
    path = tmp_path / "torn.jsonl"
    metrics = GatewayMetrics()
    first = orjson.dumps({"auditId": "a-1"}) + b"\n"
    sink, raw = _sink(path, per_write=1 << 20, room=len(first) + 8)
    trail = _trail(sink, metrics=metrics)
    assert await trail.append({"auditId": "a-1"})
    assert await trail.append({"auditId": "a-2", "outcome": "issued"}) is False
    raw.room = None  # room again
    assert await trail.append({"auditId": "a-3", "outcome": "issued"})
    assert await trail.append({"auditId": "a-4", "outcome": "issued"})
    await trail.close()
    assert metrics.audit_write_failures._value.get() == 1
    readable = []
    for line in _lines(path):
        try:
            readable.append(orjson.loads(line)["auditId"])
        except orjson.JSONDecodeError:
            assert line == (orjson.dumps({"auditId": "a-2", "outcome": "issued"}))[:8]
    assert readable == ["a-1", "a-3", "a-4"]


def test_a_record_cut_short_before_a_restart_leaves_the_first_one_after_it_whole(
    tmp_path: Path,
) -> None:
    """The file ends in the part of a line the OS took before the gateway stopped.

    The first record after the restart is a line of its own; before, it was appended to that
    part and could not be read.
    """
    path = tmp_path / "restart.jsonl"
    path.write_bytes(b'{"auditId":"a-1"}\n{"auditId":"a-')
    sink = AuditFile(path)
    sink.append(b'{"auditId":"b-1"}\n')
    sink.append(b'{"auditId":"b-2"}\n')
    sink.close()
    assert _lines(path) == [
        b'{"auditId":"a-1"}',
        b'{"auditId":"a-',
        b'{"auditId":"b-1"}',
        b'{"auditId":"b-2"}',
    ]


def test_a_record_another_writer_tore_does_not_swallow_the_next_one(tmp_path: Path) -> None:
    """Two writers on one file (`serve --workers N`): one's torn line is seen by the other.

    The second writer's write is cut short (the OS takes part of it, then ENOSPC): that
    write fails, counted where it was made. The first writer, opened before, knows nothing of
    it; its next record is reported written and its credential released, so it must be a line
    of its own. Before, it was appended to the part the other writer left behind.
    """
    path = tmp_path / "workers.jsonl"
    first = AuditFile(path)
    second, _ = _sink(path, per_write=1 << 20, room=8)
    torn = orjson.dumps({"auditId": "b-7", "outcome": "issued"}) + b"\n"
    with pytest.raises(OSError, match="No space left"):
        second.append(torn)
    first.append(b'{"auditId":"a-1"}\n')
    first.append(b'{"auditId":"a-2"}\n')
    first.close()
    second.close()
    assert _lines(path) == [torn[:8], b'{"auditId":"a-1"}', b'{"auditId":"a-2"}']


#: Run in a process of its own: opens the audit file, lowers its file size limit to end
#: mid-line, and appends a record (the OS takes part of it, then EFBIG); prints the errno.
_TEAR_IN_ANOTHER_PROCESS = """
import resource, sys
from pathlib import Path
from signing_gateway.security.audit_file import AuditFile

sink = AuditFile(Path(sys.argv[1]))
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), hard))
try:
    sink.append(sys.argv[3].encode() + b"\\n")
except OSError as exc:
    print(exc.errno)
"""


def test_a_record_another_process_tore_does_not_swallow_the_next_one(tmp_path: Path) -> None:
    """The same across processes, the OS cutting the line: a file size limit (RLIMIT_FSIZE).

    The other process's limit lies mid-line: the OS takes the record up to it and then fails
    the write (EFBIG). This process had opened the file before; its next record is a line
    of its own.
    """
    path = tmp_path / "processes.jsonl"
    path.write_bytes(b'{"auditId":"a-1"}\n')
    sink = AuditFile(path)
    torn = b'{"auditId":"b-7","outcome":"issued"}'
    limit = path.stat().st_size + 8
    child = subprocess.run(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", _TEAR_IN_ANOTHER_PROCESS, str(path), str(limit), torn.decode()],
        capture_output=True,
        cwd=REPO,
        check=True,
        timeout=60,
    )
    assert child.stdout.split() == [str(errno.EFBIG).encode()]
    sink.append(b'{"auditId":"a-2"}\n')
    sink.close()
    assert _lines(path) == [b'{"auditId":"a-1"}', torn[:8], b'{"auditId":"a-2"}']


def test_records_follow_the_path_when_the_file_is_moved_away_or_deleted(tmp_path: Path) -> None:
    """Pin that the audit file is the one its path names, rotated or deleted while running.

    Before, the file held open took every record: moved away (logrotate's default `create`
    rotation) it took them under its new name, and deleted (the rotated copy compressed and
    removed) nobody could ever read them, while each write counted as done and the
    credential was released.
    """
    path = tmp_path / "audit.jsonl"
    rotated = tmp_path / "audit.jsonl.1"
    sink = AuditFile(path)
    try:
        sink.append(b'{"auditId":"a-1"}\n')
        path.rename(rotated)
        sink.append(b'{"auditId":"a-2"}\n')
        assert _lines(path) == [b'{"auditId":"a-2"}']
        path.unlink()
        sink.append(b'{"auditId":"a-3"}\n')
    finally:
        sink.close()
    assert _lines(rotated) == [b'{"auditId":"a-1"}']
    assert _lines(path) == [b'{"auditId":"a-3"}']


def test_a_path_that_cannot_be_opened_again_fails_the_write_until_it_can(tmp_path: Path) -> None:
    """Pin that a record whose path is gone for good is a failed write, not one to a lost file.

    The next record tries the path again, and is written once it can be opened.
    """
    directory = tmp_path / "audit"
    directory.mkdir()
    path = directory / "audit.jsonl"
    sink = AuditFile(path)
    try:
        path.unlink()
        directory.rmdir()
        with pytest.raises(FileNotFoundError):
            sink.append(b'{"auditId":"a-1"}\n')
        directory.mkdir()
        sink.append(b'{"auditId":"a-2"}\n')
    finally:
        sink.close()
    assert _lines(path) == [b'{"auditId":"a-2"}']


def test_a_path_that_cannot_be_looked_up_leaves_the_record_to_the_file_held_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin that a folder the gateway can no longer search fails no record: the open file takes it.

    The path cannot be looked up, so whether it still names that file is unknown, and
    opening it again would fail as well. Root searches any folder: the look-up and the open
    are refused here as they are to any other user.
    """
    path = tmp_path / "audit.jsonl"
    sink = AuditFile(path)

    def refused_for_path(real: Callable[..., Any]) -> Callable[..., Any]:
        def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self == path:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real(self, *args, **kwargs)

        return refuse

    monkeypatch.setattr(Path, "stat", refused_for_path(Path.stat))
    monkeypatch.setattr(Path, "open", refused_for_path(Path.open))
    try:
        sink.append(b'{"auditId":"a-1"}\n')
    finally:
        sink.close()
        monkeypatch.undo()
    assert _lines(path) == [b'{"auditId":"a-1"}']


def test_a_new_audit_file_is_created_with_the_umask_mode(tmp_path: Path) -> None:
    """Pin the mode of an audit file the gateway creates: 0o666 less the process's umask."""
    path = tmp_path / "created.jsonl"
    umask = os.umask(0o027)
    try:
        AuditFile(path).close()
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def _refuse_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Have opening `path` for reading refused, as for a write-only file (root reads it anyway)."""
    real_open = os.open

    def refuse_reading(file: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(file) == path and flags & os.O_ACCMODE == os.O_RDONLY:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", refuse_reading)


def _second_of_three_refused(monkeypatch: pytest.MonkeyPatch, path: Path, *, taken: int) -> None:
    """Append records a-1 to a-3 to `path`, which the gateway may not read: a-2 fails.

    The disk fills up (ENOSPC) once the OS has taken `taken` bytes of a-2.
    """
    _refuse_reading(monkeypatch, path)
    first = orjson.dumps({"auditId": "a-1"}) + b"\n"
    sink, raw = _sink(path, per_write=1 << 20, room=len(first) + taken)
    sink.append(first)
    with pytest.raises(OSError, match="No space left"):
        sink.append(b'{"auditId":"a-2","outcome":"issued"}\n')
    raw.room = None
    sink.append(b'{"auditId":"a-3"}\n')
    sink.close()
    monkeypatch.undo()


def test_a_write_only_audit_file_is_appended_to_and_knows_its_own_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin a file the gateway may write but not read, as an operator may set one up.

    It is appended to as ever, its mode untouched; its end cannot be read, so only this
    process's own torn line starts the next one with a line break. The OS lets root read
    such a file all the same: reading it is refused here as it is to any other user.
    """
    path = tmp_path / "write-only.jsonl"
    path.touch(mode=0o200)
    path.chmod(0o200)
    _second_of_three_refused(monkeypatch, path, taken=8)
    assert stat.S_IMODE(path.stat().st_mode) == 0o200
    path.chmod(0o600)  # for the test to read it
    assert _lines(path) == [b'{"auditId":"a-1"}', b'{"auditI', b'{"auditId":"a-3"}']


def test_a_write_that_took_nothing_starts_no_line_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin that a record refused whole (ENOSPC before any byte) leaves no blank line behind.

    Only a part the OS took is a torn line: in a file the gateway cannot read, the record
    after one refused whole starts where that one would have, with no line break before it.
    """
    path = tmp_path / "unreadable.jsonl"
    _second_of_three_refused(monkeypatch, path, taken=0)
    assert _lines(path) == [b'{"auditId":"a-1"}', b'{"auditId":"a-3"}']


def test_a_fifo_audit_file_gets_each_line_and_is_never_read_by_the_gateway(
    tmp_path: Path,
) -> None:
    """Pin a FIFO as the audit file (a log shipper reading it): each line reaches the reader.

    The gateway holds no reading end of it: once the reader is gone, a write fails (EPIPE),
    counted and answered as a failed write, instead of filling the pipe and then stalling.
    """
    path = tmp_path / "audit.pipe"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = AuditFile(path)
        sink.append(b'{"auditId":"a-1"}\n')
        assert os.read(reader, 1024) == b'{"auditId":"a-1"}\n'
    finally:
        os.close(reader)
    with pytest.raises(BrokenPipeError):
        sink.append(b'{"auditId":"a-2"}\n')
    sink.close()


def test_a_device_as_the_audit_file_takes_each_line() -> None:
    """Pin a character device as the audit file (here the null device): lines are taken."""
    sink = AuditFile(Path(os.devnull))
    sink.append(b'{"auditId":"a-1"}\n')
    sink.append(b'{"auditId":"a-2"}\n')
    sink.close()


class _FirstWriteStalls(BlockingFile):
    """A `BlockingFile` whose first write only waits (and fails, with `fail`); the rest do not."""

    def append(self, line: bytes) -> None:
        if self.started == 0:
            super().append(line)
        else:
            self.started += 1
            AuditFile.append(self, line)


async def test_records_reach_the_file_in_the_order_they_were_queued(tmp_path: Path) -> None:
    """Pin one writer: records behind a stalled write wait for it, never overtake it.

    A correction is queued after the record it corrects; written before it, the file's
    last record of that attempt would be the wrong one.
    """
    path = tmp_path / "order.jsonl"
    sink = await asyncio.to_thread(_FirstWriteStalls, path)
    trail = _trail(sink)
    queued = [trail.queue({"n": n}) for n in range(4)]
    await until(lambda: sink.started == 1)
    await asyncio.sleep(0.05)  # room for a second writer, were there one, to overtake it
    sink.release.set()
    assert [await trail.written(q) for q in queued] == [True] * 4
    await trail.close()
    assert [orjson.loads(line)["n"] for line in _lines(path)] == [0, 1, 2, 3]


async def test_a_record_whose_write_failed_gets_no_correction_in_the_file(tmp_path: Path) -> None:
    """Pin that nothing corrects a record the file never got: a correction alone says nothing.

    The write was taken, then failed; the answer then changed (`supersede`): the file holds
    neither, and no write is left pending.
    """
    path = tmp_path / "failed.jsonl"
    sink = await asyncio.to_thread(partial(_FirstWriteStalls, path, fail=True))
    trail = _trail(sink)
    queued = trail.queue({"auditId": "a-1", "outcome": "issued"})
    await until(lambda: sink.started == 1)
    sink.release.set()
    assert await trail.written(queued) is False
    trail.supersede(queued, {"auditId": "a-1", "outcome": "withheld"})
    await trail.close()
    assert _lines(path) == []
    assert trail.snapshot()["pendingWrites"] == 0


async def test_closing_the_trail_ends_its_writer_thread(tmp_path: Path) -> None:
    """Closed, the trail's writer thread ends once its records are written: none is left behind.

    A thread left waiting for calls that never come would outlive its trail, one more for each
    app started in the process (each test's, each restart of the lifespan).
    """
    trail = await AuditTrail.open(
        tmp_path / "ends.jsonl",
        metrics=GatewayMetrics(),
        fail_closed=True,
        max_pending=8,
        write_timeout=NO_TIMEOUT,
    )
    assert trail._writer is not None
    thread = trail._writer._thread
    assert await trail.write({"n": 1}) is True
    await trail.close()
    await until(lambda: not thread.is_alive())
    assert [orjson.loads(line)["n"] for line in _lines(tmp_path / "ends.jsonl")] == [1]


async def test_a_closed_trail_refuses_a_write_and_keeps_no_pending_count(tmp_path: Path) -> None:
    """Pin that a record after `close` is a failed write (False, counted), never pending."""
    metrics = GatewayMetrics()
    trail = await AuditTrail.open(
        tmp_path / "closed.jsonl",
        metrics=metrics,
        fail_closed=True,
        max_pending=8,
        write_timeout=NO_TIMEOUT,
    )
    await trail.close()
    assert await trail.write({"n": 1}) is False
    assert metrics.audit_write_failures._value.get() == 1
    assert trail.snapshot()["pendingWrites"] == 0


async def test_the_readiness_view_shows_no_write_under_way_once_it_is_done(
    tmp_path: Path,
) -> None:
    """Pin `writeInProgressSeconds`: a figure while a write is stuck, null again after it."""
    path = tmp_path / "ready.jsonl"
    sink = await asyncio.to_thread(BlockingFile, path)
    trail = _trail(sink)
    queued = trail.queue({"n": 1})
    await until(lambda: sink.started == 1)
    stuck = trail.snapshot()
    sink.release.set()
    assert await trail.written(queued)
    done = trail.snapshot()
    await trail.close()
    assert (stuck["file"], stuck["pendingWrites"]) == (True, 1)
    assert stuck["writeInProgressSeconds"] >= 0
    assert (done["pendingWrites"], done["writeInProgressSeconds"]) == (0, None)


async def test_a_full_queue_is_logged_in_words_without_an_errno_or_a_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pin the failure line of the trail's own refusal: `strerror` says which, no `errno`.

    Outside a request nothing names one: the line has no `request_id` rather than a
    placeholder.
    """
    caplog.set_level(logging.ERROR, logger="signing_gateway.security")
    path = tmp_path / "full.jsonl"
    sink = await asyncio.to_thread(BlockingFile, path)
    trail = AuditTrail(
        sink=sink, metrics=GatewayMetrics(), fail_closed=True, max_pending=1, write_timeout=30
    )
    queued = trail.queue({"n": 1})
    assert await trail.append({"n": 2}) is False
    sink.release.set()
    assert await trail.written(queued)
    await trail.close()
    [record] = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert record["event"] == "audit record not written"
    assert (record["error"], record["strerror"]) == ("OSError", "too many audit writes pending")
    assert "errno" not in record
    assert "request_id" not in record


async def test_a_write_done_after_its_wait_timed_out_wakes_nobody_twice(tmp_path: Path) -> None:
    """Pin that the writer waking a wait its timer already ended is no error on the loop."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        sink = await asyncio.to_thread(BlockingFile, tmp_path / "late.jsonl")
        trail = AuditTrail(
            sink=sink, metrics=GatewayMetrics(), fail_closed=True, max_pending=8, write_timeout=0.05
        )
        assert await trail.append({"n": 1}) is False
        sink.release.set()
        await trail.close()
        for _ in range(5):  # the writer's wake-up, handed to the loop, runs
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert errors == []
    assert _lines(tmp_path / "late.jsonl") == [b'{"n":1}']


def test_a_reader_that_cannot_be_checked_is_closed_and_the_file_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin that a failed `fstat` of the read descriptor closes it, not leaks it.

    The file then goes without reading its end, as a write-only one does: lines still arrive.
    """
    path = tmp_path / "audit.jsonl"
    path.touch()
    real_fstat, calls = os.fstat, []

    def fstat(fd: int) -> os.stat_result:
        calls.append(fd)
        if len(calls) == 2:  # the first is the append descriptor's
            raise OSError(errno.EIO, "I/O error")
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", fstat)
    audit = AuditFile(path)
    monkeypatch.undo()
    try:
        reader = calls[1]
        assert reader != audit._file.fileno()
        with pytest.raises(OSError) as closed:
            os.fstat(reader)
        assert closed.value.errno == errno.EBADF
        audit.append(b'{"auditId":"a-1"}\n')
    finally:
        audit.close()
    assert path.read_bytes() == b'{"auditId":"a-1"}\n'


async def _three_records_on_a_stalled_disk(
    tmp_path: Path, *, write_timeout: float
) -> tuple[AuditTrail, BlockingFile]:
    """A trail whose file stalls its writes, with three records queued, the first being written."""
    sink = await asyncio.to_thread(BlockingFile, tmp_path / "stalled.jsonl")
    trail = AuditTrail(
        sink=sink, metrics=GatewayMetrics(), fail_closed=True, max_pending=8,
        write_timeout=write_timeout,
    )  # fmt: skip
    for n in range(3):
        trail.submit({"n": n})
    await until(lambda: sink.started == 1)
    return trail, sink


async def test_closing_on_a_stalled_disk_gives_up_after_the_write_timeout_and_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Close waits `write_timeout` for the queued records, then logs how many it left.

    The writes are not dropped: a disk that comes back still gets them. Before, close
    waited for the stalled write with no bound, and shutdown never ended.
    """
    caplog.set_level(logging.ERROR, logger="signing_gateway.security")
    trail, sink = await _three_records_on_a_stalled_disk(tmp_path, write_timeout=0.1)
    try:
        async with asyncio.timeout(5):
            await trail.close()
            await trail.close()  # again: nothing more to wait for, nothing more to say
    finally:
        sink.release.set()
    [record] = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert (record["level"], record["event"]) == ("error", "audit records not written at shutdown")
    assert (record["security_event"], record["records"]) == ("audit-records-left", 3)
    assert record["timeout_seconds"] == 0.1
    await until(lambda: sink._file.closed)  # given up on, the writer closes it after them
    assert [orjson.loads(line)["n"] for line in _lines(sink.path)] == [0, 1, 2]


async def test_a_cancelled_close_says_how_many_records_it_left_and_still_closes_after_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Close cancelled while records wait on a stalled disk: they are logged as left.

    The file is still closed once they are written. Before, a cancelled close logged
    nothing (the records were lost unsaid if the process then ended), and its cancellation
    reached the file's queued close, which never ran.
    """
    caplog.set_level(logging.ERROR, logger="signing_gateway.security")
    trail, sink = await _three_records_on_a_stalled_disk(tmp_path, write_timeout=5.0)
    closing = asyncio.create_task(trail.close())
    try:
        await until(lambda: trail._writer is not None and trail._writer._stopped)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    finally:
        sink.release.set()
    left = as_written(r for r in caplog.records if r.name == "signing_gateway.security")
    assert [(r["security_event"], r["records"]) for r in left] == [("audit-records-left", 3)], (
        "a cancelled close said nothing of the records it left"
    )
    await until(lambda: sink._file.closed)
    assert [orjson.loads(line)["n"] for line in _lines(sink.path)] == [0, 1, 2]


class _CloseFails(AuditFile):
    """An audit file whose close fails as a network file system's may (EIO), once closed."""

    def close(self) -> None:
        """Close, then say the close failed."""
        super().close()
        raise OSError(errno.EIO, os.strerror(errno.EIO))


async def test_a_file_that_fails_to_close_fails_the_trails_close(tmp_path: Path) -> None:
    """What closing the file raised on the writer thread is raised by `close`, not dropped."""
    sink = await asyncio.to_thread(_CloseFails, tmp_path / "audit.jsonl")
    trail = AuditTrail(
        sink=sink, metrics=GatewayMetrics(), fail_closed=True, max_pending=8, write_timeout=5.0
    )
    with pytest.raises(OSError) as raised:
        await trail.close()
    assert raised.value.errno == errno.EIO


_STALL_ON_A_FIFO = """
import asyncio, os, sys
from pathlib import Path
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit_trail import AuditTrail

async def main(path):
    os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    trail = await AuditTrail.open(
        Path(path), metrics=GatewayMetrics(), fail_closed=True, max_pending=8, write_timeout=0.2
    )
    trail.submit({"padding": "x" * 200_000})  # more than the pipe holds: the write stalls
    trail.submit({"n": 2})
    await trail.close()
    print("closed", flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_a_write_stalled_for_good_does_not_keep_the_process_from_ending(tmp_path: Path) -> None:
    """A FIFO whose reader stopped reading: close gives up and the process still exits.

    The writer thread stays stuck in the write; it must not be one the interpreter joins
    at exit.
    """
    path = tmp_path / "audit.fifo"
    os.mkfifo(path)
    child = subprocess.run(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", _STALL_ON_A_FIFO, str(path)],
        capture_output=True,
        cwd=REPO,
        check=False,
        timeout=30,
    )
    assert (child.returncode, child.stdout) == (0, b"closed\n"), child.stderr.decode()
    assert b"audit records not written at shutdown" in child.stderr
