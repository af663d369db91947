"""One command for the whole bench: `python -m bench.run` (or `make bench`).

Starts the fake signer and each server under test as subprocesses on loopback, drives them with
wrk (installed with apt-get when missing and allowed), and writes bench/results/<time>.json,
docs/benchmarks.md and docs/benchmarks.png. `--only S1,S3` runs a subset, `--quick` shortens
every phase (for trying the bench, not for figures).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import auth as bench_auth
from bench import procs, report, scenarios
from bench.wrk import Load, ensure_wrk, wrk_version
from signing_gateway.api import examples
from signing_gateway.cli import served_loop

#: Starts one S3 variant and stops it on exit.
_Starter = Callable[[], contextlib.AbstractContextManager[procs.Proc]]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: S4's clients, all at once against a 10 s signer. Under a CPU-bound gateway most of them
#: wait at the CPU gate at the same moment: `loop_lag.cpu_queue_max` must stay above this.
S4_CLIENTS = 10_000


def keep_markdown(name: str, text: str) -> Path:
    """Print a Markdown report and keep it as bench/results/<name>-<UTC time>.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.md"
    path.write_text(text)
    print(text)
    print(f"written: {path}")
    return path


def versions() -> dict[str, str]:
    """Python, wrk and the serving libraries, by version (every bench report prints them)."""
    names = ["fastapi", "starlette", "uvicorn", "uvloop", "httptools", "httpx", "httpcore",
             "httpx-aiohttp", "aiohttp", "pydantic", "requests"]  # fmt: skip
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return {"python": platform.python_version(), "wrk": wrk_version(), **found}


def machine() -> dict[str, Any]:
    """The CPUs, the platform and the load average now."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def run(
    only: set[str], *, quick: bool, s3_variants: set[str] | None = None, pin: bool = True
) -> dict[str, Any]:
    ensure_wrk()
    scale = 0.25 if quick else 1.0
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "quick": quick,
        "pinned": pin,
        "loop": served_loop(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        body = work / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        # Every gateway checks the callers' token as in production; wrk sends it to every
        # server under test (minted now, valid past the end of the run).
        auth = bench_auth.make(work)
        load = Load(body, auth)
        keys = work / "keys"

        @contextlib.contextmanager
        def pinned_beside_signer(
            starter: Callable[[str], Any], *, latency_ms: float = 0
        ) -> Iterator[tuple[procs.Proc, procs.Proc]]:
            """A fresh fake signer and `starter(signer_url)`'s server, placed as `pin` says."""
            with (
                procs.pinned(enabled=pin),
                procs.fake_signer(logs, latency_ms=latency_ms, keys_dir=keys) as signer,
                starter(signer.url) as target,
            ):
                yield signer, target

        slow = functools.partial(
            _slow_signers, pinned_beside_signer, logs, load, seconds=max(5.0, 20 * scale)
        )
        if "S1" in only:
            # Its limit is measured on S1's CPU placement (pinned), unless S3 is narrowed.
            bracket = pin and (not s3_variants or "gateway-one-cpu" in s3_variants)
            results["S1"] = _s1(slow, pinned_beside_signer, logs, load, scale=scale, limit=bracket)
        if "S2" in only:
            results["S2"] = slow(
                "S2: blocking gateway, same load",
                lambda url: procs.uvicorn_app(
                    logs, "old-gateway", "bench.old_gateway:create_app", {"BENCH_SIGNER_URL": url}
                ),
                has_lag=False,
            )
        if "S3" in only:
            seconds = max(5.0, 15 * scale)
            results["S3"] = {}
            with procs.fake_signer(logs, latency_ms=0, keys_dir=keys) as signer:
                variants: list[tuple[str, _Starter]] = [
                    ("gateway", lambda: procs.gateway(
                        logs, signer.url, auth=auth, max_in_flight=256)),
                    ("gateway-httpx-transport", lambda: procs.gateway(
                        logs, signer.url, auth=auth, name="gateway-httpx", transport="httpx",
                        max_in_flight=256)),
                    ("passthrough-proxy", lambda: procs.uvicorn_app(
                        logs, "passthrough", "bench.passthrough:create_app",
                        {"BENCH_SIGNER_URL": signer.url})),
                ]  # fmt: skip
                for name, starter in variants:
                    if s3_variants and name not in s3_variants:
                        continue
                    print(f"S3: {name}, signer 0 ms, 64 clients", flush=True)
                    with starter() as target:
                        results["S3"][name] = scenarios.ceiling(
                            target, signer, load, clients=64, seconds=seconds
                        ) | _started(signer, target)
        if "S4" in only:
            results["S4"] = _memory(pinned_beside_signer, logs, load)
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["verdicts"] = report.verdicts(results) if not s3_variants else {}
    return results


def _started(signer: procs.Proc, server: procs.Proc) -> dict[str, Any]:
    """How a run's fake signer and server under test were started (the report prints them)."""
    return {"started": {"signer": signer.started, "server": server.started}}


def _slow_signers(
    beside: Callable[..., Any],
    logs: Path,
    load: Load,
    title: str,
    starter: Callable[[str], Any],
    *,
    seconds: float,
    has_lag: bool,
) -> dict[str, Any]:
    """S1 or S2: `starter(signer_url)` serves 1,000 clients over a 1 s signer."""
    print(title, flush=True)
    with beside(starter, latency_ms=1000) as (signer, target):
        return scenarios.slow_signers(
            target, load, logs, clients=1000, seconds=seconds, signer_latency_s=1.0,
            has_lag=has_lag,
        ) | _started(signer, target)  # fmt: skip


def _s1(
    slow: Callable[..., dict[str, Any]],
    beside: Callable[..., Any],
    logs: Path,
    load: Load,
    *,
    scale: float,
    limit: bool,
) -> dict[str, Any]:
    """S1, in `report.S1_ROUNDS` rounds between measurements of its limit, when `limit`.

    S1's limit is the S3 ceiling with the CPU placement S1 gives the gateway: CPU 0 to itself,
    the signer and wrk on the other (unpinned, as in the S3 table, it shares both CPUs with
    the load side). The shared machine's speed drifts from minute to minute, and its host at
    times gives part of CPU 0 to other guests (steal), so one S1 beside one ceiling is a
    coin toss near the target: S1 runs `report.S1_ROUNDS` times, each judged against the mean
    of the ceilings measured just before and just after it (limit, S1, limit, S1, ..., limit).
    The round with the median share is returned, with every round in brief (`rounds`).
    Without `limit` (unpinned, or S3 narrowed) S1 runs once: there is nothing to compare.
    """

    def ceiling(when: str) -> dict[str, Any]:
        print(f"S3: gateway-one-cpu (S1's limit, {when}), signer 0 ms, 64 clients", flush=True)
        with beside(lambda url: procs.gateway(logs, url, auth=load.auth, max_in_flight=256)) as (
            signer,
            gw,
        ):
            return scenarios.ceiling(
                gw, signer, load, clients=64, seconds=max(5.0, 15 * scale), steady=True
            )

    def s1(title: str) -> dict[str, Any]:
        return slow(
            f"S1{title}: gateway, signer 1 s, 1,000 clients",
            lambda url: procs.gateway(logs, url, auth=load.auth, max_in_flight=1024),
            has_lag=True,
        )

    if not limit:
        return s1("")
    rounds: list[dict[str, Any]] = []
    before = ceiling("before round 1")
    for n in range(1, report.S1_ROUNDS + 1):
        measured = s1(f" (round {n} of {report.S1_ROUNDS})")
        after = ceiling(f"after round {n}")
        rounds.append(measured | {"limit_ceiling_before": before, "limit_ceiling": after})
        before = after
    judged = report.median_round(rounds)
    return rounds[judged] | {
        "rounds": [report.s1_round(r) for r in rounds],
        "judged_round": judged + 1,
    }


def _memory(beside: Callable[..., Any], logs: Path, load: Load) -> dict[str, Any]:
    """S4: the gateway and the proxy holding 10,000 at a 10 s signer, then the gateway 1,500.

    `beside(starter)` starts a fake signer and `starter(signer_url)`'s server, placed for S4.
    """
    print("S4: 10,000 in flight, signer 10 s", flush=True)
    nofile = procs.child_nofile()
    at_signer = procs.signer_bound_for(S4_CLIENTS, nofile=nofile, wanted=10240)
    with beside(
        lambda url: procs.gateway(
            logs,
            url,
            auth=load.auth,
            max_in_flight=at_signer,
            deadline_s=60,
            # 10,000 at once queue for the CPU longer than the default 10 s allows (the
            # default `loop_lag.cpu_queue_max` parks them all: see S4_CLIENTS)
            extra_env={"SIGNING_GATEWAY_LOOP_LAG__CPU_QUEUE_TIMEOUT_SECONDS": "60"},
        )
    ) as (signer, gw):
        s4 = scenarios.memory(
            gw, signer, load, in_flight=S4_CLIENTS, signer_latency_s=10.0, seconds=30
        )
        s4 |= {"fd_limit": nofile, "signer_bound": at_signer} | _started(signer, gw)
    print("S4: pass-through proxy, same load", flush=True)
    with beside(
        lambda url: procs.uvicorn_app(
            logs, "passthrough", "bench.passthrough:create_app",
            {"BENCH_SIGNER_URL": url, "BENCH_PROXY_CONNECTIONS": str(at_signer)},
        )
    ) as (signer, proxy):  # fmt: skip
        s4["passthrough-proxy"] = scenarios.memory(
            proxy, signer, load, in_flight=S4_CLIENTS, signer_latency_s=10.0, seconds=30,
            is_gateway=False,
        ) | _started(signer, proxy)  # fmt: skip
    # Few enough that all reach the signer even at ~200 req/s (the slowest machine
    # seen): what one request held at the signer costs, whatever the machine's speed.
    held = 1500
    print(f"S4: gateway, {held:,} in flight, all at the signer", flush=True)
    with beside(
        lambda url: procs.gateway(
            logs, url, auth=load.auth, max_in_flight=held + 100, deadline_s=60
        )
    ) as (signer, gw):
        s4[report.ALL_AT_SIGNER] = scenarios.memory(
            gw, signer, load, in_flight=held, signer_latency_s=10.0, seconds=20,
            before_first_answer=True,
        ) | _started(signer, gw)  # fmt: skip
    return s4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--only", default="S1,S2,S3,S4", help="comma-separated scenarios")
    parser.add_argument("--quick", action="store_true", help="short phases, no doc update")
    parser.add_argument("--s3", default="", help="S3 variants to run (default: all)")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="S1, S2, S4: let the server under test share every CPU with the load side",
    )
    args = parser.parse_args(argv)
    procs.stop_children_on_sigterm()
    only = {x.strip().upper() for x in args.only.split(",")}
    started = time.monotonic()
    s3 = {x.strip() for x in args.s3.split(",") if x.strip()} or None
    results = run(only, quick=args.quick, s3_variants=s3, pin=args.pin)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = results["started"].replace(":", "").replace("-", "")
    # Subsets get their own suffix: the repeatability table reads only full runs.
    full = only == {"S1", "S2", "S3", "S4"} and not s3 and args.pin
    suffix = "-quick" if args.quick else "" if full else "-subset"
    out = RESULTS / f"{stamp}{suffix}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["verdicts"], indent=2))
    print(f"results: {out.relative_to(ROOT)}")
    if not args.quick and full:
        try:
            report.write(results, ROOT / "docs" / "benchmarks.md",
                         ROOT / "docs" / "benchmarks.png",
                         sorted(RESULTS.glob("2*[0-9].json")))  # fmt: skip
        except report.LostSectionsError as exc:
            print(exc, file=sys.stderr)
            return 1
        print("wrote docs/benchmarks.md and docs/benchmarks.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
