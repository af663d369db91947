"""A bench driver stopped with SIGTERM stops the processes it started, as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

# A driver that starts the fake signer the way the bench does, says its pid, then waits.
DRIVER = """
import sys, time
from pathlib import Path
from bench import procs
if sys.argv[1] == "handled":
    procs.stop_children_on_sigterm()
work = Path(sys.argv[2])
with procs.fake_signer(work, latency_ms=0, keys_dir=work / "keys") as signer:
    print(signer.popen.pid, flush=True)
    time.sleep(120)
"""


def _signer_left_after_sigterm(tmp_path: Path, mode: str) -> bool:
    (tmp_path / "keys").mkdir()
    with subprocess.Popen(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", DRIVER, mode, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
    ) as driver:
        return _sigterm(driver)


def _sigterm(driver: subprocess.Popen[bytes]) -> bool:
    try:
        assert driver.stdout is not None
        signer_pid = int(driver.stdout.readline())
        driver.send_signal(signal.SIGTERM)
        driver.wait(30)
        # A driver that ran its `finally` blocks waited for the signer to end before exiting.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if not psutil.pid_exists(signer_pid) or psutil.Process(signer_pid).status() == (
                psutil.STATUS_ZOMBIE
            ):
                return False
            time.sleep(0.05)
        os.kill(signer_pid, signal.SIGKILL)  # left running: stop it for the test
        return True
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_sigterm_stops_what_the_driver_started(tmp_path):
    """With the handler the driver's `finally` blocks run: the fake signer is gone."""
    assert not _signer_left_after_sigterm(tmp_path, "handled")


def test_without_the_handler_the_started_signer_would_be_left(tmp_path):
    """What the handler is for: Python's default for SIGTERM skips the `finally` blocks."""
    assert _signer_left_after_sigterm(tmp_path, "default")
