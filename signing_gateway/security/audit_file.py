"""The audit trail's file: append-only JSON lines, each one whole, at the path as it is now.

`AuditTrail` (`security/audit_trail.py`) hands it one line at a time from its writer thread.
A line the OS took only in part stays a line of its own, and a file moved away or deleted
under the gateway is followed to its path. The readiness probe asks it whether a record
could be appended now (`check`).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO

#: Free space below which the readiness probe says the audit file cannot take records: room
#: for a hundred-odd records, so a disk about to fill is out of service before it refuses one.
MIN_FREE_BYTES = 64 * 1024


class AuditFile:
    """An append-only JSON-lines file, written by one thread at a time.

    Other processes may append to the same file (`serve --workers N`: an `AuditFile` in each
    worker, one path). A line the OS took in part before failing (a disk filling up: ENOSPC;
    a file size limit: EFBIG) stays in the file whoever wrote it, so before each line the
    file's last byte is read: when it is not a line break, the line starts with one, and the
    part left behind is a line of its own instead of swallowing the record (`_ends_mid_line`).

    The records go to the file the path names: moved away (rotated by renaming, logrotate's
    `create`) or deleted while the gateway runs, the path is opened again before the next
    record, rather than that record going to the renamed file, or to a deleted one that
    nobody will read while the write counts as done (`_follow_path`).
    """

    def __init__(self, path: Path) -> None:
        """Open `path` for appending (sync: call from start-up code, in a thread)."""
        self.path = path
        self._file, self._reader, self._identity = _open_for_appending(path)
        # This process's own line the OS took in part: all that is known of a file that cannot
        # be read (a FIFO, a device, a write-only file).
        self._torn = False

    def append(self, line: bytes) -> None:
        """Hand one whole line to the OS; raise OSError when it cannot take it.

        Runs on the writer thread: looking up the path and reading the file's end cost a stat,
        an lseek and a one-byte pread (a few microseconds), and an error there fails the
        write: the record could not be told apart from a part left before it, or the path
        could not be opened again.
        """
        self._follow_path()
        torn = self._torn if self._reader is None else _ends_mid_line(self._reader)
        view = memoryview(b"\n" + line if torn else line)
        whole = len(view)
        try:
            while view:
                view = view[self._write(view) :]
        finally:
            if not view:
                self._torn = False
            elif len(view) < whole:  # part of it taken, then a failure: the part stays
                self._torn = True

    def _write(self, view: memoryview) -> int:
        written = self._file.write(view)
        if not written:
            raise OSError("the audit file accepted no bytes")
        return written

    def _follow_path(self) -> None:
        """Open the path again when it no longer names the file held open (moved, deleted).

        Raises:
            OSError: the path cannot be opened (its directory gone, say); the next record
                tries again.
        """
        try:
            status = self.path.stat()
        except (FileNotFoundError, NotADirectoryError):
            status = None
        except OSError:
            return  # cannot look (a directory no longer searchable): the file held open stays
        if status is not None and (status.st_dev, status.st_ino) == self._identity:
            return
        opened = _open_for_appending(self.path)
        self.close()
        self._file, self._reader, self._identity = opened
        self._torn = False  # a part a failed write left stays in the old file

    def check(self) -> None:
        """Raise OSError when a record could not be appended now (writer thread).

        The path is followed as before a record (`_follow_path`), then its file system is
        asked: read-only (EROFS) or with less than `MIN_FREE_BYTES` free to this process
        (ENOSPC). What only a write can tell (EIO, a quota) shows as the records it fails.
        """
        self._follow_path()
        space = os.fstatvfs(self._file.fileno())
        if space.f_flag & os.ST_RDONLY:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if space.f_bavail * space.f_frsize < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        """Close the file."""
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        self._file.close()


def _open_for_appending(path: Path) -> tuple[IO[bytes], int | None, tuple[int, int]]:
    """`path` open for appending, a descriptor reading it (`_reader_of`), and which file it is.

    Unbuffered: a failed write must not leave half a record behind to be flushed later.
    Opened as ever (write-only, created 0o666 less the umask, a FIFO waiting for its reader):
    reading is a descriptor of its own, where it is safe.
    """
    file = path.open("ab", buffering=0)
    try:
        status = os.fstat(file.fileno())
        return file, _reader_of(path, status), (status.st_dev, status.st_ino)
    except BaseException:
        file.close()
        raise


def _reader_of(path: Path, status: os.stat_result) -> int | None:
    """A descriptor reading the file open for appending, of `status`; None when there is none.

    Only a regular file is read: a FIFO opened for reading would keep its writes from failing
    once its own reader is gone, and a device may act on being opened. A file this process
    may not read (write-only, as an operator may set one up) has none either: its own torn
    lines are then all the writer knows of. The descriptor must be of the same file (not one
    that took its path meanwhile), and is opened without waiting, in case that is a FIFO.
    """
    if not stat.S_ISREG(status.st_mode):
        return None
    try:
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        seen = os.fstat(reader)
    except OSError:
        seen = None
    if seen is None or (seen.st_dev, seen.st_ino) != (status.st_dev, status.st_ino):
        os.close(reader)
        return None
    return reader


def _ends_mid_line(reader: int) -> bool:
    """Whether the regular file open for reading as `reader` ends mid-line (in no line break).

    Read right before a line is written, on the writer thread: the part a writer left, in this
    process or another, now or before a restart, is seen. Not covered: a line of another
    process that the OS cuts between this read and the write that follows. That takes the disk
    filling up (or that process's file size limit being reached) within those microseconds and
    room again for this write at once; a lock that every writer takes around both would close
    it. A file emptied between the two (`copytruncate`) reads nothing and ends no line.
    """
    size = os.lseek(reader, 0, os.SEEK_END)  # the reader's own offset: `pread` ignores it
    return size > 0 and os.pread(reader, 1, size - 1) not in (b"\n", b"")
