"""The audit file: whole lines, even after a write the disk cut short."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import orjson

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit_trail import AuditFile, AuditTrail

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
