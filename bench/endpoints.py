"""Capacity per endpoint: `python -m bench.endpoints` (figures for sizing, docs/operations.md).

One fake signer at 0 ms and one gateway (`serve`, pinned as S1's limit runs are: CPU 0 to
itself, the signer, wrk and this driver on the others), then, route by route, the ceiling
with wrk as S3 measures it (64 clients, a 3 s warm-up, then the window): answers per second,
the gateway's CPU time per answer, and every answer that was not a 200. Then the gateway's
RSS after start-up and after the load, idle. Writes bench/results/endpoints-<time>.json and
the block between the endpoints markers of docs/benchmarks.md.

    python -m bench.endpoints                 # every route, 15 s windows, doc rewritten
    python -m bench.endpoints --seconds 3 --no-docs --only dcc,healthz   # a try
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import auth as bench_auth
from bench import procs, report, scenarios
from bench.run import RESULTS, ROOT, machine, versions
from bench.wrk import Load, ensure_wrk
from signing_gateway.api import examples
from signing_gateway.cli import served_loop
from signing_gateway.security.settings import ALL_SCOPES

DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- endpoints:start -->", "<!-- endpoints:end -->"
SCRIPT = Path(__file__).with_name("endpoints.lua")
CLIENTS = 64
#: The S3 window (bench.run: 15 s at full length).
DEFAULT_SECONDS = 15.0
#: After start-up and after the load: how long the gateway is left idle before its RSS is read.
IDLE_S = 2.0
#: How long the gateway may take to end what it still holds after the last window.
DRAIN_WITHIN_S = 30.0
#: A session row's route (prepare-issue and issue in turn, bench/endpoints.lua).
SESSION = "session"


@dataclass(frozen=True)
class Route:
    """One row of the table: what wrk sends, and where."""

    name: str
    method: str
    path: str
    #: The JSON body (None: none); a session's is the issue body with @STOKEN@, @COMMITMENT@.
    body: Any = None
    #: Served where docs/operations.md points its callers: the probe port for probes, scrapes.
    probe_port: bool = False
    session: bool = False

    @property
    def shown(self) -> str:
        if self.session:
            return "`POST /v1/domestic/prepare-issue` + `/issue`, per session"
        return f"`{self.method} {self.path}`"


def routes(valid_from: str) -> list[Route]:
    """Every measured route, with a valid body each (signing_gateway/api/examples.py)."""
    domestic = dict(examples.DOMESTIC_ATTRIBUTES, validFrom=valid_from)
    issue = {
        "stoken": "@STOKEN@",
        "issueCommitmentMessage": "@COMMITMENT@",
        "credentialsAttributes": [dict(domestic, isPaperProof="0")],
    }
    return [
        Route("dcc", "POST", "/v1/dcc", examples.EU_VACCINATION),
        Route("static", "POST", "/v1/domestic/static", {"credentialAttributes": domestic}),
        Route("print", "POST", "/v1/print",
              {"domestic": domestic, "european": examples.EU_VACCINATION}),
        Route("prepare-issue", "POST", "/v1/domestic/prepare-issue"),
        Route(SESSION, "POST", "/v1/domestic/prepare-issue", issue, session=True),
        Route("keys", "GET", "/v1/keys"),
        Route("healthz", "GET", "/healthz", probe_port=True),
        Route("readyz", "GET", "/readyz", probe_port=True),
        Route("metrics", "GET", "/metrics", probe_port=True),
    ]  # fmt: skip


def load_for(route: Route, work: Path, auth: bench_auth.BenchAuth) -> Load:
    """wrk's load for `route`: its body file under `work`, the token (none for the probes)."""
    body = work / f"{route.name}.json"
    if route.body is not None:
        body.write_text(json.dumps(route.body))
    extra = {"BENCH_METHOD": route.method}
    if route.session:
        extra["BENCH_SESSION"] = "1"
    elif route.method == "POST" and route.body is None:
        extra["BENCH_BODY"] = "none"
    if route.probe_port:
        auth = dataclasses.replace(auth, token="")
    return Load(body, auth, script=SCRIPT, extra_env=extra)


def session_cpu_us(session: dict[str, Any], prepare_cpu_us: float | None) -> float | None:
    """The gateway's CPU µs per session (prepare-issue + issue) from a session run.

    Every issue answered 200 spent one prepare-issue; the prepare-issues answered but not
    spent when the window closed (one per connection at most) cost what a prepare-issue costs
    alone (`prepare_cpu_us`, its own row), and are taken out. Without that row, they are not.
    """
    steps = session.get("steps", {})
    issued, prepared = int(steps.get("issued", 0)), int(steps.get("prepared", 0))
    if not issued:
        return None
    unspent = max(0, prepared - issued) * (prepare_cpu_us or 0.0) / 1e6
    return round((float(session["cpu_seconds"]) - unspent) / issued * 1e6, 1)


def measure(
    only: set[str] | None, *, seconds: float, pin: bool, session_store: str = "memory"
) -> dict[str, Any]:
    ensure_wrk()
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "pinned": pin,
        "loop": served_loop(),
        "clients": CLIENTS,
        "seconds": seconds,
        "session_store": session_store,
        "routes": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-endpoints-") as tmp:
        work = Path(tmp)
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # The callers of every route: one token with every scope (dcc, domestic, keys).
        auth = bench_auth.make(work, scopes=ALL_SCOPES)
        with contextlib.ExitStack() as stack:
            stack.enter_context(procs.pinned(enabled=pin))
            signer = stack.enter_context(
                procs.fake_signer(logs, latency_ms=0, keys_dir=work / "keys")
            )
            store_env = stack.enter_context(procs.session_store_env(logs, session_store))
            gateway = stack.enter_context(
                procs.gateway(logs, signer.url, auth=auth, max_in_flight=256, extra_env=store_env)
            )
            time.sleep(IDLE_S)
            results["rss_started_mb"] = round(gateway.rss_bytes() / 2**20, 1)
            results["started_as"] = {"signer": signer.started, "server": gateway.started}
            for route in routes(examples.this_hour()):
                if only and route.name not in only:
                    continue
                base = gateway.probe_url if route.probe_port else gateway.url
                print(f"{route.name}: {route.method} {route.path}, {CLIENTS} clients", flush=True)
                figures = scenarios.ceiling(
                    gateway, signer, load_for(route, work, auth), clients=CLIENTS,
                    seconds=seconds, url=f"{base}{route.path}",
                )  # fmt: skip
                results["routes"][route.name] = figures
            results["still_held"] = scenarios.drained(gateway, within=DRAIN_WITHIN_S)
            time.sleep(IDLE_S)
            results["rss_after_load_mb"] = round(gateway.rss_bytes() / 2**20, 1)
    session = results["routes"].get(SESSION)
    if session:
        prepare = results["routes"].get("prepare-issue", {}).get("cpu_us_per_request")
        session["cpu_us_per_session"] = session_cpu_us(session, prepare)
        session["sessions_per_s"] = round(
            session.get("steps", {}).get("issued", 0) / session["seconds"], 1
        )
        if prepare is not None and session["cpu_us_per_session"] is not None:
            session["issue_cpu_us"] = round(session["cpu_us_per_session"] - prepare, 1)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _errors(figures: dict[str, Any]) -> str:
    """Answers other than 200, by status, and wrk's transport errors, by kind: "0" for none."""
    parts = [
        f"{n} x {status}"
        for status, n in sorted(figures.get("statuses", {}).items())
        if status != "200"
    ]
    detail = figures.get("error_detail", {})
    parts += [f"{detail[k]} {k}" for k in ("connect", "read", "write", "timeout") if detail.get(k)]
    return ", ".join(parts) or "0"


def _per_core(cpu_us: float | None) -> str:
    return f"{1e6 / cpu_us:,.0f}" if cpu_us else "-"


def table(results: dict[str, Any]) -> list[str]:
    """The Markdown table of a run's routes, in the order measured."""
    header = (
        "| route | answers/s | gateway CPU | CPU µs per answer | answers per CPU-second "
        "| p50 / p99 ms | answers | errors |"
    )
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    for name, figures in results["routes"].items():
        route = next((r for r in routes("0") if r.name == name), None)
        shown = route.shown if route else name
        rate = figures["statuses"].get("200", 0) / figures["seconds"]
        cpu = figures["cpu_us_per_request"]
        if name == SESSION:
            rate, cpu = figures.get("sessions_per_s", 0.0), figures.get("cpu_us_per_session")
        rows.append(
            f"| {shown} | {rate:,.0f} | {figures['target_cpu_share']:.0%} | "
            f"{'-' if cpu is None else f'{cpu:,.0f}'} | {_per_core(cpu)} | "
            f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f} | {figures['requests']:,} | "
            f"{_errors(figures)} |"
        )
    return rows


def markdown(results: dict[str, Any], command: str) -> str:
    """The doc's block: the run, the table, the RSS, how each figure is made."""
    machine_ = results["machine"]
    started = results["started"].replace("T", " ").removesuffix("+00:00")
    versions_ = ", ".join(f"{k} {v}" for k, v in results["versions"].items())
    placed = (
        "pinned to CPU 0 as S1's limit runs are, the signer, wrk and this driver on the other"
        if results["pinned"]
        else "not pinned"
    )
    run = (
        f"Run {started} UTC: `{command}`, {results['wall_seconds']} s wall. Machine: "
        f"{machine_['cpus']} cores, load average {machine_['load_before'][0]} before, "
        f"{machine_.get('load_after', ['?'])[0]} after. Versions: {versions_}."
    )
    how = (
        f"One gateway (`serve`, started as S3's, `max_in_flight` 256, {placed}; "
        f"{results['loop']} loop) and one fake signer at 0 ms, both for the whole run. Route by "
        f"route, in the order below: wrk with {results['clients']} connections, a 3 s warm-up, "
        f"then a {results['seconds']:g} s window. Every body is a valid request "
        "(signing_gateway/api/examples.py), sent with one caller token that holds every scope; "
        "`/healthz`, `/readyz` and `/metrics` (one scrape per request, last, so the exposition "
        "holds the series of every route before it) go to the probe port, without a token, as "
        "docs/operations.md points probes and scrapes there."
    )
    session = results["routes"].get(SESSION, {})
    issue = session.get("issue_cpu_us")
    rss = (
        f"- Gateway RSS: {results['rss_started_mb']} MB after start-up, "
        f"{results['rss_after_load_mb']} MB after the load, idle ({IDLE_S:g} s after the last "
        f"window's requests had ended; {results['still_held']} still held). What each request "
        "in flight adds: S4 above. From these to replicas and limits: docs/operations.md, Sizing."
    )
    lines = [
        START,
        "## Capacity per endpoint (`python -m bench.endpoints`, bench/endpoints.py)",
        "",
        run,
        "",
        how,
        "",
        *table(results),
        "",
        "- answers/s: 200s over the window (wrk's). gateway CPU: the gateway process's CPU",
        "  time (user + system) over the window's wall time; under 100 %, something else set the",
        "  rate (the load side on the other CPU, or other processes on this one). CPU µs per",
        "  answer: that CPU time over every answer, the figure to size with; answers per",
        "  CPU-second: 1,000,000 / it, what one core fully used would answer at that cost.",
        "- errors: every answer other than 200, by status (counted by bench/endpoints.lua), and",
        "  wrk's connect, read, write and timeout errors.",
        "- one session: each thread of wrk sends `prepare-issue`, keeps its `stoken` and",
        "  `issuerNonce`, and spends it with its next request, `issue`, on whichever of its",
        "  connections is free (sessions belong to the token's subject, not to a connection).",
        "  The row counts sessions: issues answered 200; its CPU is the window's less the",
        "  `prepare-issue`s answered but not spent when it closed (at their own row's cost)."
        + ("" if issue is None else f" The `issue` step alone: {issue:,.0f} µs."),
        rss,
        "",
        "wrk's commands, the gateway's port or probe port as `$PORT` (the bodies and a token with",
        'every scope: `export BENCH_TOKEN=$(python -m bench.endpoints --prepare "$RUN_DIR")`):',
        "",
        "```sh",
        *(f["command"] for f in results["routes"].values()),
        "```",
        END,
    ]
    return "\n".join(lines)


def rewrite(text: str, block: str) -> str:
    """`text` with its endpoints block replaced by `block`; without one, `block` goes before
    the soak block (where bench/report.py puts it), else at the end."""
    return report.replace_block(text, block, start=START, end=END, before=report.BLOCKS["soak"][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.endpoints", description=__doc__)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="window per route")
    parser.add_argument("--only", default="", help="comma-separated routes (default: all)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    parser.add_argument("--no-docs", action="store_true", help="do not update benchmarks.md")
    procs.add_session_store_option(parser)
    parser.add_argument(
        "--prepare",
        type=Path,
        metavar="DIR",
        help="only write the bodies and jwks.json to DIR and print a token (to run the printed "
        "wrk commands by hand)",
    )
    args = parser.parse_args(argv)
    if args.prepare:
        args.prepare.mkdir(parents=True, exist_ok=True)
        auth = bench_auth.make(args.prepare, scopes=ALL_SCOPES)
        for route in routes(examples.this_hour()):
            load_for(route, args.prepare, auth)
        print(auth.token)
        return 0
    procs.stop_children_on_sigterm()
    only = {x.strip() for x in args.only.split(",") if x.strip()} or None
    started = time.monotonic()
    results = measure(only, seconds=args.seconds, pin=args.pin, session_store=args.session_store)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    command = " ".join(["python -m bench.endpoints", *(sys.argv[1:] if argv is None else argv)])
    results["command"] = command
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = results["started"].replace(":", "").replace("-", "")
    out = RESULTS / f"endpoints-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    block = markdown(results, command)
    print(block)
    print(f"results: {out.relative_to(ROOT)}")
    if not args.no_docs:
        DOCS.write_text(rewrite(DOCS.read_text(), block))
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
