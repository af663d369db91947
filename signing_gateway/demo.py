"""`signing-gateway demo`: the gateway on loopback with the bundled fake signers.

Starts the EU and the domestic fake signer as child processes, points a gateway at them with a
local token issuer and prints ready-to-paste example requests; `--smoke` sends them itself and
exits. `signing_gateway.cli` parses the command line, reads the settings through `demo_setup`
(reporting what is wrong with them before anything starts) and calls `run_demo`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from signing_gateway.api import examples
from signing_gateway.observability.logging import configure_logging, flush_logging
from signing_gateway.security.settings import ALL_SCOPES, LOOPBACK, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.serving import served_options
from signing_gateway.settings import Settings
from signing_gateway.settings_env import read_settings


def _free_ports(count: int) -> list[int]:
    """`count` different ports that were free on loopback a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


#: How long a fake signer has to stop after SIGTERM on the way out, before it is killed.
FAKE_SIGNER_STOP_SECONDS = 5.0
#: The signals that stop the demo: SIGTERM, SIGINT (Ctrl-C on `make run`) and SIGHUP (its
#: terminal closed), alike. The fake signers, in a process group of their own (`_start`), get
#: none of a terminal's signals: the demo stops them, once its gateway has stopped.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _stop_signals() -> list[signal.Signals]:
    """The `STOP_SIGNALS` the demo takes: SIGHUP not when it is ignored (`nohup make run`)."""
    return [
        signum
        for signum in STOP_SIGNALS
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN
    ]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"fake signer exited early with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:  # noqa: PLR2004
                return
        time.sleep(0.1)
    raise SystemExit(f"fake signer at {url} did not become healthy in {timeout:g} s")


@contextlib.contextmanager
def _fake_signers(latency_ms: float, keys_dir: Path, ports: dict[str, int]) -> Iterator[None]:
    """Start a fake signer for each role in `ports` (eu, domestic) on its port; stop them after."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for role, port in ports.items():
            command = [
                sys.executable, "-m", "fake_signer", "--role", role, "--host", LOOPBACK,
                "--port", str(port), "--latency-ms", str(latency_ms),
                "--keys-dir", str(keys_dir / role),
                # In a group of their own (`_start`), they would outlive a demo killed outright.
                "--parent-pid", str(os.getpid()),
            ]  # fmt: skip
            _wait_healthy(f"http://{LOOPBACK}:{port}", _start(command, processes))
        yield
    finally:
        # The gateway's last lines (it has stopped by now) before the fakes' "stopping" ones:
        # its writer thread would write them a batch later, after those.
        flush_logging()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=FAKE_SIGNER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()


def _start(command: list[str], processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Start `command` and add its process to `processes`, a stop signal meanwhile held till then.

    The demo's handler of the stop signals raises SystemExit. Raised inside `subprocess.Popen`,
    after the child had started and before its process was on record, it left that fake signer
    running with nobody to stop it. So a stop signal that comes meanwhile is raised again once
    the process is in `processes`, where the way out stops it.

    Each fake signer runs in a process group of its own. In the demo's group a terminal's
    Ctrl-C reached the fakes as it reached the demo, and they mostly stopped before the
    gateway had: its readiness prober, still running, could log both signers down. Now the
    demo alone takes the terminal's signals and stops its gateway, then the fakes.
    """
    held: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda received, _frame: held.append(received))
        for signum in _stop_signals()
    }
    try:
        process = subprocess.Popen(command, process_group=0)  # noqa: S603 - our own module
        processes.append(process)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if held:
        signal.raise_signal(held[0])
    return process


def demo_requests() -> list[tuple[str, str, dict[str, Any] | None]]:
    """The example calls the demo prints (method, path, body), valid as of now."""
    now = datetime.now(UTC)
    domestic = dict(examples.DOMESTIC_ATTRIBUTES, validFrom=str(int(now.timestamp())))
    return [
        ("POST", "/v1/dcc", examples.EU_VACCINATION),
        ("POST", "/v1/domestic/static", {"credentialAttributes": domestic}),
        ("POST", "/v1/print", {"domestic": domestic, "european": examples.EU_TEST}),
        ("GET", "/readyz", None),
    ]


def _print_examples(base: str, token: str) -> None:
    print(f"\nsigning-gateway demo is up at {base}  (OpenAPI: {base}/docs)\nTry:\n")  # noqa: T201
    print(f"TOKEN={token}\n")  # noqa: T201
    for method, path, body in demo_requests():
        data = ""
        if path.startswith("/v1/"):
            data = ' -H "Authorization: Bearer $TOKEN"'
        if body is not None:
            data += f" -H 'Content-Type: application/json' -d '{json.dumps(body)}'"
        print(f"curl -s -X {method} {base}{path}{data}\n")  # noqa: T201
    sys.stdout.flush()


def _smoke(base: str, token: str) -> int:
    """Send every demo request to a running gateway; 0 when all answered 200."""
    failures = 0
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30.0, headers=auth) as client:
        for method, path, body in demo_requests():
            response = client.request(method, path, json=body)
            print(f"{method} {path} -> {response.status_code}")  # noqa: T201
            if response.status_code != 200:  # noqa: PLR2004
                print(response.text)  # noqa: T201
                failures += 1
    return 1 if failures else 0


def _exit_on_stop_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


#: Settings the demo gives its gateway unless a variable sets them: a log a person reads, and
#: a readiness prober that sees a fake signer stopped or started within a second.
DEMO_DEFAULTS: dict[str, Any] = {"log_format": "console", "readiness_probe_interval_seconds": 1.0}


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """What the demo runs on: its directory, its gateway's settings and token, and more.

    `signer_ports`: the fake signers' ports by role (eu, domestic), those the settings name.
    """

    directory: Path
    settings: Settings
    token: str
    signer_ports: dict[str, int]


@contextlib.contextmanager
def demo_setup(also_read: Iterable[str]) -> Iterator[tuple[DemoSetup | None, list[str]]]:
    """The demo's temporary directory, token and settings, and what is wrong with the settings.

    The settings are the environment's under the demo's own (its signers, trust, caller
    authentication, audit file): the problems are those `read_settings` finds, `also_read` the
    variables that are not settings. The setup is None when the settings cannot be read.
    Nothing is started: `run_demo` starts the fake signers on the ports the settings name.
    """
    # Until the server exists a stop signal ends the demo through SystemExit, which stops the
    # fake signers and removes the directory on the way out. From then on it only asks the
    # server to stop (`_stop_server_on_signal`).
    for signum in _stop_signals():
        signal.signal(signum, _exit_on_stop_signal)
    with tempfile.TemporaryDirectory(prefix="signing-gateway-demo-") as tmp:
        directory = Path(tmp)
        token, auth = _demo_auth(directory)
        eu_port, domestic_port = _free_ports(2)

        def build() -> Settings:
            # Each group as only the values the demo sets: pydantic-settings merges the
            # environment's values for the group's other settings into a dict (checking them),
            # where a model instance would replace the whole group and drop them unread.
            groups: dict[str, Any] = {
                "auth": auth.model_dump(exclude_unset=True),
                "audit": {"file": directory / "audit.jsonl"},
                "eu_signer": {"url": f"http://{LOOPBACK}:{eu_port}"},
                "domestic_signer": {"url": f"http://{LOOPBACK}:{domestic_port}"},
                # The fakes' keys, fetched: trust files in the environment are replaced too.
                "trust": {"fetch_from_signers": True, "eu_certificates": [], "domestic_keys": []},
            }
            # The demo's readable log and quick readiness are defaults: a variable that sets
            # one is read, as every other setting's is.
            given = Settings(**groups).model_fields_set
            defaults = {name: value for name, value in DEMO_DEFAULTS.items() if name not in given}
            return Settings(**groups, **defaults)

        settings, problems = read_settings(also_read, build)
        ports = {"eu": eu_port, "domestic": domestic_port}
        yield None if settings is None else DemoSetup(directory, settings, token, ports), problems


def run_demo(
    setup: DemoSetup, *, port: int, signer_latency_ms: float, smoke: bool, loop: str
) -> int:
    """Run the demo on `port` (0: a free one) with the event loop `loop`; the exit status.

    Starts the fake signers `setup` names, then the gateway. Serves until stopped (after
    SIGTERM the status is 128 + its number); with `smoke`, sends the example requests instead
    and returns 0 when each was answered 200, else 1. A gateway that fails to start ends the
    demo with uvicorn's status for that, 3, with `smoke` too. SIGINT and SIGHUP stop it as
    SIGTERM does, and the fake signers only once the gateway has stopped.
    """
    # Imported here, once the settings checked out: a refused demo imports no app (as `serve`).
    from signing_gateway.app import create_app  # noqa: PLC0415
    from signing_gateway.resilience.shutdown import StartUpStoppingServer  # noqa: PLC0415
    from signing_gateway.runtime.http_protocol import GatewayHttpProtocol  # noqa: PLC0415

    with _fake_signers(signer_latency_ms, setup.directory, setup.signer_ports):
        configure_logging(level=setup.settings.log_level, fmt=setup.settings.log_format)
        port = port or _free_ports(1)[0]
        base = f"http://{LOOPBACK}:{port}"
        config = uvicorn.Config(
            create_app(setup.settings),
            # As `serve`: request heads bounded in size and time (431, 408 and 400 problem+json,
            # from the settings' `limits`), and no X-Forwarded-* rewrite.
            http=GatewayHttpProtocol,
            **served_options(host=LOOPBACK, port=port, loop=loop),
        )
        # SIGINT or SIGTERM while the gateway starts stops the start-up at once, not once it
        # has the fake signers' keys (a fetch's 30 s, if a fake does not answer).
        server = StartUpStoppingServer(config)
        if smoke:
            return _run_smoke(server, base, setup.token)
        stopped_by = _stop_server_on_signal(server)
        _announce_once_started(server, base, setup.token)
        server.run()
        # Raised again by uvicorn once it has shut down; a stopped start-up is not.
        signum = stopped_by[0] if stopped_by else server.stopped_by
        return 0 if signum is None else 128 + signum


def _stop_server_on_signal(server: uvicorn.Server) -> list[int]:
    """Make a stop signal ask `server` to stop, whenever it comes; returns the signals received.

    uvicorn handles SIGTERM and SIGINT itself only while it serves, and re-raises the signal
    once it has shut down. A handler that raised SystemExit instead could fire inside the event
    loop's own signal processing during start-up, where uvloop logs and drops exceptions: the
    demo then kept serving after the signal. Setting ``should_exit`` works before the server
    begins (it then does not start), while serving and after shutdown alike; while it starts,
    the server's own handler stops the start-up (`StartUpStoppingServer`).
    SIGINT left to Python's own handler reached asyncio's runner, re-raised after the
    shutdown: Ctrl-C ended the demo in a KeyboardInterrupt traceback.
    """
    received: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        received.append(signum)
        server.should_exit = True

    for signum in _stop_signals():
        signal.signal(signum, request_stop)
    return received


def _announce_once_started(server: uvicorn.Server, base: str, token: str) -> None:
    """Print the "demo is up" line and the examples when the server accepts connections.

    Printed before ``server.run()`` the line came while the gateway was still loading trust
    from the fake signers: a caller acting on it (a person pasting a curl, or a test sending
    SIGTERM) reached a process that was not serving yet.
    """

    def announce() -> None:
        if _wait_started(server, deadline=None):
            _print_examples(base, token)

    threading.Thread(target=announce, name="demo-announce", daemon=True).start()


def _wait_started(
    server: uvicorn.Server, *, deadline: float | None, running: threading.Thread | None = None
) -> bool:
    """Block until uvicorn reports `server` started (True), it is stopping, or `deadline` passes.

    `running`: the thread `server` runs in, if not this process's main thread; once it has
    ended (a failed start-up ends it, `start-up failed: ...` logged) the server never starts.
    """
    while not server.started:
        if server.should_exit or (running is not None and not running.is_alive()):
            return False
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _demo_auth(directory: Path) -> tuple[str, AuthSettings]:
    """A local token issuer for the demo: its JWKS file, auth settings, and a 2-hour token."""
    issuer = LocalTokenIssuer(issuer="signing-gateway-demo", audience="signing-gateway")
    jwks_file = directory / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()))
    token = issuer.mint(subject="demo-client", scopes=list(ALL_SCOPES), ttl_seconds=2 * 3600)
    auth = AuthSettings(
        mode="jwt", jwks_file=jwks_file, audience=issuer.audience, issuer=issuer.issuer
    )
    return token, auth


def _run_smoke(server: uvicorn.Server, base: str, token: str) -> int:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    if not _wait_started(server, deadline=deadline, running=thread):
        # Nothing to send the examples to: the gateway logged why, or is still starting.
        print("signing-gateway demo: the gateway did not start; no request sent", file=sys.stderr)  # noqa: T201
        server.should_exit = True
        thread.join(timeout=15)
        return STARTUP_FAILURE
    # Readiness comes from the background prober; give it its first round.
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:  # noqa: PLR2004
                break
        time.sleep(0.1)
    try:
        return _smoke(base, token)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
