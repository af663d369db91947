"""Run `python -m signing_gateway serve` as a real process on a free port, and stop it.

The gateway reads its settings from `SIGNING_GATEWAY_*` variables, as in production; trust is
fetched from the fake signers' `GET /keys`. Ready means `/readyz` answered 200 (both signers
probed), polled with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx
import psutil

from tests.support.image_replay import Image
from tests.support.polling import until
from tests.support.processes import free_port, read_log, stop_process
from tests.support.terminal import AS_A_TERMINAL_RUNS_IT

READY_TIMEOUT = 30.0


class GatewayStartError(RuntimeError):
    """The gateway process exited or did not become ready before the deadline."""


@dataclass
class GatewayProcess:
    """A running gateway process."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_file: IO[bytes]

    def log(self) -> str:
        """Everything the process wrote so far."""
        return read_log(self.log_file)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, then SIGKILL; return the exit code."""
        code = stop_process(self.process, timeout)
        self.log_file.close()
        return code


def gateway_env(eu_url: str, domestic_url: str, **extra: str) -> dict[str, str]:
    """Settings for a gateway in front of the two fake signers (trust fetched from them).

    Caller authentication is switched off: these tests are about issuance, not tokens. The
    fakes have unlimited capacity, so the bulkhead is sized like their pool; one attempt per
    call and a breaker that does not trip keep each test's signer fault its own (retries and
    the breaker are pinned by the resilience tests).
    """
    signer = {
        "MAX_CONNECTIONS": "300",
        "RESILIENCE__MAX_IN_FLIGHT": "256",
        "RESILIENCE__MAX_ATTEMPTS": "1",
        "RESILIENCE__BREAKER_CONSECUTIVE_FAILURES": "1000000",
        "RESILIENCE__BREAKER_MIN_CALLS": "1000000",
    }
    return {
        "SIGNING_GATEWAY_AUTH__MODE": "disabled",
        "SIGNING_GATEWAY_EU_SIGNER__URL": eu_url,
        "SIGNING_GATEWAY_DOMESTIC_SIGNER__URL": domestic_url,
        **{
            f"SIGNING_GATEWAY_{name}_SIGNER__{key}": v
            for name in ("EU", "DOMESTIC")
            for key, v in signer.items()
        },
        "SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS": "true",
        "SIGNING_GATEWAY_READINESS_PROBE_INTERVAL_SECONDS": "0.5",
        "SIGNING_GATEWAY_LOG_LEVEL": "WARNING",
        **extra,
    }


def wait_ready(gateway: GatewayProcess, url: str | None = None) -> None:
    """Return once `url` (the gateway's /readyz on its port by default) answers 200.

    Raises:
        GatewayStartError: the process exited, or the deadline passed first; with its log.
    """
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise GatewayStartError(f"gateway exited:\n{gateway.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url or f"{gateway.base_url}/readyz", timeout=1).status_code == 200:
                return
        # Polling interval of a readiness probe, not a wait for a fixed time.
        time.sleep(0.05)
    raise GatewayStartError(f"gateway not ready in {READY_TIMEOUT:g} s:\n{gateway.log()}")


#: How the gateway is run by default: `serve`, with its drain.
SERVE = ("-m", "signing_gateway", "serve")


@contextlib.contextmanager
def running_gateway_process(
    env: Mapping[str, str],
    *args: str,
    program: Sequence[str] = SERVE,
    wrapper: Sequence[str] = (),
    as_a_terminal: bool = False,
    ready: bool = True,
    image: Image | None = None,
) -> Iterator[GatewayProcess]:
    """A ready gateway process for the block (`args`: more options), always stopped.

    `program`: the interpreter's arguments before `--host` and `--port` (another module,
    such as uvicorn's own command line). `wrapper`: a command that runs the interpreter
    (such as `unshare`); the process is then the wrapper's. `as_a_terminal`: run as a
    terminal's foreground job, SIGINT at its default and in a process group of its own, to
    which `tests.support.terminal.press_ctrl_c` sends Ctrl-C. `ready`: the block begins once
    the gateway is ready; else at once. `image`: run as a container of the replayed image runs
    (`tests.support.image_replay`): its entry point and command, as its user on a read-only
    root, in its working directory, with its environment and `env` only (none of the tests'
    own variables).
    """
    if as_a_terminal:
        wrapper = (*AS_A_TERMINAL_RUNS_IT, *wrapper)
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".log")  # noqa: SIM115
    command = [sys.executable, *program]
    options: dict[str, Any] = {"env": {**os.environ, **env}}
    if image is not None:
        command = image.as_a_container(image.program([*image.entrypoint, *image.cmd]))
        options = {"env": {**image.env, **env}, "cwd": image.path(image.workdir)}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, or the image's
        [*wrapper, *command, "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=as_a_terminal,
        **options,
    )
    gateway = GatewayProcess(process, f"http://127.0.0.1:{port}", log_file)
    try:
        if ready:
            wait_ready(gateway)
        yield gateway
    finally:
        gateway.stop()


async def serving_workers(gateway: GatewayProcess, count: int) -> list[psutil.Process]:
    """The worker processes of `serve --workers count`, once each one serves."""
    await until(lambda: gateway.log().count("Application startup complete.") >= count, 15)
    children = psutil.Process(gateway.process.pid).children()
    workers = [child for child in children if "spawn_main" in " ".join(child.cmdline())]
    assert len(workers) == count, children
    return workers
