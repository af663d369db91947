"""`signing-gateway demo`: says it is up only once it serves; stops its fake signers on SIGTERM."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

READY_LINE = b"signing-gateway demo is up at"


def _wait_for_line(process: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
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


def _stacks_of(process: subprocess.Popen[bytes], stderr: IO[bytes]) -> str:
    """Ask a stuck demo for its threads' stacks (SIGUSR1, faulthandler) and return its stderr."""
    process.send_signal(signal.SIGUSR1)
    time.sleep(1)
    stderr.seek(0)
    return stderr.read().decode(errors="replace")[-6000:]


def test_sigterm_stops_the_demo_and_its_fake_signers(tmp_path: Path) -> None:
    """The ready line means serving; after SIGTERM the demo exits and leaves no fake signer."""
    with (tmp_path / "stderr").open("w+b") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "signing_gateway", "demo", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        children: list[psutil.Process] = []
        reader: threading.Thread | None = None
        try:
            output = _wait_for_line(process, READY_LINE, timeout=30)
            # Keep reading what it prints, so a full pipe can never be what holds it.
            assert process.stdout is not None
            reader = threading.Thread(target=process.stdout.read, daemon=True)
            reader.start()
            # The line is printed once the server accepts connections: one probe, no retry.
            base = re.search(rb"demo is up at (http://\S+)", output)
            assert base is not None, output[-2000:]
            assert httpx.get(base.group(1).decode() + "/healthz", timeout=5).status_code == 200
            children = psutil.Process(process.pid).children(recursive=True)
            assert len(children) == 2  # the EU and the domestic fake signer
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"demo still running 20 s after SIGTERM:\n{_stacks_of(process, stderr)}"
                )
            _, alive = psutil.wait_procs(children, timeout=10)
            assert alive == []
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for child in children:
                if child.is_running():
                    child.kill()
            if reader is not None:
                reader.join(timeout=10)  # EOF once the demo and its children are gone
            if process.stdout is not None:
                process.stdout.close()


def test_sigterm_during_start_up_stops_the_demo_and_its_fake_signers(tmp_path: Path) -> None:
    """A SIGTERM while the gateway is still starting (both fakes up) ends everything too."""
    with (tmp_path / "stderr").open("w+b") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "signing_gateway", "demo", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        children: list[psutil.Process] = []
        try:
            deadline = time.monotonic() + 30
            while len(children) < 2:  # the gateway starts once both fake signers answer
                assert time.monotonic() < deadline, "the fake signers did not start"
                assert process.poll() is None, "the demo exited early"
                children = psutil.Process(process.pid).children(recursive=True)
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stacks = _stacks_of(process, stderr)
                pytest.fail(f"demo still running 20 s after SIGTERM:\n{stacks}")
            assert process.returncode == 128 + signal.SIGTERM
            _, alive = psutil.wait_procs(children, timeout=10)
            assert alive == []
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for child in children:
                if child.is_running():
                    child.kill()
