"""A stalled audit disk for tests: an audit file whose writes wait until the test releases them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from signing_gateway.security import audit_trail
from signing_gateway.security.audit_file import AuditFile


class BlockingFile(AuditFile):
    """An audit file whose writes wait (in the writer thread) until `release` is set.

    `fail` makes a released write raise OSError instead, as a disk that gives up does.
    """

    def __init__(self, path: Path, *, fail: bool = False) -> None:
        """Open `path`; writes block until released."""
        super().__init__(path)
        self.release = threading.Event()
        self.fail = fail
        self.started = 0

    def append(self, line: bytes) -> None:
        """Wait for `release` (10 s at most, so a broken test cannot hang), then write."""
        self.started += 1
        self.release.wait(timeout=10)
        if self.fail:
            raise OSError("the disk gave up")
        super().append(line)


class StalledDisk:
    """The audit files a gateway opens while this is installed, each a `BlockingFile`."""

    def __init__(self) -> None:
        """No file opened yet."""
        self.files: list[BlockingFile] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Have every audit trail opened from now on write through a `BlockingFile`."""
        monkeypatch.setattr(audit_trail, "AuditFile", self.open)

    def open(self, path: Path) -> BlockingFile:
        """What `AuditTrail.open` calls instead of `AuditFile`."""
        self.files.append(BlockingFile(path))
        return self.files[-1]

    def release(self) -> None:
        """Let every write through, the blocked one and all that follow."""
        for file in self.files:
            file.release.set()


def records_by_attempt(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The audit file's records, in file order, grouped by attempt (`auditId`).

    The last record of an attempt is what its caller was answered (a correction follows
    the record it supersedes under the same `auditId`).
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        grouped.setdefault(record["auditId"], []).append(record)
    return grouped


def records_by_request(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The records of each attempt (`records_by_attempt`), by request id.

    For tests that give every attempt a request id of its own: two attempts under one
    request id, or a correction under an `auditId` other than its record's, fail here.
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    for records in records_by_attempt(path).values():
        request_id = records[0]["requestId"]
        assert request_id not in grouped, f"two attempts with request id {request_id}"
        assert all(record["requestId"] == request_id for record in records)
        grouped[request_id] = records
    return grouped
