"""The audit file's readiness probe: down while the file cannot take records, up once it can."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security import audit_file
from signing_gateway.security.audit_file import MIN_FREE_BYTES, AuditFile
from signing_gateway.security.audit_trail import AuditRecordsFailed, AuditTrail
from tests.support.audit import BlockingFile

DEV_FULL = Path("/dev/full")


def _trail(sink: AuditFile | None, *, write_timeout: float = 30.0) -> AuditTrail:
    return AuditTrail(
        sink=sink,
        metrics=GatewayMetrics(),
        fail_closed=True,
        max_pending=8,
        write_timeout=write_timeout,
    )


async def test_a_trail_without_a_file_and_a_writable_file_pass(tmp_path: Path) -> None:
    """No file: nothing to look at. A file that takes records passes, before and after one."""
    await _trail(None).probe()
    trail = _trail(AuditFile(tmp_path / "audit.jsonl"))
    try:
        await trail.probe()
        assert await trail.append({"n": 1})
        await trail.probe()
    finally:
        await trail.close()


async def _refused_twice(tmp_path: Path) -> AuditTrail:
    """/dev/full refuses each write (ENOSPC) while its file system has room: only records tell."""
    trail = _trail(AuditFile(DEV_FULL))
    await trail.probe()
    assert not await trail.append({"n": 1})
    assert not await trail.append({"n": 2})
    return trail


async def _timed_out_once(tmp_path: Path) -> AuditTrail:
    """A record not written in time counts as failed, though it is written later."""
    sink = BlockingFile(tmp_path / "audit.jsonl")
    trail = _trail(sink, write_timeout=0.05)
    assert not await trail.append({"n": 1})
    sink.release.set()
    return trail


@pytest.mark.parametrize(
    ("failing", "count"), [(_refused_twice, 2), (_timed_out_once, 1)], ids=["refused", "timed-out"]
)
async def test_failed_records_fail_the_next_probe_only(
    tmp_path: Path, failing: Callable[[Path], Awaitable[AuditTrail]], count: int
) -> None:
    """Records that failed fail the next probe, and only it: with none since, it passes.

    Once no records come (the gateway out of service), the look after says up again.
    """
    trail = await failing(tmp_path)
    try:
        with pytest.raises(AuditRecordsFailed, match=rf"^{count} audit records not written"):
            await trail.probe()
        await trail.probe()
    finally:
        await trail.close()


async def test_a_stalled_write_holds_the_probe_past_its_timeout(tmp_path: Path) -> None:
    """The check queues behind the stalled record: the prober's timeout says down."""
    sink = BlockingFile(tmp_path / "audit.jsonl")
    trail = _trail(sink)
    try:
        queued = trail.queue({"n": 1})
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await trail.probe()
        sink.release.set()
        assert await trail.written(queued)
        await trail.probe()
    finally:
        sink.release.set()
        await trail.close()


async def test_a_path_that_cannot_be_opened_again_fails_the_probe_until_it_can(
    tmp_path: Path,
) -> None:
    """The folder deleted: the path cannot be opened; made again, the next look opens it."""
    folder = tmp_path / "audit"
    folder.mkdir()
    trail = _trail(AuditFile(folder / "audit.jsonl"))
    try:
        shutil.rmtree(folder)
        with pytest.raises(FileNotFoundError):
            await trail.probe()
        folder.mkdir()
        await trail.probe()
        assert await trail.append({"n": 1})
        assert (folder / "audit.jsonl").read_bytes() == b'{"n":1}\n'
    finally:
        await trail.close()


@pytest.mark.parametrize(
    ("free_blocks", "flags", "code"),
    [
        (MIN_FREE_BYTES // 4096 - 1, 0, errno.ENOSPC),
        (15, 0, errno.ENOSPC),  # 60 KiB: below the 64 KiB the operations guide gives
        (10**6, os.ST_RDONLY, errno.EROFS),
    ],
    ids=["nearly-full", "below-64-kib", "read-only"],
)
async def test_a_file_system_that_cannot_take_records_fails_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free_blocks: int, flags: int, code: int
) -> None:
    """Less than MIN_FREE_BYTES free, or read-only: down with the errno a write would get."""
    trail = _trail(AuditFile(tmp_path / "audit.jsonl"))
    real = os.statvfs(tmp_path)
    fields = list(real)
    fields[1], fields[4], fields[8] = 4096, free_blocks, flags  # f_frsize, f_bavail, f_flag
    looks = []

    def fstatvfs(fd: int) -> os.statvfs_result:
        looks.append(fd)
        return os.statvfs_result(fields)

    monkeypatch.setattr(audit_file.os, "fstatvfs", fstatvfs)
    try:
        with pytest.raises(OSError) as raised:
            await trail.probe()
        assert raised.value.errno == code
        assert looks
        fields[4], fields[8] = MIN_FREE_BYTES // 4096, 0
        await trail.probe()
    finally:
        await trail.close()
