"""Fresh-connection probes on the main port and the probe port during a connection burst.

`python -m bench.probe_port [--connections N] [--rounds R] [--seconds S]`

A gateway (`serve --probe-port`) with a 1 s fake signer; wrk opens N connections at once and
sends `/v1/dcc` on them for S seconds. Meanwhile two threads GET `/healthz` on a 20 ms
schedule, each on a new connection as an orchestrator's probe does, one on each port. For each
round, the probes' count, failures and p50 / p99 / max latency per port. The percentiles also
count the ticks a slow probe held up, as `bench.poller`'s do (no coordinated omission). A new
gateway each round, so every round starts with the burst of N connects.

Prints a Markdown table and writes it to bench/results/probe-port-<time>.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import auth as bench_auth
from bench import poller, procs, scenarios
from bench.run import keep_markdown
from bench.wrk import Load, run_wrk
from signing_gateway.api import examples

PROBE_EVERY_S = 0.02


def _probe(port: int) -> tuple[float, bool]:
    """GET /healthz on a new connection: seconds taken and whether it answered 200."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(procs.LOOPBACK, port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
    finally:
        connection.close()
    return time.perf_counter() - started, ok


def _prober(port: int, out: dict[str, Any], stop: threading.Event) -> None:
    """Probe `port` on `PROBE_EVERY_S`'s schedule until `stop`, in `bench.poller`'s shape.

    A probe slower than the interval holds up the ticks after it; `interval_s` lets
    `scenarios.poll_figures` count them with the latency they would have seen.
    """
    out["interval_s"] = PROBE_EVERY_S
    tick = time.perf_counter()
    while not stop.is_set():
        seconds, ok = _probe(port)
        out["latencies"].append(seconds)
        out["failures"] += not ok
        now = time.perf_counter()
        tick = poller.next_tick(tick, now, PROBE_EVERY_S)
        stop.wait(max(0.0, tick - now))


def _cells(polls: dict[str, Any]) -> str:
    figures = scenarios.poll_figures(polls)
    return (
        f"{figures['polls']} ({figures['failures']}, {figures.get('skipped_ticks', 0)} ticks "
        f"held up) | {figures['p50_ms']:.1f} / "
        f"{figures['p99_ms']:.1f} / {figures['max_ms']:.1f} ms"
    )


def _round(signer_url: str, logs: Path, load: Load, connections: int, seconds: float) -> str:
    with procs.gateway(
        logs, signer_url, auth=load.auth, max_in_flight=connections + 100
    ) as gateway:
        assert gateway.probe_url is not None  # procs.gateway serves with a probe port
        ports = {"main": gateway.url, "probe": gateway.probe_url}
        probes: dict[str, dict[str, Any]] = {
            name: {"latencies": [], "failures": 0} for name in ports
        }
        stop = threading.Event()
        threads = [
            threading.Thread(target=_prober, args=(urlsplit(url).port, probes[name], stop))
            for name, url in ports.items()
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # both probers going before the burst
        result = run_wrk(
            gateway.url + "/v1/dcc", load, connections=connections, seconds=seconds,
            timeout_s=20,
        )  # fmt: skip
        stop.set()
        for thread in threads:
            thread.join()
    return (
        f"| {connections:,} | {result.rps:.0f} ({result.errors}) | {_cells(probes['main'])} | "
        f"{_cells(probes['probe'])} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_port", description=__doc__)
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    procs.stop_children_on_sigterm()
    rows = [
        (
            "| connections | wrk req/s (errors) | main port: probes (failed, ticks held up) | "
            "p50 / p99 / max | probe port: probes (failed, ticks held up) | p50 / p99 / max |"
        ),
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        body = work / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        load = Load(body, bench_auth.make(work))
        with procs.fake_signer(logs, latency_ms=1000, keys_dir=work / "keys") as signer:
            for connections in args.connections:
                for n in range(args.rounds):
                    print(f"{connections:,} connections, round {n + 1}", flush=True)
                    rows.append(_round(signer.url, logs, load, connections, args.seconds))
    keep_markdown("probe-port", "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
