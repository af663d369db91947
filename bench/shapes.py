"""S1's load against its limit's, in one gateway: `python -m bench.shapes LLSLL [LSLSL ...]`.

S1's throughput is judged against the gateway's ceiling, measured in other gateway processes
(`bench.run`), and S1's requests have cost 5-13 % more CPU each than the ceiling's. This tells
apart what the shape of the load costs from what differs between processes. Each argument is
one sequence: a fresh fake signer and gateway (pinned as in S1, warmed up as a limit run), then
one window of load per letter, in order, all in that one gateway:

- `L`: the limit runs' shape, signer 0 ms, 64 clients, 15 s;
- `S`: S1's shape, signer 1 s, 1,000 clients, 20 s (with `--pollers`, S1's two `/healthz`
  pollers too);
- `K`: S1's 1,000 clients with the limit's 0 ms signer, 15 s: many callers, none held;
- `M`: S1's 1 s signer with 500 clients, 20 s: requests held at the signer, fewer than the
  gateway could serve (its CPU is not saturated);
- `Q` and `P`: 4,000 clients, 0 ms and 1 s signer, 15 and 20 s.

The fake's latency is switched with `PUT /_control` between windows. Each window reports the
server's steady req/s and CPU per answer, measured as S1's steady state is (`SteadyWindow`),
and its busy share (req/s x CPU per answer, of one core): a window well under 100 % did not
saturate the server, and pays the loop's fixed costs over fewer answers.

`--server proxy` runs the same windows against S3's pass-through proxy (bench/passthrough.py,
its connector unbounded by the load), which has no metrics: its answers are counted at the
fake signer (`/_stats`, `get_credential` answered `ok`), the same count in the steady state.
Side by side with the gateway, this tells what a shape costs the bare stack (uvicorn, FastAPI,
aiohttp) from what it costs the gateway's own work.
The machine drifts from minute to minute: alternate the shapes, repeat the sequences and
compare medians, not single windows. Prints a Markdown table and keeps it as
bench/results/shapes-<time>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import auth as bench_auth
from bench import procs
from bench.run import keep_markdown
from bench.scenarios import (
    CEILING_SETTLE_S,
    S1_SETTLE_S,
    STEADY_END_MARGIN_S,
    SteadyWindow,
    start_poller,
)
from bench.wrk import Load, run_wrk
from signing_gateway.api import examples

#: Each letter's signer latency (ms), clients, seconds and settling time (as `bench.run`).
SHAPES: dict[str, tuple[float, int, float, float]] = {
    "L": (0.0, 64, 15.0, CEILING_SETTLE_S),
    "S": (1000.0, 1000, 20.0, S1_SETTLE_S),
    "K": (0.0, 1000, 15.0, CEILING_SETTLE_S),
    "M": (1000.0, 500, 20.0, S1_SETTLE_S),
    # 4,000 clients take longer to reach their steady state than 1,000.
    "Q": (0.0, 4000, 15.0, CEILING_SETTLE_S + 1.0),
    "P": (1000.0, 4000, 20.0, S1_SETTLE_S + 1.0),
}
SERVERS = ("gateway", "proxy")
#: The proxy's connections to the signer: more than any shape holds (its default is 1,024).
_PROXY_CONNECTIONS = 8192


def _signer_answered(signer: procs.Proc) -> Callable[[], float]:
    """A counter of the fake signer's `get_credential` answers `ok` (the proxy's 2xx)."""

    def answered() -> float:
        totals = httpx.get(f"{signer.url}/_stats", timeout=5).json()["totals"]
        return float(totals.get("get_credential", {}).get("ok", 0))

    return answered


def _window(
    gw: procs.Proc,
    load: Load,
    logs: Path,
    shape: str,
    *,
    pollers: bool,
    answered: Callable[[], float] | None,
) -> dict[str, Any]:
    """One window of `shape`'s load on `gw`: its steady figures."""
    _, clients, seconds, settle = SHAPES[shape]
    polling = []
    if pollers and shape == "S" and answered is None:
        # S1's two: the port the clients use, and the probe port (`procs.gateway` has one).
        bases = [gw.url, *([gw.probe_url] if gw.probe_url else [])]
        for n, base in enumerate(bases):
            polling.append(start_poller(base, seconds, logs / f"poller-{n}.json"))
    window = SteadyWindow(gw, settle=settle, end=seconds - STEADY_END_MARGIN_S, answered=answered)
    result = run_wrk(gw.url + "/v1/dcc", load, connections=clients, seconds=seconds,
                     timeout_s=10)  # fmt: skip
    for poller in polling:
        poller.wait(timeout=seconds + 60)
    figures = window.figures() or {}
    if "rps" in figures:
        figures["busy"] = round(figures["rps"] * figures["cpu_us_per_request"] / 1e6, 2)
    return figures | {"errors": result.errors}


def _server(server: str, logs: Path, signer: procs.Proc, load: Load) -> Any:
    """The server under test, started (a context manager)."""
    if server == "proxy":
        env = {"BENCH_SIGNER_URL": signer.url, "BENCH_PROXY_CONNECTIONS": str(_PROXY_CONNECTIONS)}
        return procs.uvicorn_app(logs, "passthrough", "bench.passthrough:create_app", env)
    return procs.gateway(logs, signer.url, auth=load.auth, max_in_flight=1024)


def sequence(
    letters: str, load: Load, logs: Path, *, pollers: bool, server: str = "gateway"
) -> list[dict[str, Any]]:
    """A fresh fake signer and server, then one window per letter of `letters`."""
    with (
        procs.pinned(enabled=True),
        procs.fake_signer(logs, latency_ms=0, keys_dir=logs / "keys") as signer,
        _server(server, logs, signer, load) as gw,
    ):
        answered = _signer_answered(signer) if server == "proxy" else None
        run_wrk(gw.url + "/v1/dcc", load, connections=64, seconds=3)  # as a limit run's
        windows = []
        for shape in letters:
            latency_ms = SHAPES[shape][0]
            httpx.put(f"{signer.url}/_control", json={"latencyMs": latency_ms}).raise_for_status()
            figures = _window(gw, load, logs, shape, pollers=pollers, answered=answered)
            windows.append(
                {"shape": shape, "server": server, **figures, "load": round(os.getloadavg()[0], 2)}
            )
            print(shape, figures, flush=True)
        return windows


_COLUMNS = (
    "sequence", "window", "server", "shape", "req/s", "CPU µs per answer", "busy", "wrk errors",
    "load average",
)  # fmt: skip


def _table(runs: list[tuple[str, list[dict[str, Any]]]], command: str) -> str:
    lines = [
        f"Shapes (`{command}`): steady req/s and CPU µs per answer, per window.",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "---|" * len(_COLUMNS),
    ]
    for letters, windows in runs:
        for n, w in enumerate(windows, 1):
            lines.append(
                f"| {letters} | {n} | {w['server']} | {w['shape']} | {w.get('rps', '-')} | "
                f"{w.get('cpu_us_per_request', '-')} | {w.get('busy', '-')} | {w['errors']} | "
                f"{w['load']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shapes", description=__doc__)
    parser.add_argument(
        "sequences", nargs="+", help=f"letters {', '.join(SHAPES)}, e.g. LLSLL; a sequence "
        "written SERVER:LETTERS runs on that server (gateway or proxy), e.g. proxy:LKL",
    )  # fmt: skip
    parser.add_argument("--pollers", action="store_true", help="S1's /healthz pollers in S")
    parser.add_argument(
        "--server", choices=SERVERS, default="gateway",
        help="the server of sequences that name none (default: gateway)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    planned: list[tuple[str, str]] = []
    for text in args.sequences:
        server, _, letters = text.rpartition(":")
        server = server or args.server
        if server not in SERVERS or not letters or set(letters) - set(SHAPES):
            parser.error(
                f"{text!r}: a sequence is letters of {', '.join(SHAPES)}, after an optional "
                f"server ({' or '.join(SERVERS)}) and a colon"
            )
        planned.append((server, letters))
    procs.stop_children_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        logs = Path(tmp)
        body = logs / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        load = Load(body, bench_auth.make(logs))
        runs = [
            (letters, sequence(letters, load, logs, pollers=args.pollers, server=server))
            for server, letters in planned
        ]
    command = " ".join(["python -m bench.shapes", *(argv if argv is not None else sys.argv[1:])])
    keep_markdown("shapes", _table(runs, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
