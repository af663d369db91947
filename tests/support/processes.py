"""What every test-started server process shares: reading its log and stopping it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import IO


def read_log(log_file: IO[bytes]) -> str:
    """Everything the process wrote to `log_file` so far."""
    log_file.flush()
    return Path(log_file.name).read_text(errors="replace")


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to `timeout` seconds, then SIGKILL; return the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode
