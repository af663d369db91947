"""`signing-gateway demo`: up only once it serves, its examples as printed, stopped by a signal."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from signing_gateway.demo import demo_requests
from tests.contract.gateway.demo_process import (
    LAST_EXAMPLE,
    printed_requests,
    running_demo,
    wait_for_line,
)


def test_sigterm_stops_the_demo_and_its_fake_signers(tmp_path: Path) -> None:
    """The ready line means serving; after SIGTERM the demo exits and leaves no fake signer.

    Meanwhile every example it printed, pasted into a shell, is answered 200, as is its OpenAPI
    link, and it listens on loopback only (its gateway and its fake signers).
    """
    with running_demo(tmp_path, stdout=subprocess.PIPE) as demo:
        stdout = demo.process.stdout
        assert stdout is not None
        reader: threading.Thread | None = None
        try:
            output = wait_for_line(demo.process, LAST_EXAMPLE, timeout=30)
            # Keep reading what it prints, so a full pipe can never be what holds it.
            reader = threading.Thread(target=stdout.read, daemon=True)
            reader.start()
            # The line is printed once the server accepts connections: one probe, no retry.
            base = re.search(rb"demo is up at (http://\S+)", output)
            assert base is not None, output[-2000:]
            assert httpx.get(base.group(1).decode() + "/healthz", timeout=5).status_code == 200
            examples = printed_requests(output)
            assert [(request.method, request.url.path) for request in examples] == [
                (method, path) for method, path, _ in demo_requests()
            ]
            with httpx.Client(timeout=30) as client:
                answers = [client.send(request) for request in examples]
                assert [(answer.status_code, answer.text[:300]) for answer in answers] == [
                    (200, answer.text[:300]) for answer in answers
                ]
                openapi = re.search(rb"\(OpenAPI: (http://\S+)\)", output)
                assert openapi is not None, output[-2000:]
                assert client.get(openapi.group(1).decode()).status_code == 200
            demo.find_fake_signers()
            assert demo.listening_addresses() == {"127.0.0.1"}
            demo.stop_with(signal.SIGTERM)
        finally:
            # Stopped at once if a check failed: the reader holds the pipe until its EOF.
            demo.kill()
            if reader is not None:
                reader.join(timeout=10)  # EOF once the demo and its children are gone
            stdout.close()


def test_ctrl_c_stops_the_serving_demo_as_sigterm_does(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C on `make run`): exit 130, no traceback, no fake signer left.

    Before, uvicorn's re-raised SIGINT reached asyncio's runner after the shutdown: the demo
    ended in a KeyboardInterrupt traceback.
    """
    with running_demo(tmp_path, stdout=subprocess.PIPE) as demo:
        wait_for_line(demo.process, LAST_EXAMPLE, timeout=30)  # a few lines: the pipe holds them
        demo.find_fake_signers()
        demo.stop_with(signal.SIGINT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up_stops_the_demo_and_its_fake_signers(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A stop signal while the gateway is still starting (both fakes up) ends everything too."""
    with running_demo(tmp_path, stdout=subprocess.DEVNULL) as demo:
        demo.find_fake_signers()
        demo.stop_with(signum)
