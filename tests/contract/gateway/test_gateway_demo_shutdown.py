"""`signing-gateway demo`: up only once it serves, its examples as printed, stopped by a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
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


@pytest.mark.parametrize(
    ("send", "signum"),
    [("press_ctrl_c", signal.SIGINT), ("close_the_terminal", signal.SIGHUP)],
    ids=["ctrl-c", "hangup"],
)
def test_a_terminals_signal_to_the_group_stops_the_demo_and_its_fake_signers(
    tmp_path: Path, send: str, signum: signal.Signals
) -> None:
    """Ctrl-C (exit 130), or closing the terminal (SIGHUP, 129), to the demo's process group.

    No traceback, exception or error from any of them, no process left, its directory removed.
    The fake signers run in process groups of their own, which neither signal reaches: the
    demo takes it as a stop, stops its gateway, then them. Before, a hangup killed the demo
    (its temporary directory left behind), and the fakes with it.
    """
    with running_demo(tmp_path, stdout=subprocess.PIPE) as demo:
        wait_for_line(demo.process, LAST_EXAMPLE, timeout=30)  # a few lines: the pipe holds them
        demo.find_fake_signers()
        getattr(demo, send)()
        demo.wait_stopped_by(signum)


def test_a_demo_killed_outright_takes_its_fake_signers_with_it(tmp_path: Path) -> None:
    """SIGKILL to the demo's process group: its fake signers stop by themselves within 5 s.

    They run in process groups of their own, which the kill does not reach, and the demo,
    killed, cannot stop them: each sees its parent gone (`--parent-pid`) and stops as on
    SIGTERM (status 0), leaving nothing listening.
    """
    with running_demo(tmp_path, stdout=subprocess.PIPE) as demo:
        wait_for_line(demo.process, LAST_EXAMPLE, timeout=30)  # a few lines: the pipe holds them
        demo.find_fake_signers()
        os.killpg(demo.process.pid, signal.SIGKILL)
        demo.process.wait(timeout=10)
        _, alive = psutil.wait_procs(demo.children, timeout=5)
        assert alive == [], [child.cmdline() for child in alive]


#: How many times the next test presses Ctrl-C: in 30 runs of the old code, the fake signers
#: stopped before the gateway every time (in the log an operator reads).
CTRL_C_ORDER_RUNS = 3


@pytest.mark.parametrize("run", range(CTRL_C_ORDER_RUNS))
def test_ctrl_c_stops_the_gateway_before_its_fake_signers(tmp_path: Path, run: int) -> None:
    """Ctrl-C to the demo's group: its gateway (and readiness prober) stop, then the fakes.

    Before, the fake signers took the terminal's SIGINT themselves, at the gateway's moment:
    often they stopped first, and the gateway's prober, still running, logged both of them
    down (`dependency down ... reason='eu probe: ClientConnectorError'`) on the way out.
    """
    del run  # each run a fresh demo: the order was a race
    with running_demo(tmp_path, stdout=subprocess.PIPE) as demo:
        wait_for_line(demo.process, LAST_EXAMPLE, timeout=30)  # a few lines: the pipe holds them
        demo.find_fake_signers()
        demo.press_ctrl_c()
        demo.wait_stopped_by(signal.SIGINT)
        log = demo.stderr.read_text(errors="replace")
    assert "dependency down" not in log, log[-3000:]
    gateway_stopped = log.index("Finished server process")
    assert log.count("fake-signer stopping") == 2, log[-3000:]
    assert log.index("fake-signer stopping") > gateway_stopped, log[-3000:]


def test_ctrl_c_while_the_gateway_waits_for_keys_stops_the_start_up(tmp_path: Path) -> None:
    """Ctrl-C to the demo's group while the gateway's start-up fetches keys: stopped at once.

    The start-up may be waiting for a fake signer's keys. Here the EU fake is held (SIGSTOP)
    once it has answered the demo's health check, so the start-up waits for its keys when the
    signal comes. Before, the start-up went on asking for the keys for 30 s (when the fakes
    shared the demo's group, asking the fakes Ctrl-C had stopped), then failed: exit 3 and an
    error, "start-up failed: could not fetch keys".
    """
    with running_demo(tmp_path, stdout=subprocess.DEVNULL) as demo:
        demo.find_fake_signers()  # the domestic fake starts once the EU one answered
        eu = demo.fake_signer("eu")
        eu.suspend()
        try:
            stderr = demo.stderr
            _wait_logged(demo.process, stderr, "Waiting for application startup.", timeout=30)
            demo.press_ctrl_c()
            stopping = "signal SIGINT: stopping the start-up"
            _wait_logged(demo.process, stderr, stopping, timeout=10)  # the start-up cancelled
        finally:
            eu.resume()  # then the demo's SIGTERM stops it
        demo.wait_stopped_by(signal.SIGINT)
        assert "start-up failed" not in stderr.read_text()


def _wait_logged(demo: subprocess.Popen[bytes], stderr: Path, line: str, timeout: float) -> None:
    """Wait until the demo wrote `line` to `stderr` (its file)."""
    deadline = time.monotonic() + timeout
    while line not in stderr.read_text(errors="replace"):
        assert demo.poll() is None, f"the demo exited: {stderr.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"not logged in {timeout} s: {line!r}: {stderr.read_text()[-2000:]}"
        )
        time.sleep(0.02)  # polling its log
