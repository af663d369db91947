"""Drive a target with wrk (an external C load generator) and parse its summary."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.auth import TOKEN_VAR, BenchAuth
from bench.procs import LOOPBACK, RUN_DIR

SCRIPT = Path(__file__).with_name("dcc.lua")
#: The environment variable wrk's script reads the request body's file name from.
BODY_VAR = "BENCH_BODY_FILE"


@dataclass(frozen=True)
class Load:
    """What wrk sends: a JSON body (from a file) and the caller's bearer token, to /v1/dcc.

    `script` and `extra_env`: another wrk script and what it reads besides the body and the
    token (bench/endpoints.lua: the method, the session mode).
    """

    body_file: Path
    auth: BenchAuth
    script: Path = SCRIPT
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """wrk's environment additions: where the script finds the body and the token."""
        return {BODY_VAR: str(self.body_file), TOKEN_VAR: self.auth.token, **self.extra_env}


def ensure_wrk() -> str:
    """Path of wrk; install it with apt-get when missing and we are root, else explain."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk missing: apt-get install -y wrk", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench needs wrk: sudo apt-get install -y wrk")
    return found


@dataclass
class WrkResult:
    requests: int
    seconds: float
    connect_errors: int
    read_errors: int
    write_errors: int
    status_errors: int
    timeouts: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    command: str
    #: Answers by status, where the script counts them (bench/endpoints.lua), else empty.
    statuses: dict[str, int] = field(default_factory=dict)
    #: A session load's 200s by step (`prepared`, `issued`), else empty.
    steps: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        """Responses with a status below 400."""
        return self.requests - self.status_errors

    @property
    def errors(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.status_errors
            + self.timeouts
        )

    @property
    def rps(self) -> float:
        return self.ok / self.seconds


def wrk_command(
    url: str, *, connections: int, seconds: float, threads: int, timeout_s: float,
    script: Path = SCRIPT,
) -> list[str]:  # fmt: skip
    return [
        ensure_wrk(), "-t", str(min(threads, connections)), "-c", str(connections),
        "-d", f"{seconds:g}s",
        "--timeout", f"{timeout_s:g}s", "-s", str(script), "--latency", url,
    ]  # fmt: skip


def shown_command(command: list[str], load: Load) -> str:
    """A wrk command as the report prints it, runnable as printed.

    With the environment the script reads: the body file under `$RUN_DIR`, the token from
    `$BENCH_TOKEN` (minted at the start of the run: `python -m bench.auth`), the load's
    other variables; the server's port as `$PORT`.
    """
    text = " ".join(["wrk", *command[1:]]).replace(str(load.script), f"bench/{load.script.name}")
    text = re.sub(rf"http://{re.escape(LOOPBACK)}:\d+/", f"http://{LOOPBACK}:$PORT/", text)
    body = str(load.body_file).replace(str(load.body_file.parent), RUN_DIR, 1)
    extra = "".join(f"{name}={value} " for name, value in load.extra_env.items())
    token = f'"${TOKEN_VAR}"' if load.auth.token else ""  # none: the probes send no token
    return f"{extra}{BODY_VAR}={body} {TOKEN_VAR}={token} {text}"


def run_wrk(
    url: str,
    load: Load,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    timeout_s: float = 30.0,
) -> WrkResult:
    command = wrk_command(
        url, connections=connections, seconds=seconds, threads=threads, timeout_s=timeout_s,
        script=load.script,
    )  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **load.env()},
        check=False,
        timeout=seconds + timeout_s + 60,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        connect_errors=data["connect_errors"],
        read_errors=data["read_errors"],
        write_errors=data["write_errors"],
        status_errors=data["status_errors"],
        timeouts=data["timeouts"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        command=shown_command(command, load),
        statuses={str(k): int(v) for k, v in data.get("statuses", {}).items()},
        steps={k: int(data[k]) for k in ("prepared", "issued") if data.get(k)},
    )


def wrk_version() -> str:
    done = subprocess.run([ensure_wrk(), "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].strip()
