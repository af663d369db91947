"""S1's load against its limit's, in one gateway: `python -m bench.shapes LLSLL [LSLSL ...]`.

S1's throughput is judged against the gateway's ceiling, measured in other gateway processes
(`bench.run`), and S1's requests have cost 5-13 % more CPU each than the ceiling's. This tells
apart what the shape of the load costs from what differs between processes. Each argument is
one sequence: a fresh fake signer and gateway (pinned as in S1, warmed up as a limit run), then
one window of load per letter, in order, all in that one gateway:

- `L`: the limit runs' shape, signer 0 ms, 64 clients, 15 s;
- `S`: S1's shape, signer 1 s, 1,000 clients, 20 s (with `--pollers`, S1's two `/healthz`
  pollers too).

The fake's latency is switched with `PUT /_control` between windows. Each window reports the
gateway's steady req/s and CPU per answer, measured as S1's steady state is (`SteadyWindow`).
The machine drifts from minute to minute: alternate the shapes, repeat the sequences and
compare medians, not single windows. Prints a Markdown table and keeps it as
bench/results/shapes-<time>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
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
}


def _window(gw: procs.Proc, load: Load, logs: Path, shape: str, *, pollers: bool) -> dict[str, Any]:
    """One window of `shape`'s load on `gw`: its steady figures."""
    _, clients, seconds, settle = SHAPES[shape]
    polling = []
    if pollers and shape == "S":
        # S1's two: the port the clients use, and the probe port (`procs.gateway` has one).
        bases = [gw.url, *([gw.probe_url] if gw.probe_url else [])]
        for n, base in enumerate(bases):
            polling.append(start_poller(base, seconds, logs / f"poller-{n}.json"))
    window = SteadyWindow(gw, settle=settle, end=seconds - STEADY_END_MARGIN_S)
    result = run_wrk(gw.url + "/v1/dcc", load, connections=clients, seconds=seconds,
                     timeout_s=10)  # fmt: skip
    for poller in polling:
        poller.wait(timeout=seconds + 60)
    return (window.figures() or {}) | {"errors": result.errors}


def sequence(letters: str, load: Load, logs: Path, *, pollers: bool) -> list[dict[str, Any]]:
    """A fresh fake signer and gateway, then one window per letter of `letters`."""
    with (
        procs.pinned(enabled=True),
        procs.fake_signer(logs, latency_ms=0, keys_dir=logs / "keys") as signer,
        procs.gateway(logs, signer.url, auth=load.auth, max_in_flight=1024) as gw,
    ):
        run_wrk(gw.url + "/v1/dcc", load, connections=64, seconds=3)  # as a limit run's
        windows = []
        for shape in letters:
            latency_ms = SHAPES[shape][0]
            httpx.put(f"{signer.url}/_control", json={"latencyMs": latency_ms}).raise_for_status()
            figures = _window(gw, load, logs, shape, pollers=pollers)
            windows.append({"shape": shape, **figures, "load": round(os.getloadavg()[0], 2)})
            print(shape, figures, flush=True)
        return windows


def _table(runs: list[tuple[str, list[dict[str, Any]]]], *, pollers: bool) -> str:
    command = " ".join(["python -m bench.shapes", *(s for s, _ in runs)] + ["--pollers"] * pollers)
    lines = [
        f"Shapes (`{command}`): steady req/s and CPU µs per answer, per window.",
        "",
        "| sequence | window | shape | req/s | CPU µs per answer | wrk errors | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    for letters, windows in runs:
        for n, w in enumerate(windows, 1):
            lines.append(
                f"| {letters} | {n} | {w['shape']} | {w.get('rps', '-')} | "
                f"{w.get('cpu_us_per_request', '-')} | {w['errors']} | {w['load']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shapes", description=__doc__)
    parser.add_argument("sequences", nargs="+", help="letters L and S, e.g. LLSLL")
    parser.add_argument("--pollers", action="store_true", help="S1's /healthz pollers in S")
    args = parser.parse_args(argv)
    if any(set(s) - set(SHAPES) for s in args.sequences):
        parser.error(f"sequences are made of {', '.join(SHAPES)}")
    procs.stop_children_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        logs = Path(tmp)
        body = logs / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        load = Load(body, bench_auth.make(logs))
        runs = [(s, sequence(s, load, logs, pollers=args.pollers)) for s in args.sequences]
    keep_markdown("shapes", _table(runs, pollers=args.pollers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
