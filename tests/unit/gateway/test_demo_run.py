"""`signing-gateway demo` once its settings pass: its fake signers and its smoke requests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn

from signing_gateway import app as app_module
from signing_gateway import demo
from signing_gateway.resilience import shutdown
from signing_gateway.runtime.http_protocol import GatewayHttpProtocol
from signing_gateway.security.settings import ALL_SCOPES
from tests.contract.gateway.gateway_process import free_port
from tests.support.gateway import make_settings

#: httpx's own client, before a test puts its stand-in in its place.
_CLIENT = httpx.Client


def _answering(monkeypatch: pytest.MonkeyPatch, statuses: dict[str, int]) -> list[str]:
    """Make `demo`'s client answer each path with its status (200 if not given); paths asked."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(statuses.get(request.url.path, 200), text="refused")

    def mocked(**kwargs: Any) -> httpx.Client:
        return _CLIENT(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(demo.httpx, "Client", mocked)
    return asked


def test_a_smoke_run_is_0_only_when_every_example_is_answered_200(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pin the smoke run's status: one answer not 200 makes it 1, and its body is shown."""
    asked = _answering(monkeypatch, {})
    assert demo._smoke("http://127.0.0.1:9", "token") == 0
    assert asked == [path for _, path, _ in demo.demo_requests()]
    capsys.readouterr()
    _answering(monkeypatch, {"/readyz": 503})
    assert demo._smoke("http://127.0.0.1:9", "token") == 1
    assert "GET /readyz -> 503\nrefused\n" in capsys.readouterr().out


def test_a_fake_signer_that_exits_is_named_at_once_with_its_status() -> None:
    """Pin that the demo does not wait out the 20 s for a fake signer that has ended."""
    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
    ended.wait(timeout=30)
    began = time.monotonic()
    with pytest.raises(SystemExit, match=r"^fake signer exited early with code 4$"):
        demo._wait_healthy(f"http://127.0.0.1:{free_port()}", ended)
    assert time.monotonic() - began < 5


def test_a_sigterm_while_a_fake_signer_is_being_started_leaves_none_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A SIGTERM landing inside `subprocess.Popen` still stops the fake signer it started.

    The demo's handler raises SystemExit; raised before Popen returned, it left the child it
    had started off the record, and that fake signer outlived the demo.
    """
    started: list[subprocess.Popen[bytes]] = []
    popen = subprocess.Popen

    def popen_then_sigterm(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = popen(*args, **kwargs)
        started.append(process)
        signal.raise_signal(signal.SIGTERM)  # its handler runs here, before Popen returns
        return process

    monkeypatch.setattr(demo.subprocess, "Popen", popen_then_sigterm)
    previous = signal.signal(signal.SIGTERM, demo._exit_on_stop_signal)
    try:
        with (
            pytest.raises(SystemExit, match=r"^143$"),
            demo._fake_signers(0, tmp_path, {"eu": free_port()}),
        ):
            pytest.fail("the fake signers started after a SIGTERM")
        assert len(started) == 1
        started[0].wait(timeout=10)  # stopped on the way out, not left running
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


class _FailingServer:
    """Stands in for a `uvicorn.Server` whose start-up fails: `run` ends, never started.

    (uvicorn's `run` raises SystemExit(3) there, which ends only the thread it runs in.)
    """

    started = False
    should_exit = False

    def run(self) -> None:
        return


def test_a_smoke_run_whose_gateway_fails_to_start_ends_at_once_with_status_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No request is sent, the status is uvicorn's for a failed start-up, and it comes at once.

    Before, the smoke run waited out its 30 s for the server to start, then sent the examples
    to a port nothing listened on and ended in httpx's ConnectError traceback, status 1.
    """
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(demo, "_smoke", lambda base, token: sent.append((base, token)) or 0)
    began = time.monotonic()
    status = demo._run_smoke(_FailingServer(), "http://127.0.0.1:9", "token")  # type: ignore[arg-type]
    assert (status, sent) == (3, [])
    assert time.monotonic() - began < 5
    assert capsys.readouterr().err == (
        "signing-gateway demo: the gateway did not start; no request sent\n"
    )


def test_each_fake_signer_runs_on_loopback_with_its_own_keys_and_the_latency_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pin the fake signers' command lines: 127.0.0.1, `--signer-latency-ms`, a keys dir each."""
    started: list[list[str]] = []
    waited_on: list[str] = []
    monkeypatch.setattr(demo, "_start", lambda command, _processes: started.append(command))
    monkeypatch.setattr(demo, "_wait_healthy", lambda url, _process: waited_on.append(url))
    with demo._fake_signers(250.0, tmp_path, {"eu": 18001, "domestic": 18002}):
        pass
    assert [command[1:] for command in started] == [
        ["-m", "fake_signer", "--role", role, "--host", "127.0.0.1", "--port", port,
         "--latency-ms", "250.0", "--keys-dir", str(tmp_path / role),
         "--parent-pid", str(os.getpid())]
        for role, port in (("eu", "18001"), ("domestic", "18002"))
    ]  # fmt: skip
    assert waited_on == ["http://127.0.0.1:18001", "http://127.0.0.1:18002"]


def test_the_demo_token_has_every_scope_for_two_hours(tmp_path: Path) -> None:
    """Pin the printed token as docs/security.md gives it, taken by the demo's own JWKS."""
    token, auth = demo._demo_auth(tmp_path)
    assert auth.jwks_file is not None
    jwks = jwt.PyJWKSet.from_dict(json.loads(auth.jwks_file.read_text()))
    claims = jwt.decode(
        token, key=jwks.keys[0], algorithms=["ES256"], audience=auth.audience, issuer=auth.issuer
    )
    assert sorted(claims["scope"].split()) == sorted(ALL_SCOPES)
    assert claims["exp"] - claims["iat"] == 2 * 3600


class _StoppedServer:
    """Stands in for a `uvicorn.Server` asked to stop (a SIGTERM) before it started."""

    started = False
    should_exit = True


def test_a_server_asked_to_stop_before_it_started_is_not_waited_for() -> None:
    """Pin that the demo stops waiting to announce itself once the server is asked to stop."""
    began = time.monotonic()
    stopped = _StoppedServer()
    assert demo._wait_started(stopped, deadline=began + 10) is False  # type: ignore[arg-type]
    assert time.monotonic() - began < 5


#: Stand-ins for fake signers: one that SIGTERM ends, one that ignores it; each says when ready.
_ENDS_ON_SIGTERM = "import time; print('ready', flush=True); time.sleep(60)"
_IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def test_the_way_out_stops_each_fake_signer_and_kills_one_that_ignores_sigterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Pin the fake signers' stop: SIGTERM to each, SIGKILL to one still running after its grace."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], processes: list[subprocess.Popen[bytes]]) -> Any:
        code = _ENDS_ON_SIGTERM if "eu" in command else _IGNORES_SIGTERM
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)  # noqa: S603
        started.append(process)
        processes.append(process)
        return process

    def wait_ready(_url: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"

    monkeypatch.setattr(demo, "_start", start)
    monkeypatch.setattr(demo, "_wait_healthy", wait_ready)
    monkeypatch.setattr(demo, "FAKE_SIGNER_STOP_SECONDS", 0.5)
    try:
        with demo._fake_signers(0, tmp_path, {"eu": free_port(), "domestic": free_port()}):
            pass
        # Ended by then, not yet reaped: a wait that times out means one is still running.
        ended = [process.wait(timeout=2) for process in started]
        assert ended == [-signal.SIGTERM, -signal.SIGKILL]
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


@pytest.mark.parametrize("signum", demo.STOP_SIGNALS, ids=[s.name for s in demo.STOP_SIGNALS])
def test_the_demo_serves_on_loopback_with_the_port_and_loop_asked_as_serve_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signum: signal.Signals
) -> None:
    """Pin what the demo's gateway is given: 127.0.0.1, `--port`, `--loop`, `serve`'s protocol.

    SIGTERM, SIGINT or SIGHUP while it serves asks it to stop and ends the demo with 128 + its
    number, as a shell reports a process the signal ended.
    """
    configs: list[uvicorn.Config] = []

    class SignalledServer:
        """Stands in for the demo's server: keeps its configuration; the signal comes as it runs."""

        started = False
        should_exit = False
        stopped_by = None

        def __init__(self, config: uvicorn.Config) -> None:
            configs.append(config)

        def run(self) -> None:
            signal.raise_signal(signum)
            assert self.should_exit

    monkeypatch.setattr(demo, "_fake_signers", lambda *_args: contextlib.nullcontext())
    monkeypatch.setattr(demo, "configure_logging", lambda **_kwargs: None)
    monkeypatch.setattr(shutdown, "StartUpStoppingServer", SignalledServer)
    monkeypatch.setattr(app_module, "create_app", lambda _settings: "the app")
    setup = demo.DemoSetup(tmp_path, make_settings(), "token", {})
    # As `demo_setup` leaves them.
    previous = {stop: signal.signal(stop, demo._exit_on_stop_signal) for stop in demo.STOP_SIGNALS}
    try:
        status = demo.run_demo(setup, port=18080, signer_latency_ms=0, smoke=False, loop="uvloop")
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    assert status == 128 + signum
    [config] = configs
    assert (config.host, config.port, config.loop) == ("127.0.0.1", 18080, "uvloop")
    assert config.http is GatewayHttpProtocol
    assert (config.access_log, config.proxy_headers) == (False, False)


def test_a_hangup_ignored_when_the_demo_starts_stays_ignored() -> None:
    """`nohup make run` outlives its terminal: an ignored SIGHUP is no stop; at its default, it is.

    The fake signers, in process groups of their own, get no hangup from the terminal: the
    demo takes SIGHUP as a stop (and stops them), unless it was started to ignore it.
    """
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert demo._stop_signals() == [signal.SIGTERM, signal.SIGINT]
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert demo._stop_signals() == [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)
