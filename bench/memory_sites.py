"""Where S4's memory per in-flight request goes: `python -m bench.memory_sites [--in-flight N]`.

S4 measures RSS; this names the allocation sites behind it. For the gateway and for the
pass-through proxy in turn, a child process serves the app under `tracemalloc` (the same
app and uvicorn settings as `serve`, in-process because tracemalloc sees only its own
process), wrk holds N requests on a fake signer that answers after a minute, and once the
signer has all N in flight the child compares a snapshot with one taken before the load.
The difference, divided by N, is what one request held at the signer keeps alive in Python
objects, by source file and by line. tracemalloc slows the servers down, which changes
nothing here: the requests are held, not timed.

Prints a Markdown report and writes it to bench/results/memory-sites-<time>.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import auth as bench_auth
from bench import procs
from bench.run import keep_markdown
from bench.wrk import Load, wrk_command
from signing_gateway.api import examples

KINDS = ("gateway", "passthrough-proxy")
#: The fake signer's latency: long enough for a traced server to get all N to it.
SIGNER_LATENCY_MS = 60_000


def _site(filename: str) -> str:
    """A path without the interpreter's and the checkout's prefixes."""
    for marker in ("site-packages/", f"python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parent.parent) + "/"
    return filename.removeprefix(root)


def _app(kind: str, signer_url: str, in_flight: int, auth: bench_auth.BenchAuth) -> Any:
    if kind == "gateway":
        os.environ.update(
            procs.gateway_env(
                signer_url,
                auth=auth,
                transport="aiohttp",
                max_in_flight=in_flight + 100,
                deadline_s=300,
            )
        )
        # Every one of the N held, however many wait for the CPU at once and however long.
        os.environ["SIGNING_GATEWAY_LOOP_LAG__CPU_QUEUE_TIMEOUT_SECONDS"] = "300"
        os.environ["SIGNING_GATEWAY_LOOP_LAG__CPU_QUEUE_MAX"] = str(in_flight + 100)
        from signing_gateway.app import create_served_app  # noqa: PLC0415 - reads the env

        return create_served_app()
    os.environ |= {"BENCH_SIGNER_URL": signer_url, "BENCH_PROXY_CONNECTIONS": str(in_flight + 100)}
    from bench.passthrough import create_app  # noqa: PLC0415 - reads the env

    return create_app()


def _signer_in_flight(signer_url: str) -> int:
    with urllib.request.urlopen(signer_url + "/_stats", timeout=5) as answer:  # noqa: S310
        return int(json.load(answer)["inFlight"])


async def _held(kind: str, signer_url: str, in_flight: int, load: Load) -> dict[str, Any]:
    import uvicorn  # noqa: PLC0415 - the child's import, not the parent's

    app = _app(kind, signer_url, in_flight, load.auth)
    port = procs.free_port()
    # The protocol `serve` runs the gateway with (the proxy keeps uvicorn's own).
    http: Any = "auto"
    if kind == "gateway":
        from signing_gateway.runtime.http_protocol import GatewayHttpProtocol  # noqa: PLC0415

        http = GatewayHttpProtocol
    config = uvicorn.Config(
        app, host=procs.LOOPBACK, port=port, log_config=None, access_log=False, loop="asyncio",
        backlog=16384, proxy_headers=False, http=http,
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.05)
    tracemalloc.start(1)
    gc.collect()
    before = tracemalloc.take_snapshot()
    command = wrk_command(
        f"http://{procs.LOOPBACK}:{port}/v1/dcc", connections=in_flight, seconds=240, threads=2,
        timeout_s=300,
    )  # fmt: skip
    wrk = subprocess.Popen(  # noqa: ASYNC220 - started once, before the load; nothing waits
        command, env={**os.environ, **load.env()}, stdout=subprocess.DEVNULL
    )
    try:
        give_up = time.monotonic() + 180
        held = 0
        while held < in_flight and time.monotonic() < give_up:
            await asyncio.sleep(1)
            held = await asyncio.to_thread(_signer_in_flight, signer_url)
        await asyncio.sleep(1)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        wrk.kill()
        wrk.wait()
        server.should_exit = True
        await serving
    ignore = [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
    after, before = after.filter_traces(ignore), before.filter_traces(ignore)
    by_file = {
        _site(s.traceback[0].filename): s.size_diff / held
        for s in after.compare_to(before, "filename")
    }
    by_line = [
        {
            "site": f"{_site(s.traceback[0].filename)}:{s.traceback[0].lineno}",
            "code": linecache.getline(s.traceback[0].filename, s.traceback[0].lineno).strip(),
            "bytes": s.size_diff / held,
            "objects": s.count_diff / held,
        }
        for s in after.compare_to(before, "lineno")[:200]
    ]
    return {"kind": kind, "held": held, "by_file": by_file, "by_line": by_line}


def _child(kind: str, in_flight: int, out: Path) -> None:
    """One server under tracemalloc beside its own fake signer; the result as JSON in `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        body = work / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        logs = work / "logs"
        logs.mkdir()
        with procs.fake_signer(
            logs, latency_ms=SIGNER_LATENCY_MS, keys_dir=work / "keys"
        ) as signer:
            load = Load(body, bench_auth.make(work))
            result = asyncio.run(_held(kind, signer.url, in_flight, load))
    out.write_text(json.dumps(result))


def _component(site: str) -> str:
    """The package a source file belongs to; the gateway's own by subpackage."""
    parts = site.split("/")
    if parts[0] in {"signing_gateway", "bench"} and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py")


def _rows(results: dict[str, dict[str, Any]], top: int) -> Iterator[str]:
    gw, proxy = results["gateway"], results["passthrough-proxy"]
    kb = {k: sum(r["by_file"].values()) / 1024 for k, r in results.items()}
    yield (
        f"Held at the signer: gateway {gw['held']:,}, pass-through proxy {proxy['held']:,}. "
        f"Python allocations alive per request: gateway {kb['gateway']:.1f} KB, proxy "
        f"{kb['passthrough-proxy']:.1f} KB."
    )
    yield ""
    yield "| package | gateway B/request | proxy B/request | difference |"
    yield "|---|---|---|---|"
    by: dict[str, dict[str, float]] = {"gateway": {}, "proxy": {}}
    for name, result in (("gateway", gw), ("proxy", proxy)):
        for site, size in result["by_file"].items():
            key = _component(site)
            by[name][key] = by[name].get(key, 0.0) + size
    names = set(by["gateway"]) | set(by["proxy"])
    ranked = sorted(names, key=lambda n: -max(by["gateway"].get(n, 0), by["proxy"].get(n, 0)))
    for name in ranked[:top]:
        g, p = by["gateway"].get(name, 0.0), by["proxy"].get(name, 0.0)
        yield f"| `{name}` | {g:,.0f} | {p:,.0f} | {g - p:+,.0f} |"
    rest = ranked[top:]
    g = sum(by["gateway"].get(n, 0.0) for n in rest)
    p = sum(by["proxy"].get(n, 0.0) for n in rest)
    yield f"| {len(rest)} others | {g:,.0f} | {p:,.0f} | {g - p:+,.0f} |"
    g, p = sum(by["gateway"].values()), sum(by["proxy"].values())
    yield f"| **total** | {g:,.0f} | {p:,.0f} | {g - p:+,.0f} |"
    yield ""
    yield "The gateway's largest allocation sites:"
    yield ""
    yield "| site | B/request | objects/request | code |"
    yield "|---|---|---|---|"
    for line in gw["by_line"][:top]:
        code = line["code"].replace("|", "\\|")[:70]
        yield f"| `{line['site']}` | {line['bytes']:,.0f} | {line['objects']:.1f} | `{code}` |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_sites", description=__doc__)
    parser.add_argument("--in-flight", type=int, default=1500)
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.in_flight, args.out)
        return 0
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            print(f"{kind}: {args.in_flight:,} held at the signer under tracemalloc", flush=True)
            out = Path(tmp) / f"{kind}.json"
            subprocess.run(
                [sys.executable, "-m", "bench.memory_sites", "--child", kind,
                 "--in-flight", str(args.in_flight), "--out", str(out)],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            results[kind] = json.loads(out.read_text())
    keep_markdown("memory-sites", "\n".join(_rows(results, args.top)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
