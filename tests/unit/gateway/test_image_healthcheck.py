"""The image's HEALTHCHECK command, run as Docker runs it, against a local /healthz."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from signing_gateway import healthcheck
from signing_gateway.cli import _options_from_environment, _parser
from tests.support.kubernetes_manifests import image_instruction

#: A proxy nobody listens on: a request sent through it fails at once.
DEAD_PROXY = "http://127.0.0.1:9"
#: Docker's status for an unhealthy container (0 healthy; 2 is reserved, not to be used).
UNHEALTHY = 1


def healthcheck_command() -> list[str]:
    """The exec-form argv of the Dockerfile's HEALTHCHECK, its continuation lines joined."""
    command: list[str] = json.loads(image_instruction("HEALTHCHECK").split(" CMD ", 1)[1])
    return command


class _Health(BaseHTTPRequestHandler):
    """Answers /healthz with the server's `status`, and counts the requests it saw."""

    server: _HealthServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(self.server.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Quiet: the test reads `paths` instead."""


class _HealthServer(ThreadingHTTPServer):
    def __init__(self, port: int, status: int) -> None:
        super().__init__(("127.0.0.1", port), _Health)
        self.status = status
        self.paths: list[str] = []


@contextmanager
def _serving(server: _HealthServer) -> Iterator[_HealthServer]:
    """`server` answering while the block runs; closed after it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def healthy() -> Iterator[_HealthServer]:
    """A /healthz answering 200 on a free port."""
    with _serving(_HealthServer(0, 200)) as server:
        yield server


@pytest.fixture
def on_8080() -> Iterator[_HealthServer]:
    """A /healthz answering 200 on 8080, `serve`'s default port; skipped if 8080 is taken."""
    try:
        server = _HealthServer(8080, 200)
    except OSError as exc:
        pytest.skip(f"port 8080 is in use here: {exc}")
    with _serving(server):
        yield server


def _run_healthcheck(**environ: str) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command with `environ` (and `python` found first in this venv)."""
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "http_proxy": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        **environ,
    }
    return subprocess.run(  # noqa: S603 - the command is the repository's own Dockerfile
        healthcheck_command(), env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_healthcheck_is_the_exec_form_of_python() -> None:
    """The command is an exec-form argv run by the image's python (no shell in between)."""
    assert healthcheck_command() == ["python", "-m", "signing_gateway.healthcheck"]


def test_healthcheck_imports_nothing_but_the_standard_library() -> None:
    """It runs every 10 s: none of the gateway's modules (pydantic, FastAPI, ...) is loaded."""
    script = (
        "import json, sys; import signing_gateway.healthcheck; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
        "- set(sys.stdlib_module_names))))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    loaded = {name for name in json.loads(done.stdout) if not name.startswith("_")}
    assert loaded == {"signing_gateway"}


def test_healthcheck_asks_the_probe_port_directly_past_any_proxy(healthy: _HealthServer) -> None:
    """With a proxy set, the command still asks 127.0.0.1 itself, at SIGNING_GATEWAY_PROBE_PORT.

    Before, it went through `http_proxy` (urllib does not pass by 127.0.0.1 without no_proxy)
    and asked port 8081 whatever the probe port was.
    """
    port = str(healthy.server_address[1])
    done = _run_healthcheck(SIGNING_GATEWAY_PROBE_PORT=port)
    assert done.returncode == 0, done.stderr
    assert healthy.paths == ["/healthz"]


@pytest.mark.parametrize("status", [503, 204])
def test_healthcheck_fails_when_healthz_is_not_200(status: int) -> None:
    """A /healthz answering other than 200 makes the command exit 1, saying so in one line."""
    with _serving(_HealthServer(0, status)) as server:
        done = _run_healthcheck(SIGNING_GATEWAY_PROBE_PORT=str(server.server_address[1]))
        assert done.returncode == UNHEALTHY
        assert server.paths == ["/healthz"]
    assert len(done.stderr.splitlines()) <= 1, done.stderr


#: What `serve` reads as "no probe port" (or, for SIGNING_GATEWAY_PORT, "the default").
NOT_A_PORT = pytest.mark.parametrize(
    "value", [None, "", "tcp://10.96.0.6:8081"], ids=["unset", "empty", "link"]
)


@NOT_A_PORT
def test_healthcheck_asks_the_api_port_without_a_probe_port(
    healthy: _HealthServer, value: str | None
) -> None:
    """No probe port (unset, empty or a service link): /healthz on SIGNING_GATEWAY_PORT.

    `serve` then answers /healthz on its API port only. Before, the command asked port 8081,
    where nothing listens, and the container was unhealthy for ever.
    """
    environ = {"SIGNING_GATEWAY_PORT": str(healthy.server_address[1])}
    if value is not None:
        environ["SIGNING_GATEWAY_PROBE_PORT"] = value
    done = _run_healthcheck(**environ)
    assert done.returncode == 0, done.stderr
    assert healthy.paths == ["/healthz"]


@NOT_A_PORT
def test_healthcheck_asks_8080_without_any_port(on_8080: _HealthServer, value: str | None) -> None:
    """Neither variable a port: the command asks 8080, the API port `serve` takes then."""
    environ = {} if value is None else {"SIGNING_GATEWAY_PORT": value}
    done = _run_healthcheck(**environ)
    assert done.returncode == 0, done.stderr
    assert on_8080.paths == ["/healthz"]


def _serve_reads_probe_port(monkeypatch: pytest.MonkeyPatch, value: str) -> list[str]:
    """What `serve` finds wrong with SIGNING_GATEWAY_PROBE_PORT=`value` (no line: it takes it)."""
    problems, _ = _serve_reads(monkeypatch, SIGNING_GATEWAY_PROBE_PORT=value)
    return problems


def _serve_reads(
    monkeypatch: pytest.MonkeyPatch, **environ: str
) -> tuple[list[str], tuple[object, object]]:
    """What `serve` finds wrong with `environ` alone, and the (API, probe) ports it takes."""
    for name in list(os.environ):
        if name.upper() in {"SIGNING_GATEWAY_PORT", "SIGNING_GATEWAY_PROBE_PORT"}:
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    args = _parser().parse_args(["serve"])
    problems = _options_from_environment(args)
    return problems, (args.port, args.probe_port)


def _dead_port() -> int:
    """A loopback port nothing listens on (bound a moment ago, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: Spellings of a port `serve` refuses (a port is decimal digits only) that `int()` would read.
REFUSED_SPELLINGS = {
    "spaces": lambda port: f" {port} ",
    "tab": lambda port: f"{port}\t",
    "arabic-indic": lambda port: str(port).translate({ord("0") + d: 0x660 + d for d in range(10)}),
    "link-and-more": lambda port: f"tcp://10.96.0.6:{port}/",
}


@pytest.mark.parametrize("spelling", REFUSED_SPELLINGS.values(), ids=list(REFUSED_SPELLINGS))
def test_healthcheck_fails_on_a_probe_port_serve_refuses(
    healthy: _HealthServer, monkeypatch: pytest.MonkeyPatch, spelling: Callable[[int], str]
) -> None:
    """A probe port `serve` refuses fails the command, which asks neither port.

    `serve` refuses the value and never listens, so the container must not look healthy by
    whatever else listens at the port the value spells, or at the API port. Before, the
    command stripped white space and took any script's digits, and asked that port; then it
    passed over the value and asked the API port, as for no probe port.
    """
    value = spelling(healthy.server_address[1])
    assert _serve_reads_probe_port(monkeypatch, value) == [
        "SIGNING_GATEWAY_PROBE_PORT: must be a whole number from 1 to 65535"
    ]
    done = _run_healthcheck(
        SIGNING_GATEWAY_PROBE_PORT=value, SIGNING_GATEWAY_PORT=str(healthy.server_address[1])
    )
    assert healthy.paths == []
    assert done.returncode == UNHEALTHY
    assert "SIGNING_GATEWAY_PROBE_PORT: not a port serve takes" in done.stderr


@pytest.mark.parametrize("value", ["+8080", "8_080", "70000", "١٢"], ids=str)
def test_healthcheck_fails_on_an_api_port_serve_refuses(
    healthy: _HealthServer, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """An API port `serve` refuses fails the command, however good the probe port.

    `serve` does not start, so nothing of it answers at the probe port. Before, the command
    read only the probe port when it was set, and asked it: whatever answered there made
    the container look healthy.
    """
    probe = str(healthy.server_address[1])
    problems, _ = _serve_reads(
        monkeypatch, SIGNING_GATEWAY_PORT=value, SIGNING_GATEWAY_PROBE_PORT=probe
    )
    assert problems == ["SIGNING_GATEWAY_PORT: must be a whole number from 0 to 65535"]
    done = _run_healthcheck(SIGNING_GATEWAY_PORT=value, SIGNING_GATEWAY_PROBE_PORT=probe)
    assert healthy.paths == []
    assert done.returncode == UNHEALTHY


@pytest.mark.parametrize(
    "names",
    [("signing_gateway_probe_port",), ("Signing_Gateway_Probe_Port", "SIGNING_GATEWAY_PORT"),
     ("SIGNING_GATEWAY_PROBE_PORT", "signing_gateway_probe_port"), ("signing_gateway_port",)],
    ids=["lower-probe", "mixed-probe", "exact-first", "lower-api"],
)  # fmt: skip
def test_healthcheck_reads_a_variable_in_any_case_as_serve_does(
    healthy: _HealthServer, monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...]
) -> None:
    """A variable named in any case is read, the exact name first, by `serve` and the command.

    The first name gets the port that answers, any other a port nothing listens at. Before,
    the command read the upper-case names only: given in lower case, the probe port `serve`
    listened on was never asked (the command asked 8080, or the API port).
    """
    ports = [str(healthy.server_address[1]), *(str(_dead_port()) for _ in names[1:])]
    # In the environment the first name comes last: read first for its name, not its place.
    environ = dict(reversed(list(zip(names, ports, strict=True))))
    problems, (port, probe_port) = _serve_reads(monkeypatch, **environ)
    assert problems == []
    api_only = names[0].upper() == "SIGNING_GATEWAY_PORT"
    assert (port if api_only else probe_port) == healthy.server_address[1]
    done = _run_healthcheck(**environ)
    assert done.returncode == 0, done.stderr
    assert healthy.paths == ["/healthz"]


def test_healthcheck_fails_saying_why_on_an_api_port_of_0_without_a_probe_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """API port 0 (a free port, which `serve` takes) and no probe port: nothing to ask.

    Before, the command asked port 0, and the health log held a refused connection.
    """
    problems, ports = _serve_reads(monkeypatch, SIGNING_GATEWAY_PORT="0")
    assert (problems, ports) == ([], (0, None))
    done = _run_healthcheck(SIGNING_GATEWAY_PORT="0")
    assert done.returncode == UNHEALTHY
    assert "SIGNING_GATEWAY_PORT=0 picks a free port" in done.stderr, done.stderr


def test_healthcheck_reads_leading_zeros_as_serve_does(
    healthy: _HealthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decimal digits are the port whatever zeros lead them, for `serve` and for the command."""
    value = f"00{healthy.server_address[1]}"
    assert _serve_reads_probe_port(monkeypatch, value) == []
    done = _run_healthcheck(SIGNING_GATEWAY_PROBE_PORT=value)
    assert done.returncode == 0, done.stderr
    assert healthy.paths == ["/healthz"]


def test_healthcheck_without_a_listener_fails() -> None:
    """Nothing listening at the probe port: the command exits 1, the URL and why in one line."""
    port = _dead_port()
    done = _run_healthcheck(SIGNING_GATEWAY_PROBE_PORT=str(port))
    assert done.returncode == UNHEALTHY
    [line] = done.stderr.splitlines()
    assert line.startswith(f"http://127.0.0.1:{port}/healthz: "), line


@pytest.mark.parametrize(
    ("environ", "port"),
    [
        ({"SIGNING_GATEWAY_PROBE_PORT": "65535"}, 65535),
        ({"SIGNING_GATEWAY_PORT": "65535"}, 65535),
        ({"SIGNING_GATEWAY_PROBE_PORT": "1", "SIGNING_GATEWAY_PORT": "0"}, 1),
        ({"SIGNING_GATEWAY_PROBE_PORT": "0"}, None),
        ({"SIGNING_GATEWAY_PROBE_PORT": "65536"}, None),
        ({"SIGNING_GATEWAY_PORT": "65536"}, None),
    ],
    ids=["probe-65535", "api-65535", "probe-1", "probe-0", "probe-65536", "api-65536"],
)
def test_healthcheck_takes_each_port_variable_in_the_range_serve_does(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], port: int | None
) -> None:
    """Pin each port's range at its edges, alike for `serve` and the command (None: refused)."""
    problems, _ = _serve_reads(monkeypatch, **environ)
    assert (problems == []) is (port is not None), problems
    if port is None:
        with pytest.raises(healthcheck.Refused, match="not a port serve takes"):
            healthcheck.healthz_port()
    else:
        assert healthcheck.healthz_port() == port
