"""`signing-gateway demo`: says it is up only once it serves; stops its fake signers on SIGTERM."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import httpx

from tests.contract.gateway.demo_process import READY_LINE, running_demo, wait_for_line


def test_sigterm_stops_the_demo_and_its_fake_signers(tmp_path: Path) -> None:
    """The ready line means serving; after SIGTERM the demo exits and leaves no fake signer."""
    with running_demo(tmp_path, stdout=subprocess.PIPE) as demo:
        stdout = demo.process.stdout
        assert stdout is not None
        reader: threading.Thread | None = None
        try:
            output = wait_for_line(demo.process, READY_LINE, timeout=30)
            # Keep reading what it prints, so a full pipe can never be what holds it.
            reader = threading.Thread(target=stdout.read, daemon=True)
            reader.start()
            # The line is printed once the server accepts connections: one probe, no retry.
            base = re.search(rb"demo is up at (http://\S+)", output)
            assert base is not None, output[-2000:]
            assert httpx.get(base.group(1).decode() + "/healthz", timeout=5).status_code == 200
            demo.find_fake_signers()
            demo.stop_with_sigterm()
        finally:
            if reader is not None:
                reader.join(timeout=10)  # EOF once the demo and its children are gone
            stdout.close()


def test_sigterm_during_start_up_stops_the_demo_and_its_fake_signers(tmp_path: Path) -> None:
    """A SIGTERM while the gateway is still starting (both fakes up) ends everything too."""
    with running_demo(tmp_path, stdout=subprocess.DEVNULL) as demo:
        demo.find_fake_signers()
        demo.stop_with_sigterm()
