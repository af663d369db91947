"""What every test-started process shares: running it, reading its log and stopping it."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


def run_python(code: str, *, timeout: float, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run Python `code` with only these SIGNING_GATEWAY_* variables set (named without it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_GATEWAY_")}
    env.update({f"SIGNING_GATEWAY_{name}": value for name, value in settings.items()})
    return subprocess.run(  # noqa: S603 - our own interpreter, the test's code
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def read_until(
    stream: IO[bytes], done: Callable[[bytes], bool], timeout: float, what: str
) -> bytes:
    """Read the pipe `stream` until `done` says yes to what was read; return that.

    Fails the test when `timeout` seconds pass first (not `what` in that time) or the pipe
    ends (its process exited).
    """
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        while not done(seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{what} not in {timeout} s: {seen[-2000:]!r}"
            if selector.select(remaining):
                chunk = stream.read1(65536)  # type: ignore[attr-defined]
                assert chunk, f"exited early: {seen[-2000:]!r}"
                seen += chunk
    return seen
