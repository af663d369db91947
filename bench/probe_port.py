"""Fresh-connection probes on the main port and the probe port during a connection burst.

`python -m bench.probe_port [--connections N] [--rounds R] [--seconds S]`

A gateway (`serve --probe-port`) with a 1 s fake signer; wrk opens N connections at once and
sends `/v1/dcc` on them for S seconds. Meanwhile two threads GET `/healthz` every 20 ms, each
on a new connection as an orchestrator's probe does, one on each port. For each round, the
probes' count, failures and p50 / p99 / max latency per port. A new gateway each round, so
every round starts with the burst of N connects.

Prints a Markdown table and writes it to bench/results/probe-port-<time>.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench import procs
from bench.run import keep_markdown
from bench.wrk import run_wrk
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


def _prober(port: int, out: list[tuple[float, bool]], stop: threading.Event) -> None:
    while not stop.is_set():
        out.append(_probe(port))
        time.sleep(PROBE_EVERY_S)


def _figures(probes: list[tuple[float, bool]]) -> str:
    latencies = sorted(seconds * 1000 for seconds, _ in probes)
    failed = sum(1 for _, ok in probes if not ok)
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return (
        f"{len(probes)} ({failed}) | {statistics.median(latencies):.1f} / {p99:.1f} / "
        f"{latencies[-1]:.1f} ms"
    )


def _round(signer_url: str, logs: Path, body: Path, connections: int, seconds: float) -> str:
    with procs.gateway(logs, signer_url, max_in_flight=connections + 100) as gateway:
        ports = {
            "main": urlsplit(gateway.url).port,
            "probe": urlsplit(gateway.probe_url or "").port,
        }
        probes: dict[str, list[tuple[float, bool]]] = {name: [] for name in ports}
        stop = threading.Event()
        threads = [
            threading.Thread(target=_prober, args=(port, probes[name], stop))
            for name, port in ports.items()
            if port is not None
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # both probers going before the burst
        result = run_wrk(
            gateway.url + "/v1/dcc", body, connections=connections, seconds=seconds,
            timeout_s=20,
        )  # fmt: skip
        stop.set()
        for thread in threads:
            thread.join()
    return (
        f"| {connections:,} | {result.rps:.0f} ({result.errors}) | {_figures(probes['main'])} | "
        f"{_figures(probes['probe'])} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_port", description=__doc__)
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    rows = [
        (
            "| connections | wrk req/s (errors) | main port: probes (failed) | p50 / p99 / max | "
            "probe port: probes (failed) | p50 / p99 / max |"
        ),
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        logs = work / "logs"
        logs.mkdir()
        body = work / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        with procs.fake_signer(logs, latency_ms=1000, keys_dir=work / "keys") as signer:
            for connections in args.connections:
                for n in range(args.rounds):
                    print(f"{connections:,} connections, round {n + 1}", flush=True)
                    row = _round(signer.url, logs, body, connections, args.seconds)
                    rows.append(row)
    keep_markdown("probe-port", "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
