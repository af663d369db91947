"""Start a real `fake-signer` process on a free port for a test, and stop it afterwards.

Reusable by every suite that needs a live downstream signer::

    with running_fake_signer("--role", "eu", "--latency-ms", "50") as signer:
        httpx.get(f"{signer.base_url}/healthz")

The process is started as `sys.executable -m fake_signer --port 0` (no PATH needed); the real
port is read from its `fake-signer listening on http://HOST:PORT` line, then `/healthz` is polled
until it answers or the deadline passes. Stopping sends SIGTERM and waits, then kills.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import httpx

from tests.support.processes import read_log, stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

LISTENING = re.compile(r"fake-signer listening on (http://\S+):(\d+)")
DEFAULT_READY_TIMEOUT = 20.0


class FakeSignerStartError(RuntimeError):
    """The process exited or did not become ready before the deadline."""


@dataclass
class FakeSignerProcess:
    """A running fake-signer process."""

    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    stderr_file: IO[bytes]

    def stderr(self) -> str:
        """Everything the process wrote to stderr so far (its logs)."""
        return read_log(self.stderr_file)

    def stats(self) -> dict[str, Any]:
        """Its `/_stats`: `inFlight`, `peakInFlight`, `totals` by endpoint and outcome, ...

        A blocking call, as the tests' other looks at a fake are: the fake's own loop answers.
        """
        response = httpx.get(f"{self.base_url}/_stats", timeout=10)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset_stats(self) -> None:
        """Zero its counters (`/_stats/reset`)."""
        httpx.post(f"{self.base_url}/_stats/reset", timeout=10).raise_for_status()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL; return the exit code."""
        code = stop_process(self.process, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr_file.close()
        return code


def start_fake_signer(
    *args: str,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    host: str = "127.0.0.1",
) -> FakeSignerProcess:
    """Start `python -m fake_signer --host HOST --port 0 *args` and wait until it is ready.

    `env` entries are added to the current environment (e.g. `FAKE_SIGNER_*` settings). Later
    `--port`/`--host` in `args` override the defaults, since argparse keeps the last value.
    """
    command = [sys.executable, "-m", "fake_signer", "--host", host, "--port", "0", *args]
    stderr_file = tempfile.NamedTemporaryFile(prefix="fake-signer-", suffix=".log")  # noqa: SIM115
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + ready_timeout
    try:
        base_url, port = _read_listening_line(process, deadline)
        signer = FakeSignerProcess(process, f"{base_url}:{port}", port, stderr_file)
        _wait_healthy(signer, deadline)
    except BaseException:  # noqa: BLE001 - also on KeyboardInterrupt: never leak the child
        process.kill()
        process.wait()
        log = Path(stderr_file.name).read_text(errors="replace")
        stderr_file.close()
        if process.stdout is not None:
            process.stdout.close()
        raise FakeSignerStartError(
            f"fake-signer {' '.join(args)} failed to start:\n{log}"
        ) from None
    return signer


def _read_listening_line(process: subprocess.Popen[bytes], deadline: float) -> tuple[str, int]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        buffered = b""
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise FakeSignerStartError("process exited before listening")
            buffered += chunk
            if match := LISTENING.search(buffered.decode(errors="replace")):
                return match.group(1), int(match.group(2))
    raise FakeSignerStartError("no listening line before the deadline")


def _wait_healthy(signer: FakeSignerProcess, deadline: float) -> None:
    url = f"{signer.base_url}/healthz"
    while time.monotonic() < deadline:
        if signer.process.poll() is not None:
            raise FakeSignerStartError("process exited")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - http only
        ):
            if response.status == 200:
                return
        # Polling interval of a readiness probe, not a wait for a fixed time.
        time.sleep(0.02)
    raise FakeSignerStartError("/healthz did not answer before the deadline")


@contextlib.contextmanager
def running_fake_signer(
    *args: str,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
) -> Iterator[FakeSignerProcess]:
    """Context manager: a ready fake signer for the block, always stopped afterwards."""
    signer = start_fake_signer(*args, env=env, ready_timeout=ready_timeout)
    try:
        yield signer
    finally:
        signer.stop()
