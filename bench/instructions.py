"""Instructions per `/v1/dcc` request: `python -m bench.instructions [--rev REV | --tree DIR]...`.

Timings on this machine drift by 10 % and more between minutes (docs/benchmarks.md), so a
change that costs 2 % cannot be told from the noise without many alternated runs. This counts
instead: it runs the gateway under valgrind's callgrind, which counts the instructions the
process executes, every thread's, the same count whatever else the machine is doing. What it
cannot see: the kernel's work for the gateway's system calls (socket reads and writes, epoll),
and how long an instruction takes (cache misses, the machine's speed); it weighs a Python
bytecode and an OpenSSL multiply by their instruction count. So it compares versions of the
gateway's own work; the wall-clock figures stay with `bench.run`.

For each version given (`--rev`: a commit of this repository, exported to a temporary directory;
`--tree`: a source tree; none: this tree), in order, it starts a fake signer (0 ms, from this
tree, the same for every version) and that version's gateway under callgrind with
instrumentation off, warms it up, turns instrumentation on, sends more warm-up requests, then
measures `--windows` windows of `--requests` requests each, sent by `--concurrency` keep-alive
clients. Every answer must be a 200.

Work on wall-clock timers is not per-request work, and under valgrind, where a request lasts
~50 times longer, it would weigh ~50 times more per request and move with the machine's speed.
So the full garbage collections and the readiness probes (one every 60 s and 5 s) are set out
of reach of the run. The 50 ms timers (the collector's ticks, the lag monitor, the log writer)
stay: before the windows the gateway idles `--idle` seconds, and each window's figure is also
given less that idle rate times its length ("net"). The windows of one version agree within
~0.5 %, but runs started minutes apart differ by up to ~1.5 %: compare versions measured in
one run (docs/benchmarks.md).

`--hold N` then has the gateway hold N requests at a slow signer, as S1 does at its scale (wrk,
N connections, the signer answering after 40 s), waits until all are back, and measures the
same windows again: what a gateway keeps from holding a load and what it then costs.

With `--cache-sim`, callgrind's model of this machine's caches also counts the misses per request
(L1 data reads and writes, last-level data reads); a run takes about twice as long.

`--during N[,N...]` measures the windows again WHILE N requests wait in the gateway, as S1's
1,000 do: each /v1/dcc request then pays whatever the held ones make it pay (a larger timer
heap, more live objects for the collector, longer tables). The held requests go to a second
fake signer, the domestic one (`POST /v1/domestic/static`, one raw keep-alive connection each,
sent in batches of `HELD_BATCH` with instrumentation off, each batch waited for at the signer),
which answers only after `DURING_SECONDS`; the windows' /v1/dcc requests still go to the fast
EU signer. Each count is reached by adding requests to those already held (so give them in
increasing order), `HELD_SETTLE_S` is waited out (the arrivals' own timers, run ~10 s later),
and before the count's windows the gateway idles `--idle` seconds with them held:
that rate (the held requests' own cost per second: their timers, the lag monitor's, the
collector's ticks over more objects) is the one the count's net figures subtract, and the
report gives it beside them. A held request answered before the end (a 503, its deadline)
fails the version.

`--shape CLIENTS:MS` (repeatable) measures the windows once more in S1's own shape, or in its
limit's (64:0: S3's 64 clients at a 0 ms signer, the gateway CPU-bound), before `--during`:
the EU signer answers after MS ms and the requests come from CLIENTS keep-alive clients kept
open across the windows (`Clients`), so each measured request itself waits at the signer and
for a CPU permit, as S1's do. Under valgrind the gateway serves ~25 requests a second, so S1's
1,000 clients at 1 s come down to about 160:5000 (~125 at the signer, the rest queued for the
CPU, each queued well under the permit's 10 s timeout). The background subtracted is the
version's idle rate.

`--proxy` and `--httpx` also measure S3's two comparisons after the versions, on the same
load: the pass-through proxy (bench/passthrough.py) and this tree's gateway on httpx's default
transport; the report then gives S3's ratios in instructions: against the proxy for each
gateway version, against the httpx variant for this tree's gateway. S3
itself compares requests per second with wrk and the fake signer on the same two cores; these
compare the servers' own work, which is what the full path can change.

Prints a Markdown table (instructions per request per window, net, and the median net against
the first version's), the shared objects and functions the instructions went to (last window
of the first and the last version measured), and keeps it as
bench/results/instructions-<time>.md; `--keep` also keeps the callgrind files, for
`callgrind_annotate`. A version that cannot be measured (an old one that does not start with
this tree's bench settings, say) gets a row saying why, and the others are measured.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import queue
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import auth as bench_auth
from bench import procs
from bench.run import RESULTS, ROOT, keep_markdown
from bench.wrk import Load, run_wrk
from signing_gateway.api import examples
from signing_gateway.cli import served_loop
from signing_gateway.security.settings import SCOPE_DCC_SIGN, SCOPE_DOMESTIC_SIGN, LimitsSettings
from signing_gateway.settings import LoopLagSettings

#: Shared objects by the name the report gives them (the first fragment found in the path).
OBJECTS = {
    "libpython": "the Python interpreter (libpython)",
    "libcrypto": "OpenSSL (libcrypto)",
    "_pydantic_core": "pydantic-core",
    "libc.so": "libc (memory copies, malloc)",
    "libm.so": "libm",
    "orjson": "orjson",
    "_cbor2": "cbor2",
    "httptools": "httptools",
    "_rust": "cryptography (Rust)",
    "ld-linux": "the dynamic linker",
}


@dataclass
class Costs:
    """Self cost (instructions) of one callgrind dump, by shared object and by function."""

    total: int
    by_object: collections.Counter[str] = field(default_factory=collections.Counter)
    by_function: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Each event's total (`Ir`, and with `--cache-sim` the cache misses: `D1mr`, `DLmr`, ...).
    events: dict[str, int] = field(default_factory=dict)


def _named(table: dict[str, str], value: str) -> str:
    """Resolve callgrind's name compression: `(id) name` defines, `(id)` refers."""
    value = value.strip()
    if not value.startswith("("):
        return value
    ident, _, name = value.partition(")")
    ident = ident + ")"
    if name.strip():
        table[ident] = name.strip()
    return table.get(ident, ident)


class _DumpReader:
    """Reads a callgrind output file line by line, charging each cost line to its function."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
        self.current = {"ob": "?", "fn": "?"}
        self.costs = Costs(0)
        self.columns = 1  # position columns before the cost: `positions: line` unless told
        self.skip_next = False
        self.event_names = ["Ir"]

    def cost(self, line: str) -> None:
        if self.skip_next:  # a callee's inclusive cost, counted where its own lines are
            self.skip_next = False
            return
        parts = line.split()
        if len(parts) > self.columns:
            cost = int(parts[self.columns])
            self.costs.by_object[self.current["ob"]] += cost
            self.costs.by_function[self.current["fn"]] += cost

    def header(self, line: str) -> None:
        key, _, value = line.partition("=")
        if key in self.current:
            self.current[key] = _named(self.names[key], value)
        elif key in {"cob", "cfn"}:  # a callee's: may define a name used later
            _named(self.names[key[1:]], value)
        elif key == "calls":
            self.skip_next = True
        elif line.startswith("summary:"):
            totals = [int(n) for n in line.split()[1:]]
            self.costs.events = dict(zip(self.event_names, totals, strict=False))
            self.costs.total = totals[0]
        elif line.startswith("events:"):
            self.event_names = line.split()[1:]
        elif line.startswith("positions:"):
            self.columns = len(line.split()) - 1


def read_dump(path: Path) -> Costs:
    """The instructions of a callgrind output file, each charged to the function executing it."""
    reader = _DumpReader()
    for line in path.read_text(errors="replace").splitlines():
        if line and (line[0].isdigit() or line[0] in "+-*"):
            reader.cost(line)
        elif line:
            reader.header(line)
    if not reader.costs.total:
        reader.costs.total = sum(reader.costs.by_object.values())
    return reader.costs


def _object_name(path: str) -> str:
    for fragment, name in OBJECTS.items():
        if fragment in path:
            return name
    return Path(path).name


#: What `--proxy` and `--httpx` add beside the versions: S3's two comparisons (bench/run.py).
PROXY, HTTPX = "proxy", "httpx"


@dataclass
class Version:
    label: str
    tree: Path
    #: "gateway" (its aiohttp transport, as shipped), `HTTPX` (the gateway on httpx's default
    #: transport) or `PROXY` (bench/passthrough.py, this tree's).
    server: str = "gateway"
    windows: list[float] = field(default_factory=list)
    #: The same, less the background's instructions for the window's wall time.
    net: list[float] = field(default_factory=list)
    #: Instructions per second with no request in flight (timers, probes, the log thread).
    idle_rate: float = 0.0
    costs: Costs | None = None
    #: With `--cache-sim`: each window's cache misses per request, by event.
    misses: list[dict[str, float]] = field(default_factory=list)
    #: With `--hold`: the same figures, measured after the gateway held that many requests.
    after_hold: Version | None = None
    #: The same figures under S1's shape (`--shape`), then while each count of requests was
    #: held (`--during`), in order.
    loaded: list[Version] = field(default_factory=list)
    #: Why it could not be measured (an old version that does not start against this tree's
    #: bench settings, say), or None.
    failed: str | None = None


def _export(rev: str, into: Path) -> Path:
    """The gateway's package at commit `rev`, written under `into` (no worktree, no checkout)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "signing_gateway"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _describe(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty=+changes"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.stdout.strip() or str(tree)


def _short(rev: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _next_dump(out: Path, pid: int, seen: set[Path], limit: float = 60.0) -> Path:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        new = set(out.glob(f"callgrind.{pid}.*")) - seen
        if new:
            found = max(new, key=lambda p: int(p.suffix[1:]))
            seen.add(found)
            return found
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


@dataclass
class Window:
    """Measures windows of requests on one gateway under callgrind."""

    gateway: procs.Proc
    url: str
    body: bytes
    headers: dict[str, str]
    out: Path
    seen: set[Path]
    #: What sends a window's requests, given their number (`--shape`: persistent clients);
    #: None: `_send` with `--concurrency` clients.
    send: Callable[[int], None] | None = None

    def measure(self, version: Version, args: argparse.Namespace) -> None:
        """Add `args.windows` windows of `args.requests` requests each to `version`."""
        pid = str(self.gateway.popen.pid)
        for _ in range(args.windows):
            _control("--zero", pid)
            started = time.monotonic()
            if self.send is None:
                _send(self.url, self.body, self.headers, args.requests, args.concurrency)
            else:
                self.send(args.requests)
            _control("--dump", pid)
            seconds = time.monotonic() - started
            costs = read_dump(_next_dump(self.out, self.gateway.popen.pid, self.seen))
            version.windows.append(costs.total / args.requests)
            version.net.append((costs.total - version.idle_rate * seconds) / args.requests)
            version.misses.append({
                name: count / args.requests for name, count in costs.events.items()
                if name in MISS_EVENTS
            })  # fmt: skip
            version.costs = costs
            print(f"{version.label}: {version.windows[-1]:,.0f} per request, "
                  f"{version.net[-1]:,.0f} net, {seconds:.1f} s", flush=True)  # fmt: skip


#: The signer's latency while `--hold` keeps requests there (seconds), and how long wrk sends.
HOLD_SECONDS, HOLD_LOAD_SECONDS = 40.0, 50.0
#: With `--cache-sim`, the misses reported: L1 data reads and writes, last-level data reads.
MISS_EVENTS = ("D1mr", "D1mw", "DLmr")


def _hold(count: int, url: str, logs: Path, auth: bench_auth.BenchAuth, signer_url: str) -> None:
    """Have the gateway hold `count` requests at a slow signer, then wait until all are back.

    As S1 does, at a scale valgrind can serve: wrk's `count` connections each send a request
    that waits `HOLD_SECONDS` at the signer; the load then ends and the signer answers at once
    again. Instrumentation is off meanwhile (the caller's part).
    """
    body_file = logs / "hold-dcc.json"
    body_file.write_text(json.dumps(examples.EU_VACCINATION))
    with httpx.Client(base_url=signer_url, timeout=10) as signer:
        with _signer_latency(signer, HOLD_SECONDS * 1000):
            run_wrk(url, Load(body_file, auth), connections=count, seconds=HOLD_LOAD_SECONDS,
                    timeout_s=HOLD_SECONDS * 2)  # fmt: skip
        deadline = time.monotonic() + HOLD_SECONDS * 2
        while signer.get("/_stats").json().get("inFlight", 0) and time.monotonic() < deadline:
            time.sleep(1)


#: With `--during`: how long the domestic signer keeps the held requests (its longest latency),
#: how many are sent before waiting for them to arrive there, and how long a batch may take.
DURING_SECONDS, HELD_BATCH, HELD_BATCH_LIMIT_S = 600.0, 50, 300.0
#: How long after the last held request arrived its arrival's timers are still due: a request
#: leaves its head's clock and its CPU permit's queue timeout set, each running out (and
#: costing its timer's run) that many seconds later. Waited out before the count's idle rate,
#: which counted them otherwise: at 1,000 held, 8.4 million instructions a second measured at
#: once, 4.6 million after (3.7-3.9 million with none held).
HELD_SETTLE_S = (
    max(LimitsSettings().header_timeout_seconds, LoopLagSettings().cpu_queue_timeout_seconds) + 2.0
)


def raw_request(path: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    """An HTTP/1.1 POST of `body` to `path` on the loopback `port`, as it goes on the wire."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {procs.LOOPBACK}:{port}",
             *(f"{name}: {value}" for name, value in headers.items()),
             f"Content-Length: {len(body)}"]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Held:
    """Requests kept in flight in the gateway: each on its own connection, sent, never read.

    `waiting()` says how many have arrived where they wait (the slow signer's count in flight);
    `grow(n)` sends more, `HELD_BATCH` at a time, until `n` are held and have all arrived, so
    a gateway under valgrind never has more new requests waiting for a CPU permit than it can
    take before they would be answered 503. `check()` fails if any was answered.
    """

    def __init__(self, port: int, request: bytes, waiting: Callable[[], int]) -> None:
        self.port, self.request, self.waiting = port, request, waiting
        self.sockets: list[socket.socket] = []

    def grow(self, count: int, limit: float = HELD_BATCH_LIMIT_S) -> None:
        while len(self.sockets) < count:
            for _ in range(min(HELD_BATCH, count - len(self.sockets))):
                held = socket.create_connection((procs.LOOPBACK, self.port), timeout=30)
                self.sockets.append(held)
                held.sendall(self.request)
            deadline = time.monotonic() + limit
            while self.waiting() < len(self.sockets):
                self.check()
                if time.monotonic() > deadline:
                    arrived = f"{self.waiting()} of {len(self.sockets)}"
                    raise RuntimeError(f"{arrived} held requests arrived in {limit:.0f} s")
                time.sleep(0.2)

    def check(self) -> None:
        """Raise if a held request was answered (or its connection closed): it is held no more."""
        poll = select.poll()  # not select(): descriptors past 1,023 are common here
        by_fd = {held.fileno(): held for held in self.sockets}
        for fd in by_fd:
            poll.register(fd, select.POLLIN)
        for fd, _ in poll.poll(0):
            head = by_fd[fd].recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
            raise RuntimeError(f"a held request was answered: {head or 'connection closed'}")

    def close(self) -> None:
        for held in self.sockets:
            held.close()
        self.sockets.clear()


#: What a `Clients` thread is told: send one request, or close its connection and end.
SEND, STOP = "send", "stop"


class Clients:
    """`count` keep-alive clients, a thread and a connection each, kept open across windows.

    `_send` opens its clients' connections anew for each call: at 4 clients that is nothing
    per request, but at S1's scale (`--shape`) a window of 300 requests from 160 clients paid
    for 160 connections, ~0.5 million instructions more per request.
    """

    def __init__(self, url: str, body: bytes, headers: dict[str, str], count: int) -> None:
        self.jobs: queue.Queue[str] = queue.Queue()  # SEND, or STOP for one client
        self.outcomes: collections.Counter[int | str] = collections.Counter()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(url, body, headers), daemon=True)
            for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _client(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        with httpx.Client(timeout=120) as session:
            while self.jobs.get() == SEND:
                try:
                    answer = session.post(url, content=body, headers=headers)
                    outcome: int | str = answer.status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self.lock:
                    self.outcomes[outcome] += 1
                self.jobs.task_done()
            self.jobs.task_done()

    def send(self, requests: int) -> None:
        """Send `requests` requests over the open connections; every answer must be a 200."""
        for _ in range(requests):
            self.jobs.put(SEND)
        self.jobs.join()
        with self.lock:
            outcomes = dict(self.outcomes)
        if set(outcomes) != {200}:
            raise RuntimeError(f"answers other than 200: {outcomes}")

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(STOP)
        for thread in self.threads:
            thread.join()


def _send(url: str, body: bytes, headers: dict[str, str], requests: int, clients: int) -> None:
    """`requests` POSTs to `url` from `clients` keep-alive clients opened for this call.

    Every answer must be a 200 (`Clients.send`).
    """
    sending = Clients(url, body, headers, clients)
    try:
        sending.send(requests)
    finally:
        sending.close()


@contextlib.contextmanager
def _signer_latency(signer: httpx.Client, latency_ms: float) -> Iterator[None]:
    """The fake signer behind `signer` answers after `latency_ms` for the block, then at once."""
    signer.put("/_control", json={"latencyMs": latency_ms}).raise_for_status()
    try:
        yield
    finally:
        signer.put("/_control", json={"latencyMs": 0}).raise_for_status()


def _measure_shape(version: Version, window: Window, args: argparse.Namespace,
                   signer_url: str, shape: tuple[int, float]) -> None:  # fmt: skip
    """`--shape`: the windows from persistent clients, the EU signer answering after a while."""
    count, latency_ms = shape
    with (
        httpx.Client(base_url=signer_url, timeout=10) as signer,
        _signer_latency(signer, latency_ms),
    ):
        clients = Clients(window.url, window.body, window.headers, count)
        try:
            clients.send(2 * count)  # every connection open, and the shape reached
            label = f"{version.label}, {count:,} clients at a {latency_ms:,.0f} ms signer"
            row = Version(label, version.tree, idle_rate=version.idle_rate)
            replace(window, send=clients.send).measure(row, args)
            version.loaded.append(row)
        finally:
            clients.close()


def _most_held(args: argparse.Namespace) -> int:
    """The most requests the gateway will hold at once (`--hold`, `--during`, `--shape`)."""
    counts: list[int] = [args.hold, *args.during, *(clients for clients, _ in args.shape)]
    return max(counts)


#: How each server is started: `-P` keeps the working directory (this checkout, when run from
#: its root) off the front of `sys.path`, where `python -m` puts it ahead of `PYTHONPATH`, so
#: the version's tree is the `signing_gateway` imported, not this checkout's.
PYTHON = (sys.executable, "-P")


def _server(version: Version, args: argparse.Namespace, port: int, auth: bench_auth.BenchAuth,
            signer_url: str, *,
            domestic_url: str | None = None) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """The arguments after `python` that start `version`'s server on `port`, and its settings.

    `domestic_url`: the domestic signer's, when not `signer_url` (`--during` holds requests there).
    """
    if version.server == PROXY:  # as bench/run.py starts it for S3 (procs.uvicorn_app)
        return [
            "-m", "uvicorn", "--factory", "bench.passthrough:create_app", "--host",
            procs.LOOPBACK, "--port", str(port), "--no-access-log", "--log-level", "warning",
            "--loop", served_loop(), "--no-proxy-headers",
        ], {"PYTHONPATH": str(ROOT), "BENCH_SIGNER_URL": signer_url}  # fmt: skip
    env = procs.gateway_env(
        signer_url,
        auth=auth,
        transport="httpx" if version.server == HTTPX else "aiohttp",
        max_in_flight=64 + _most_held(args),
        deadline_s=(DURING_SECONDS if args.during else HOLD_SECONDS) + 60.0,
    ) | {
        "PYTHONPATH": str(version.tree),
        # A full collection walks every live object (~30 million instructions here) on a
        # wall-clock timer, so it would land in one window and not another: kept out.
        "SIGNING_GATEWAY_LOOP_LAG__GC_FULL_INTERVAL_SECONDS": "86400",
        # The readiness probes call each signer every 5 s of wall time: also kept out.
        "SIGNING_GATEWAY_READINESS_PROBE_INTERVAL_SECONDS": "86400",
    }
    if domestic_url is not None:
        env["SIGNING_GATEWAY_DOMESTIC_SIGNER__URL"] = domestic_url
    if args.shape:
        # `Clients` keep their connections across windows, and between two a client can sit
        # idle past the 5 s keep-alive: closed by the gateway as it sent, a request failed
        # (ReadError). The keep-alive's timer costs each request the same whatever its length.
        env["SIGNING_GATEWAY_LIMITS__KEEP_ALIVE_SECONDS"] = str(HOLD_SECONDS + 60.0)
    return [
        "-m", "signing_gateway", "serve", "--host", procs.LOOPBACK, "--port", str(port),
        "--backlog", str(max(2048, 2 * _most_held(args))),
    ], env  # fmt: skip


def _idle_rate(pid: int, out: Path, seen: set[Path], seconds: float) -> float:
    """Instructions per second of the gateway left alone for `seconds` (instrumentation on)."""
    _control("--zero", str(pid))
    started = time.monotonic()
    time.sleep(seconds)
    _control("--dump", str(pid))
    return read_dump(_next_dump(out, pid, seen)).total / (time.monotonic() - started)


def _measure_during(version: Version, window: Window, args: argparse.Namespace,
                    auth: bench_auth.BenchAuth, domestic: httpx.Client) -> None:  # fmt: skip
    """`--during`: the windows again while each count of requests waits at the domestic signer."""
    pid = str(window.gateway.popen.pid)
    body = json.dumps({"credentialAttributes": examples.DOMESTIC_ATTRIBUTES}).encode()
    headers = {**auth.header, "Content-Type": "application/json"}
    port = int(window.gateway.url.rsplit(":", 1)[1])
    request = raw_request("/v1/domestic/static", port, headers, body)
    domestic.put("/_control", json={"latencyMs": DURING_SECONDS * 1000}).raise_for_status()
    held = Held(port, request, lambda: int(domestic.get("/_stats").json().get("inFlight", 0)))
    try:
        for count in args.during:
            _control("--instr=off", pid)
            held.grow(count)
            time.sleep(HELD_SETTLE_S)  # the arrivals' timers: no state of the gateway shows them
            _control("--instr=on", pid)
            _send(window.url, window.body, window.headers, args.warmup // 2, args.concurrency)
            row = Version(f"{version.label}, {count:,} in flight", version.tree)
            row.idle_rate = _idle_rate(window.gateway.popen.pid, window.out, window.seen,
                                       args.idle)  # fmt: skip
            window.measure(row, args)
            held.check()
            version.loaded.append(row)
    finally:
        held.close()


def measure(version: Version, args: argparse.Namespace, logs: Path, auth: bench_auth.BenchAuth,
            signer_url: str) -> None:  # fmt: skip
    """Fill `version.windows` and `version.costs` from one gateway process under callgrind."""
    out = logs / f"callgrind-{len(list(logs.glob('callgrind-*')))}"
    out.mkdir()
    with contextlib.ExitStack() as stack:
        domestic = None
        # Its own slow signer, fresh for each gateway: none held there from the last one.
        if args.during and version.server != PROXY:
            domestic = stack.enter_context(
                procs.fake_signer(out, latency_ms=0, keys_dir=logs / "keys")
            )
        _measure_gateway(version, args, logs=logs, out=out, auth=auth, signer_url=signer_url,
                         domestic=domestic)  # fmt: skip


def _measure_gateway(version: Version, args: argparse.Namespace, *, logs: Path, out: Path,
                     auth: bench_auth.BenchAuth, signer_url: str,
                     domestic: procs.Proc | None) -> None:  # fmt: skip
    port = procs.free_port()
    server, env = _server(version, args, port, auth, signer_url,
                          domestic_url=None if domestic is None else domestic.url)  # fmt: skip
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        *(["--cache-sim=yes"] if args.cache_sim else []),
        f"--callgrind-out-file={out}/callgrind.%p", *PYTHON, *server,
    ]  # fmt: skip
    ready = "/healthz" if version.server == PROXY else "/readyz"
    gateway = procs.start("gateway-callgrind", command, port=port, ready_path=ready,
                          logs=logs, env=env, server=True)  # fmt: skip
    url = gateway.url + "/v1/dcc"
    body = json.dumps(examples.EU_VACCINATION).encode()
    headers = {**auth.header, "Content-Type": "application/json"}
    try:
        pid = str(gateway.popen.pid)
        _send(url, body, headers, args.warmup, args.concurrency)
        _control("--instr=on", pid)
        _send(url, body, headers, args.warmup // 2, args.concurrency)
        seen: set[Path] = set()
        version.idle_rate = _idle_rate(gateway.popen.pid, out, seen, args.idle)
        window = Window(gateway, url, body, headers, out, seen)
        window.measure(version, args)
        for shape in args.shape if version.server != PROXY else []:  # none held yet
            _measure_shape(version, window, args, signer_url, shape)
        if domestic is not None:
            with httpx.Client(base_url=domestic.url, timeout=10) as client:
                _measure_during(version, window, args, auth, client)
        if args.hold:
            _control("--instr=off", pid)
            _hold(args.hold, url, logs, auth, signer_url)
            _control("--instr=on", pid)
            _send(url, body, headers, args.warmup // 2, args.concurrency)
            label = f"{version.label}, after {args.hold:,} held"
            after = Version(label, version.tree, idle_rate=version.idle_rate)
            version.after_hold = after
            window.measure(after, args)
    finally:
        gateway.stop()
        if args.keep:
            kept = RESULTS / f"callgrind-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
            shutil.copytree(out, kept)
            print(f"dumps kept in {kept}", flush=True)


def _row(v: Version, first: float) -> str:
    windows = ", ".join(f"{w:,.0f}" for w in v.windows)
    net = ", ".join(f"{w:,.0f}" for w in v.net)
    median = statistics.median(v.net)
    return (f"| {v.label} | {windows} | {net} ({v.idle_rate:,.0f}/s) | {median:,.0f} | "
            f"{median / first:.3f} |")  # fmt: skip


def _with_hold(v: Version) -> list[Version]:
    """`v`, its figures under `--shape` and `--during`, and after `--hold`, those measured."""
    return [v, *v.loaded, *([] if v.after_hold is None else [v.after_hold])]


def _misses_table(measured: list[Version]) -> list[str]:
    lines = [
        "",
        (
            "Cache misses per request (callgrind's model of this machine's caches; the windows' "
            "median):"
        ),
        "",
        "| version | " + " | ".join(MISS_EVENTS) + " |",
        "|---|" + "---|" * len(MISS_EVENTS),
    ]
    for row in (r for v in measured for r in _with_hold(v)):
        medians = [statistics.median(w.get(e, 0.0) for w in row.misses) for e in MISS_EVENTS]
        lines.append(f"| {row.label} | " + " | ".join(f"{m:,.0f}" for m in medians) + " |")
    return lines


def _s3_lines(measured: list[Version]) -> list[str]:
    """S3's two ratios counted in instructions, for each gateway beside `--proxy`/`--httpx`.

    In S3 (bench/run.py) the ratios are of requests per second with the machine's two cores
    shared by wrk, the fake signer and the server; here they are of the server's own work per
    request, which is what the full path can change.
    """
    median = {v.label: statistics.median(v.net) for v in measured}
    proxy = next((v for v in measured if v.server == PROXY), None)
    httpx_gw = next((v for v in measured if v.server == HTTPX), None)
    gateways = [v for v in measured if v.server == "gateway"]
    if not gateways or (proxy is None and httpx_gw is None):
        return []
    lines = ["", "S3's ratios counted in instructions (median net per request):", ""]
    for v in gateways:
        if proxy is not None:
            ratio = median[proxy.label] / median[v.label]
            lines.append(f"- {v.label}: the pass-through proxy's {median[proxy.label]:,.0f} "
                         f"over its {median[v.label]:,.0f} = {ratio:.3f} (S3's target: "
                         "req/s at least 0.6 of the proxy's)")  # fmt: skip
        # The httpx variant runs this checkout's gateway: a ratio to another version's would
        # mix two versions' full paths.
        if httpx_gw is not None and httpx_gw.tree == v.tree:
            ratio = median[httpx_gw.label] / median[v.label]
            lines.append(f"- {v.label}: the httpx-transport gateway's "
                         f"{median[httpx_gw.label]:,.0f} over its {median[v.label]:,.0f} = "
                         f"{ratio:.2f}x (S3's target: at least 5x its req/s)")  # fmt: skip
    return lines


def _report(versions: list[Version], args: argparse.Namespace) -> str:
    measured = [v for v in versions if v.failed is None]
    first = statistics.median(measured[0].net)
    lines = [
        (
            f"Instructions per `/v1/dcc` request (`python -m bench.instructions "
            f"{' '.join(args.shown)}`): {args.windows} windows of {args.requests} requests, "
            f"{args.concurrency} keep-alive clients, fake signer at 0 ms; callgrind counts "
            "every thread of the gateway's process, user space only."
        ),
        "",
        (
            "| version | per request, each window | less the background (idle rate) | "
            "median net | against the first |"
        ),
        "|---|---|---|---|---|",
    ]
    for v in versions:
        if v.failed is not None:
            lines.append(f"| {v.label} | not measured: {v.failed} | | | |")
        else:
            lines.extend(_row(row, first) for row in _with_hold(v))
    if args.cache_sim:
        lines += _misses_table(measured)
    lines += _s3_lines(measured)
    # The first and the last version, and the first's figures under the last load measured.
    for v in measured[:1] + measured[0].loaded[-1:] + measured[1:][-1:]:
        assert v.costs is not None
        per = args.requests
        lines += ["", f"Where {v.label}'s instructions went (last window, per request):", "",
                  "| shared object | per request | share |", "|---|---|---|"]  # fmt: skip
        objects: collections.Counter[str] = collections.Counter()
        for path, cost in v.costs.by_object.items():
            objects[_object_name(path)] += cost
        for name, cost in objects.most_common(8):
            lines.append(f"| {name} | {cost / per:,.0f} | {100 * cost / v.costs.total:.1f} % |")
        lines += ["", "| function (self) | per request | share |", "|---|---|---|"]
        for name, cost in v.costs.by_function.most_common(args.functions):
            shown = name.replace("|", "\\|")
            lines.append(f"| `{shown}` | {cost / per:,.0f} | {100 * cost / v.costs.total:.1f} % |")
    return "\n".join(lines) + "\n"


def _versions(args: argparse.Namespace, logs: Path) -> list[Version]:
    """What to measure, in order: the versions given (else this tree), then the comparisons."""
    versions = []
    for n, (kind, value) in enumerate(args.versions):
        if kind == "rev":
            tree = _export(value, logs / f"rev-{n}")
            versions.append(Version(f"{value} ({_short(value)})", tree))
        else:
            versions.append(Version(_describe(Path(value)), Path(value).resolve()))
    if not versions:
        versions.append(Version(_describe(ROOT), ROOT))
    if args.httpx:
        versions.append(Version(f"{_describe(ROOT)} on httpx's transport", ROOT, server=HTTPX))
    if args.proxy:
        versions.append(Version("pass-through proxy", ROOT, server=PROXY))
    return versions


def _counts(text: str) -> list[int]:
    """`--during`'s counts: positive, increasing (each adds to the requests already held)."""
    counts = [int(part) for part in text.split(",")]
    if any(n <= 0 for n in counts) or counts != sorted(set(counts)):
        raise argparse.ArgumentTypeError(f"positive increasing counts wanted, not {text!r}")
    return counts


def _shape(text: str) -> tuple[int, float]:
    """`--shape CLIENTS:MS`: positive clients, a latency from 0 to the fake signer's longest."""
    clients, _, latency = text.partition(":")
    try:
        shape = int(clients), float(latency)
    except ValueError:
        shape = (0, -1.0)
    if shape[0] <= 0 or not 0 <= shape[1] <= DURING_SECONDS * 1000:
        raise argparse.ArgumentTypeError(f"CLIENTS:MS wanted (160:5000), not {text!r}")
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "--rev",
        dest="versions",
        action="append",
        default=[],
        type=lambda rev: ("rev", rev),
        help="a commit to measure",
    )
    parser.add_argument("--tree", dest="versions", action="append",
                        type=lambda tree: ("tree", tree),
                        help="a source tree to measure (its signing_gateway/)")  # fmt: skip
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="also measure S3's pass-through proxy (bench/passthrough.py), after the versions",
    )
    parser.add_argument(
        "--httpx",
        action="store_true",
        help="also measure this tree's gateway on httpx's default transport (S3's other side)",
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per window")
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--functions", type=int, default=12, help="functions listed")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds with no load, for the background's rate"
    )
    parser.add_argument(
        "--hold",
        type=int,
        default=0,
        help="then hold this many requests at a slow signer and measure again",
    )
    parser.add_argument(
        "--during",
        type=_counts,
        default=[],
        help="then measure again while each of these counts of requests waits in the gateway "
        "(comma-separated, increasing: 250,1000)",
    )
    parser.add_argument(
        "--shape",
        type=_shape,
        action="append",
        default=[],
        metavar="CLIENTS:MS",
        help="then measure again from CLIENTS persistent clients with the signer at MS ms "
        "(S1's shape at valgrind's scale: 160:5000; its limit's: 64:0); repeatable",
    )
    parser.add_argument(
        "--cache-sim",
        action="store_true",
        help="also count cache misses (callgrind's cache model; ~2x slower)",
    )
    parser.add_argument("--keep", action="store_true",
                        help="copy the callgrind dumps to bench/results/")  # fmt: skip
    raw = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(raw)
    args.shown = raw
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: install valgrind (apt-get install valgrind)")
    procs.stop_children_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        logs = Path(tmp)
        versions = _versions(args, logs)
        # `--during` holds domestic requests: the token (the same size) also has their scope.
        scopes = (SCOPE_DCC_SIGN, SCOPE_DOMESTIC_SIGN) if args.during else (SCOPE_DCC_SIGN,)
        auth = bench_auth.make(logs, scopes=scopes)
        with procs.fake_signer(logs, latency_ms=0, keys_dir=logs / "keys") as signer:
            for version in versions:
                try:
                    measure(version, args, logs, auth, signer.url)
                except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                    version.failed = " ".join(str(exc).split())[:160]
                    print(f"{version.label}: not measured: {version.failed}", flush=True)
        if all(v.failed for v in versions):
            return 1
        keep_markdown("instructions", _report(versions, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
