"""Profile the S3 path: `python -m bench.profile [--seconds 10]`.

Runs the gateway against a 0 ms fake signer under 64-connection wrk load and samples it with
py-spy (in the dev extra). Writes the collapsed stacks to bench/results/profile-<time>.txt and
prints the top functions by self and by inclusive time, the figures docs/benchmarks.md quotes.
`--clients 1000 --latency-ms 1000` gives S1's shape instead; `--native` adds C frames, so the
garbage collector shows up by name (py-spy then pauses the gateway for each sample).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from bench import auth as bench_auth
from bench import procs
from bench.run import RESULTS
from bench.wrk import Load, run_wrk
from signing_gateway.api import examples


def _frame_name(frame: str) -> str:
    """`function (file)` without the line number, the venv prefix shortened."""
    if " (" not in frame:
        return frame
    name, _, rest = frame.partition(" (")
    return f"{name} ({rest.split(':')[0].replace(str(Path(sys.prefix)), '<venv>')})"


def summarize(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive shares per function from py-spy's collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    lines = [f"samples: {total}", "", "top self time:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_counts.most_common(top)]
    lines += ["", "top inclusive time (functions of interest):"]
    interesting = [
        (f, c) for f, c in incl_counts.most_common()
        if any(k in f for k in ("signing_gateway", "fastapi", "starlette", "httpx", "httpcore",
                                "aiohttp", "pydantic", "uvicorn", "logging", "structlog",
                                "prometheus", "cbor2", "base45", "cryptography", "zlib",
                                "orjson", "json"))
    ]  # fmt: skip
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in interesting[: top * 2]]
    return "\n".join(lines)


#: Where the CPU goes, as docs/benchmarks.md's profile table shows it. A sample counts once.
#: The feature rows come first: a sample belongs to the first of them with a frame on its
#: stack whose `function (file` text holds one of the row's markers, so a row excludes what
#: an earlier one claimed (the signer call excludes verification, the endpoint row both).
#: py-spy sometimes cuts a stack short (deep recursion, a coroutine just resumed), so rows
#: also name their own code by file or function, not only by their entry point.
FEATURES: list[tuple[str, tuple[str, ...]]] = [
    (
        "verifying the signed credential (`verify_eu_credential`)",
        ("verify_eu_credential", "(signing_gateway/verification/"),
    ),
    (
        "the signer call: `SignerPolicy`, `request_json`, httpx's client, the aiohttp transport",
        (
            "call_signer",
            "SignerPolicy.",
            "request_json",
            "(httpx/",
            "(httpx_aiohttp/",
            "SignerTransport",
            "(aiohttp/",
        ),
    ),
    ("FastAPI dependency solving (auth, the route's state, the audit)", ("solve_dependencies",)),
    (
        "reading and checking the body: size and JSON shape limits, pydantic validation",
        (
            "RequestLimitsMiddleware._read_body",
            "RequestLimitsMiddleware._check_json",
            "check_json_shape",
            "repeats_a_key",
            "read_body (",
            "model_validate_json",
        ),
    ),
    ("the rest of the endpoint (`issue_dcc`: issuance policy, audit, answer)", ("issue_dcc",)),
    ("logging on the loop (records; formatting and writing are on a thread)", ("(logging/",)),
    ("Prometheus metrics", ("(prometheus_client/",)),
]
#: The layers a request passes through: a sample no feature claimed belongs to the layer of
#: the innermost frame that is in one (uvicorn writing an answer for a middleware is uvicorn).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("FastAPI and Starlette: routing, request and response objects", ("(fastapi/", "(starlette/")),
    ("the gateway's middlewares, own work", ("(signing_gateway/",)),
    ("uvicorn (httptools parsing, response writing)", ("(uvicorn/", "(httptools/")),
    ("asyncio's loop, selector and socket I/O", ("(asyncio/", "(selectors")),
]


def _row(frames: list[str]) -> str:
    for name, markers in FEATURES:
        if any(marker in frame for frame in frames for marker in markers):
            return name
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def categorize(collapsed: Path) -> list[tuple[str, float]]:
    """Each row's share of the samples (`FEATURES`, then `LAYERS`, then "other")."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        counts[_row(stack.split(";"))] += count
    names = [name for name, _ in FEATURES + LAYERS] + ["other"]
    return [(name, 100 * counts[name] / max(1, total)) for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--transport", default="aiohttp")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--all-threads",
        dest="gil",
        action="store_false",
        help="sample every thread, not only the one holding the GIL",
    )
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument(
        "--native",
        action="store_true",
        help="include C frames (the garbage collector among them); pauses the gateway per sample",
    )
    args = parser.parse_args()
    procs.stop_children_on_sigterm()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"profile-{stamp}.txt"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        body = work / "dcc.json"
        body.write_text(json.dumps(examples.EU_VACCINATION))
        dcc = Load(body, bench_auth.make(work))
        logs = RESULTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (
            procs.fake_signer(logs, latency_ms=args.latency_ms, keys_dir=work / "keys") as signer,
            procs.gateway(
                logs, signer.url, auth=dcc.auth, max_in_flight=1024, transport=args.transport
            ) as gw,
        ):
            run_wrk(gw.url + "/v1/dcc", dcc, connections=args.clients, seconds=3)
            load = threading.Thread(
                target=run_wrk, args=(gw.url + "/v1/dcc", dcc),
                kwargs={"connections": args.clients, "seconds": args.seconds + 2},
            )  # fmt: skip
            load.start()
            subprocess.run(
                [py_spy, "record", "--pid", str(gw.popen.pid), "--duration",
                 str(int(args.seconds)), "--rate", "250", "--format", "raw",
                 *(["--native"] if args.native else ["--nonblocking"]),
                 *(["--gil"] if args.gil else ["--threads"]), "--output", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
            load.join()
    print(summarize(out))
    print("\nwhere the CPU goes (first matching row):")
    for name, share in categorize(out):
        print(f"  {share:5.1f}%  {name}")
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
