"""`signing-gateway demo` stops the fake signers it started when it is told to stop."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time

import psutil

READY_LINE = b"signing-gateway demo is up at"


def _wait_for_line(process: subprocess.Popen[bytes], needle: bytes, timeout: float) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while needle not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"demo not ready in {timeout} s: {seen[-2000:]!r}"
            if selector.select(remaining):
                chunk = process.stdout.read1(4096)  # type: ignore[attr-defined]
                assert chunk, f"demo exited early: {seen[-2000:]!r}"
                seen += chunk


def test_sigterm_stops_the_demo_and_its_fake_signers():
    """After SIGTERM the demo exits and none of its fake-signer children is left running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "signing_gateway", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        _wait_for_line(process, READY_LINE, timeout=30)
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) == 2  # the EU and the domestic fake signer
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for child in children:
            if child.is_running():
                child.kill()
        if process.stdout is not None:
            process.stdout.close()
