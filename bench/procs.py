"""Start and stop the processes of a bench run: fake signer, gateway variants, helpers."""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.auth import BenchAuth
from signing_gateway.cli import served_loop
from signing_gateway.runtime.fd_limit import SPARE

LOOPBACK = "127.0.0.1"
#: How the reports show the run's temporary directory (request body, JWKS, signer keys).
RUN_DIR = "$RUN_DIR"
#: How the reports show the fake signer's URL: its port is picked at start.
SIGNER_URL_SHOWN = f"http://{LOOPBACK}:$SIGNER_PORT"
#: File descriptors allowed to each child: S4 holds 10k inbound plus 10k outbound sockets.
CHILD_NOFILE = 65536


#: CPUs for the server under test while `pinned()` is on; None: anywhere.
_server_cpus: set[int] | None = None


@contextlib.contextmanager
def pinned(*, enabled: bool) -> Iterator[None]:
    """Give the server under test CPU 0 and everything else (this driver, the fake signer, wrk,
    the poller: children inherit the driver's affinity) the other CPUs, while in this block.

    In production the gateway's container has its cores to itself; on a 2-core bench machine
    shared with the load generator and the signer it is otherwise descheduled for tens of ms at
    a time, which shows up as /healthz latency and loop lag the gateway did not cause.
    """
    global _server_cpus  # noqa: PLW0603 - one bench run at a time
    every = os.sched_getaffinity(0)
    if not enabled or len(every) < 2:
        yield
        return
    server = {min(every)}
    os.sched_setaffinity(0, every - server)
    _server_cpus = server
    try:
        yield
    finally:
        _server_cpus = None
        os.sched_setaffinity(0, every)


def stop_children_on_sigterm() -> None:
    """Make SIGTERM end this driver as Ctrl-C does: through its `finally` blocks.

    Python's default for SIGTERM ends the process on the spot, and the fake signer, gateway
    and wrk it started would go on running, holding their ports and CPUs: what `timeout`, a
    CI job's cancel or a plain `kill` of a bench command sends. Each bench entry point that
    starts processes calls this first.
    """

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def _child_setup(*, server: bool) -> None:
    """In the child: the fd limit, and the server CPU when pinned."""
    _raise_nofile()
    if server and _server_cpus is not None:
        os.sched_setaffinity(0, _server_cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _raise_nofile() -> None:
    """Lift the fd limit: to `CHILD_NOFILE` where the hard limit may be raised, else to it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CHILD_NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_ticks() -> dict[str, list[int]]:
    """Each CPU's time counters from /proc/stat (user .. steal), or {} where there is none."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    return {
        fields[0]: [int(x) for x in fields[1:9]]
        for fields in (line.split() for line in lines)
        if fields and fields[0].startswith("cpu") and fields[0][3:].isdigit()
    }


def steal_shares(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, float]:
    """Per CPU, the share of the time between two `cpu_ticks()` the host ran something else.

    On a virtual machine "steal" is time the hypervisor gave another guest while this one had
    work to run: the server under test, pinned to its CPU, simply gets less of it.
    """
    shares = {}
    for name, end in after.items():
        start = before.get(name)
        if start is None:
            continue
        delta = [b - a for a, b in zip(start, end, strict=True)]
        total = sum(delta)
        shares[name] = round(delta[7] / total, 3) if total > 0 else 0.0
    return shares


def child_nofile() -> int:
    """The fd limit every child gets (the driver lifts its own the same way, wrk inherits it)."""
    _raise_nofile()
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def signer_bound_for(in_flight: int, *, nofile: int, wanted: int) -> int:
    """Signer connections the gateway can hold beside `in_flight` caller connections.

    Each in-flight signer call holds a connection of its own (HTTP/1.1), so a gateway with
    10,000 callers connected needs ~20,000 descriptors. Where the fd limit is lower (a
    container whose hard limit cannot be raised), the bulkhead is sized to what fits: the
    excess waits in the bulkhead's queue instead of failing to connect (EMFILE), which the
    breaker would count as the signer being down.
    """
    return max(1, min(wanted, nofile - in_flight - SPARE))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path
    #: The gateway's probe listener (`serve --probe-port`), where an orchestrator probes.
    probe_url: str | None = None
    #: How it was started, as the report prints it (`described`).
    started: dict[str, Any] = field(default_factory=dict)

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss_bytes(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def wait_http(url: str, proc: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    """Poll `url` until it answers 200 (with a deadline); fail if the process dies."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {limit} s")


def described(
    command: list[str],
    env: Mapping[str, str],
    *,
    exact: Mapping[str, str],
    within: Mapping[str, str],
) -> dict[str, Any]:
    """A start as the report prints it: the command line and the settings added to the
    environment, with the run's own values (ports, temporary paths) shown as variables.

    `exact`: arguments replaced whole (port numbers); `within`: text replaced inside any
    argument or value (URLs, paths).
    """

    def shown(text: str) -> str:
        if text in exact:
            return exact[text]
        for real, placeholder in within.items():
            text = text.replace(real, placeholder)
        return text

    args = ["python" if arg == sys.executable else shown(arg) for arg in command]
    return {"command": " ".join(args), "env": {k: shown(v) for k, v in env.items()}}


def start(
    name: str,
    command: list[str],
    *,
    port: int,
    ready_path: str,
    logs: Path,
    env: Mapping[str, str] | None = None,
    server: bool = False,
    shown_as: Mapping[str, str] | None = None,
) -> Proc:
    """Start `command`, wait until `ready_path` answers 200 on `port`.

    `shown_as`: text of the command and `env` the report shows as variables (`described`);
    the port is shown as `$PORT` unless named there.
    """
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=lambda: _child_setup(server=server),  # noqa: PLW1509 - no threads in the driver
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_http(url + ready_path, popen)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    within = dict(shown_as or {})
    exact = {str(port): within.pop(str(port), "$PORT")}
    exact |= {k: within.pop(k) for k in list(within) if k.isdigit()}
    return Proc(
        name, popen, url, log, started=described(command, env or {}, exact=exact, within=within)
    )


@contextlib.contextmanager
def fake_signer(logs: Path, *, latency_ms: float, keys_dir: Path) -> Iterator[Proc]:
    port = free_port()
    proc = start(
        "fake-signer",
        [
            sys.executable, "-m", "fake_signer", "--role", "all", "--host", LOOPBACK,
            "--port", str(port), "--latency-ms", str(latency_ms),
            "--latency-distribution", "fixed", "--keys-dir", str(keys_dir),
            "--log-level", "warning",
        ],
        port=port,
        ready_path="/healthz",
        logs=logs,
        shown_as={str(port): "$SIGNER_PORT", str(keys_dir.parent): RUN_DIR},
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()


def gateway_env(
    signer_url: str, *, auth: BenchAuth, transport: str, max_in_flight: int, deadline_s: float
) -> dict[str, str]:
    """Settings of the gateway under test: fake signers, tokens checked, bounds for the load.

    Callers' tokens are checked as in production (`auth.mode=jwt`, against `auth`'s keys).
    """
    env: dict[str, str] = {}
    for group in ("EU_SIGNER", "DOMESTIC_SIGNER"):
        prefix = f"SIGNING_GATEWAY_{group}__"
        env |= {
            prefix + "URL": signer_url,
            prefix + "TRANSPORT": transport,
            prefix + "MAX_CONNECTIONS": str(max_in_flight + 8),  # > the bulkhead: the rule
            prefix + "READ_TIMEOUT": str(deadline_s),
            prefix + "POOL_TIMEOUT": str(deadline_s),
            prefix + "RESILIENCE__MAX_IN_FLIGHT": str(max_in_flight),
            prefix + "RESILIENCE__MAX_PENDING": str(max_in_flight),
            # Calls over the bound (S4 under a low fd limit) wait for a slot, not shed at 1 s.
            prefix + "RESILIENCE__MAX_WAIT_SECONDS": str(deadline_s),
            prefix + "RESILIENCE__ATTEMPT_TIMEOUT_SECONDS": str(deadline_s),
        }
    env |= {
        "SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS": "true",
        "SIGNING_GATEWAY_REQUEST_DEADLINE_SECONDS": str(deadline_s),
        **auth.gateway_env(),
    }
    return env


@contextlib.contextmanager
def gateway(
    logs: Path, signer_url: str, *, auth: BenchAuth, name: str = "gateway",
    transport: str = "aiohttp", max_in_flight: int = 1024, deadline_s: float = 20.0,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Proc]:  # fmt: skip
    """The gateway under test (`serve`), checking callers' tokens against `auth`'s keys."""
    port, probe_port = free_port(), free_port()
    env = gateway_env(
        signer_url, auth=auth, transport=transport, max_in_flight=max_in_flight,
        deadline_s=deadline_s,
    )  # fmt: skip
    proc = start(
        name,
        [sys.executable, "-m", "signing_gateway", "serve", "--host", LOOPBACK, "--port", str(port),
         "--backlog", "16384", "--probe-port", str(probe_port)],
        port=port,
        ready_path="/readyz",
        logs=logs,
        env=env | dict(extra_env or {}),
        server=True,
        shown_as={
            str(probe_port): "$PROBE_PORT",
            signer_url: SIGNER_URL_SHOWN, str(auth.jwks_file.parent): RUN_DIR,
        },
    )  # fmt: skip
    proc.probe_url = f"http://{LOOPBACK}:{probe_port}"
    try:
        wait_http(proc.probe_url + "/healthz", proc.popen)
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def redis_server(logs: Path) -> Iterator[str]:
    """A throwaway `redis-server` on a free loopback port, no persistence: its URL.

    The tests' server (`tests/support/redis_server.py`). On the load side's CPUs when pinned
    (children inherit the driver's affinity), as the fake signer is: in production the store
    runs beside the gateway, not in its container. `logs` is where its log is copied.
    """
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    # Only here: the tests' support imports pytest, which no other bench needs.
    from tests.support.redis_server import RedisStartError, running_redis_server  # noqa: PLC0415

    try:
        with running_redis_server() as server:
            try:
                yield server.url
            finally:
                server.stop()
                (logs / "redis-server.log").write_text(server.log())
    except RedisStartError as exc:
        raise SystemExit(f"redis-server did not start: {exc}") from None


#: Where a bench's gateway keeps its issuance sessions (`--session-store`).
SESSION_STORES = ("memory", "redis")


def add_session_store_option(parser: argparse.ArgumentParser) -> None:
    """A bench's `--session-store` option (`session_store_env` reads it)."""
    parser.add_argument(
        "--session-store",
        choices=SESSION_STORES,
        default="memory",
        help="where issuance sessions live (redis: a throwaway redis-server on loopback)",
    )


@contextlib.contextmanager
def session_store_env(logs: Path, kind: str) -> Iterator[dict[str, str]]:
    """The gateway's settings for the session store `kind`, with its server while in the block.

    Nothing for the memory store (the default); for `redis`, a throwaway server
    (`redis_server`).
    """
    if kind == "memory":
        yield {}
        return
    with redis_server(logs) as url:
        yield {
            "SIGNING_GATEWAY_SESSION_STORE__KIND": "redis",
            "SIGNING_GATEWAY_SESSION_STORE__REDIS_URL": url,
        }


@contextlib.contextmanager
def uvicorn_app(logs: Path, name: str, factory: str, env: Mapping[str, str]) -> Iterator[Proc]:
    """A bench-only comparison app (blocking gateway, pass-through proxy) under uvicorn.

    It runs on the gateway's event loop (`SIGNING_GATEWAY_LOOP`, default asyncio) and, as
    `serve` does, without uvicorn's X-Forwarded-* layer, so S3 compares the code paths, not
    the servers' settings.
    """
    port = free_port()
    proc = start(
        name,
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", LOOPBACK,
         "--port", str(port), "--no-access-log", "--log-level", "warning", "--backlog", "16384",
         "--loop", served_loop(), "--no-proxy-headers"],
        port=port,
        ready_path="/healthz",
        logs=logs,
        env=env,
        server=True,
        shown_as={url: SIGNER_URL_SHOWN for url in env.values() if url.startswith("http://")},
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()
