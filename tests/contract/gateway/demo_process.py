"""Run `python -m signing_gateway demo --port 0` as a real process, and read its ready line."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

READY_LINE = b"signing-gateway demo is up at"


def wait_for_line(process: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """Read the process's output until `needle` appears; return what was read."""
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
    return seen


@dataclass
class Demo:
    """A running `signing-gateway demo` process, its stderr file and its fake-signer children."""

    process: subprocess.Popen[bytes]
    stderr: Path
    children: list[psutil.Process] = field(default_factory=list)

    def find_fake_signers(self) -> None:
        """Record the demo's child processes (the fake signers) once both are running."""
        deadline = time.monotonic() + 30
        while len(self.children) < 2:  # the gateway starts once both fake signers answer
            assert time.monotonic() < deadline, "the fake signers did not start"
            assert self.process.poll() is None, "the demo exited early"
            self.children = psutil.Process(self.process.pid).children(recursive=True)
            time.sleep(0.01)
        assert len(self.children) == 2  # the EU and the domestic fake signer, nothing else

    def stop_with_sigterm(self) -> None:
        """SIGTERM: the demo exits within 20 s with 128 + 15, and no fake signer is left."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # faulthandler writes every thread's stack to stderr on SIGUSR1.
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            stacks = self.stderr.read_text(errors="replace")[-6000:]
            pytest.fail(f"demo still running 20 s after SIGTERM:\n{stacks}")
        assert self.process.returncode == 128 + signal.SIGTERM
        _, alive = psutil.wait_procs(self.children, timeout=10)
        assert alive == []


@contextmanager
def running_demo(
    tmp_path: Path, *, stdout: int, settings: Mapping[str, str] | None = None
) -> Iterator[Demo]:
    """Start the demo; afterwards kill whatever of it is still running.

    `settings`: `SIGNING_GATEWAY_*` variables to set (by the name after the prefix); none of
    this process's own is passed on.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SIGNING_GATEWAY_")}
    env.update({f"SIGNING_GATEWAY_{name}": value for name, value in (settings or {}).items()})
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "signing_gateway", "demo", "--port", "0"],
            stdout=stdout,
            stderr=sink,
            env=env,
        )
    demo = Demo(process, stderr)
    try:
        yield demo
    finally:
        children = list(demo.children)
        if process.poll() is None:
            # Its fake signers too, found now: a test need not have looked for them, and
            # killing the demo first would leave them running with no parent.
            with contextlib.suppress(psutil.NoSuchProcess):
                children += psutil.Process(process.pid).children(recursive=True)
            process.kill()
            process.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=10)
        if process.stdout is not None:
            process.stdout.close()
