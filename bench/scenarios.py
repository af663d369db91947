"""The bench scenarios S1-S4 (see docs/benchmarks.md); each returns a dict of figures."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.poller import with_skipped_ticks
from bench.wrk import Load, WrkResult, run_wrk, shown_command, wrk_command


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback http
        return json.loads(response.read())


def _put_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback http
        url, data=json.dumps(body).encode(), method="PUT",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310
        pass


def _metrics_lines(gateway: procs.Proc) -> list[str]:
    """The gateway's /metrics exposition, line by line."""
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=10) as response:  # noqa: S310
        return list(response.read().decode().splitlines())


def in_progress(gateway: procs.Proc) -> int:
    """Requests inside the gateway now (its `gateway_requests_in_progress` gauge)."""
    for line in _metrics_lines(gateway):
        if line.startswith("gateway_requests_in_progress "):
            return int(float(line.split()[1]))
    return 0


def _readyz_detail(gateway: procs.Proc, key: str) -> dict[str, Any]:
    """One detail of /readyz; a 503 (a signer probe failed under load) still carries them."""
    try:
        try:
            with urllib.request.urlopen(gateway.url + "/readyz", timeout=10) as response:  # noqa: S310
                data = response.read()
        except urllib.error.HTTPError as exc:
            data = exc.read()
        return dict(json.loads(data)[key])
    except (OSError, KeyError, ValueError):
        return {}


def loop_lag(gateway: procs.Proc) -> dict[str, Any]:
    """The gateway's event-loop lag figures since start, from /readyz details."""
    return _readyz_detail(gateway, "eventLoop")


def gc_pauses(gateway: procs.Proc) -> dict[str, Any]:
    """The gateway's garbage-collector pauses since start (count, total, max per generation)."""
    return _readyz_detail(gateway, "gc")


def loop_lag_max(gateway: procs.Proc) -> float | None:
    """The gateway's largest event-loop lag since start."""
    value = loop_lag(gateway).get("maxLagSeconds")
    return None if value is None else float(value)


_BUCKET_LINE = re.compile(r"^(\w+)_bucket\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def histogram_buckets(lines: list[str], name: str, **labels: str) -> dict[str, float]:
    """Cumulative counts of histogram `name` by bucket bound (`le`), from exposition `lines`.

    Summed over its series whose labels include `labels` (every series when none are named).
    """
    counts: dict[str, float] = {}
    for line in lines:
        match = _BUCKET_LINE.match(line)
        if match is None or match.group(1) != name:
            continue
        found = dict(_LABEL.findall(match.group(2)))
        if all(found.get(k) == v for k, v in labels.items()):
            counts[found["le"]] = counts.get(found["le"], 0.0) + float(match.group(3))
    return counts


def lag_histogram(gateway: procs.Proc) -> dict[str, float]:
    """Cumulative sample counts of `gateway_event_loop_lag_seconds` by bucket bound (`le`)."""
    return histogram_buckets(_metrics_lines(gateway), "gateway_event_loop_lag_seconds")


def dcc_durations(gateway: procs.Proc) -> dict[str, float]:
    """Cumulative counts of the gateway's /v1/dcc request durations by bucket bound, every
    outcome (answered, or the client gone first) together."""
    return histogram_buckets(
        _metrics_lines(gateway), "gateway_request_duration_seconds", route="/v1/dcc"
    )


def held_longer(before: dict[str, float], after: dict[str, float], seconds: float) -> int:
    """Requests that ended between two `dcc_durations` having lasted over `seconds`.

    Counted above the largest bucket bound not over `seconds` (all of them if none is).
    """
    bounds = [b for b in after if b != "+Inf" and float(b) <= seconds]
    bound = max(bounds, key=float) if bounds else None

    def over(counts: dict[str, float]) -> float:
        return counts.get("+Inf", 0.0) - (counts.get(bound, 0.0) if bound else 0.0)

    return int(over(after) - over(before))


def drained(gateway: procs.Proc, *, within: float) -> int:
    """Wait (at most `within` s) until the gateway holds no request; those it still holds.

    Its gauge counts the scrape asking too.
    """
    deadline = time.monotonic() + within
    while True:
        inside = max(0, in_progress(gateway) - 1)
        if inside == 0 or time.monotonic() >= deadline:
            return inside
        time.sleep(0.2)


@dataclass(frozen=True)
class LagMark:
    """The gateway's loop-lag figures at one moment: histogram counts and the maximum so far."""

    counts: dict[str, float]
    max_seconds: float

    @classmethod
    def read(cls, gateway: procs.Proc) -> LagMark:
        """Read both from the running gateway (`/metrics`, `/readyz`)."""
        return cls(lag_histogram(gateway), loop_lag_max(gateway) or 0.0)


def _append_mark(marks: list[LagMark], gateway: procs.Proc) -> None:
    """Timer body: add a mark; a scrape that fails under load leaves the window unmeasured."""
    with contextlib.suppress(OSError, ValueError):
        marks.append(LagMark.read(gateway))


def lag_between(before: LagMark, after: LagMark) -> dict[str, Any]:
    """Loop lag in the window between two marks.

    Samples over 100 ms come from the histogram, exactly (0.1 s is a bucket bound). The
    window's maximum is exact when it set a new maximum since start; otherwise only its bucket
    is known, and `max_bound_ms` is that bucket's upper bound.
    """
    diff = {le: n - before.counts.get(le, 0.0) for le, n in after.counts.items()}
    samples = diff.get("+Inf", 0.0)
    bound = min((float(le) for le, n in diff.items() if n == samples), default=math.inf)
    exact = after.max_seconds if after.max_seconds > before.max_seconds else None
    return {
        "samples": int(samples),
        "over_100ms": int(samples - diff.get("0.1", 0.0)),
        "max_ms": None if exact is None else round(exact * 1000, 1),
        "max_bound_ms": None if math.isinf(bound) else round(bound * 1000, 1),
    }


#: The gateway's count of 2xx answers to /v1/dcc, in its /metrics exposition.
_DCC_2XX = 'gateway_responses_sent_total{route="/v1/dcc",status_class="2xx"} '


def dcc_answered(gateway: procs.Proc) -> float:
    """2xx answers the gateway has sent to /v1/dcc since it started, by its own count."""
    for line in _metrics_lines(gateway):
        if line.startswith(_DCC_2XX):
            return float(line.removeprefix(_DCC_2XX))
    return 0.0


@dataclass(frozen=True)
class SteadyMark:
    """One moment of a load: the gateway's /v1/dcc 2xx count and CPU time, and when."""

    at: float
    answered: float
    cpu_seconds: float

    @classmethod
    def read(cls, gateway: procs.Proc, answered: Callable[[], float] | None = None) -> SteadyMark:
        """Read both off the running gateway; `at` is the middle of the scrape.

        `answered` counts the answers instead of the gateway's metrics (a server without them).
        """
        sent = time.monotonic()
        count = answered() if answered is not None else dcc_answered(gateway)
        cpu, back = gateway.cpu_seconds(), time.monotonic()
        return cls((sent + back) / 2, count, cpu)


def steady_between(before: SteadyMark, after: SteadyMark) -> dict[str, Any]:
    """Throughput and CPU per answer between two marks taken while the load ran.

    wrk's own figure divides what it got back by its whole run; with a 1 s signer, nothing
    can come back in the run's first second, and the work spent on the requests still at the
    signer when it stops is lost. Between two marks inside the run, answers to requests sent
    before the first mark balance the work left unfinished at the second: what is left is
    the rate the gateway sustains, the same kind of figure as its ceiling.
    """
    seconds = after.at - before.at
    answered = after.answered - before.answered
    return {
        "seconds": round(seconds, 2),
        "answered": int(answered),
        "rps": round(answered / seconds, 1) if seconds > 0 else 0.0,
        "cpu_us_per_request": round(
            (after.cpu_seconds - before.cpu_seconds) / max(1.0, answered) * 1e6, 1
        ),
    }


class SteadyWindow:
    """Two marks of the gateway inside a run, `settle` s and `end` s after it is made.

    Make it just before the load starts: its timers start at once.
    """

    def __init__(
        self,
        gateway: procs.Proc,
        *,
        settle: float,
        end: float,
        answered: Callable[[], float] | None = None,
    ) -> None:
        self.settle = settle
        self.marks: list[SteadyMark] = []
        self._answered = answered
        self._timers = [threading.Timer(t, self._mark, (gateway,)) for t in (settle, end)]
        for timer in self._timers:
            timer.daemon = True  # a run that fails before `figures()` must not wait for them
            timer.start()

    def _mark(self, gateway: procs.Proc) -> None:
        with contextlib.suppress(OSError, ValueError):  # a scrape that fails under load
            self.marks.append(SteadyMark.read(gateway, self._answered))

    def figures(self) -> dict[str, Any] | None:
        """Wait for both marks: the steady figures, or None when a scrape failed."""
        for timer in self._timers:
            timer.join()
        if len(self.marks) != 2:
            return None
        return steady_between(*self.marks) | {"from_s": self.settle}


#: Seconds into S1's window before its steady state is measured: by then the answers to the
#: first second's requests (p99 ~3.4 s at the S3 ceiling) have come back.
S1_SETTLE_S = 4.0
#: The same for a ceiling run (signer latency 0, answers within ~0.5 s).
CEILING_SETTLE_S = 2.0
#: The steady state ends this long before wrk does, before it closes its connections.
STEADY_END_MARGIN_S = 0.5
#: How long S1's and S2's clients (wrk) wait for an answer.
CLIENT_TIMEOUT_S = 10.0
#: After S1, how long the gateway may take to end the requests it still holds: its request
#: deadline (`procs.gateway`'s 20 s) and a margin.
DRAIN_WITHIN_S = 30.0


def _percentile(values: list[float], q: float) -> float:
    """The smallest value at least `q` % of `values` are at or below (the nearest rank).

    Rounding `q` % of the way along the sorted values instead can land one rank short:
    of 2,099 polls (21 s at 10 ms) it took the 2,078th, and 21 polls over 50 ms, 1.0005 %,
    left "p99 <= 50 ms" met.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered) / 100) - 1)]


def _wrk_figures(result: WrkResult) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "requests": result.requests,
        "ok": result.ok,
        "errors": result.errors,
        "error_detail": {
            "connect": result.connect_errors, "read": result.read_errors,
            "write": result.write_errors, "status": result.status_errors,
            "timeout": result.timeouts,
        },
        "seconds": round(result.seconds, 2),
        "rps": round(result.rps, 1),
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "command": result.command,
    }  # fmt: skip
    if result.statuses:  # where the script counts them (bench/endpoints.lua)
        figures["statuses"] = result.statuses
        figures["not_200"] = result.requests - result.statuses.get("200", 0)
    if result.steps:
        figures["steps"] = result.steps
    return figures


def _latency_figures(latencies_ms: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of latencies in ms (None each when there are none)."""
    if not latencies_ms:
        return dict.fromkeys(("p50_ms", "p99_ms", "max_ms"))
    return {
        "p50_ms": round(statistics.median(latencies_ms), 2),
        "p99_ms": round(_percentile(latencies_ms, 99), 2),
        "max_ms": round(max(latencies_ms), 2),
    }


def poll_figures(polls: dict[str, Any]) -> dict[str, Any]:
    """Count, failures and latency percentiles of polls: `{"latencies": [s], "failures": n}`.

    The shape `bench.poller` writes. Its polls keep a fixed schedule (`interval_s`): there the
    percentiles also count the ticks a slow answer made it skip (`poller.with_skipped_ticks`),
    and `raw` holds those of the polls sent alone.
    """
    latencies_ms = [x * 1000 for x in polls["latencies"]]
    figures: dict[str, Any] = {"polls": len(latencies_ms), "failures": polls["failures"]}
    interval_s = polls.get("interval_s")
    if not interval_s:
        return figures | _latency_figures(latencies_ms)
    counted = with_skipped_ticks(latencies_ms, interval_s * 1000)
    return figures | {
        "skipped_ticks": len(counted) - len(latencies_ms),
        **_latency_figures(counted),
        "raw": _latency_figures(latencies_ms),
    }


def start_poller(base: str, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """`bench.poller` GETting `base`/healthz every 10 ms for `seconds` + 1 s, into `out`."""
    command = [sys.executable, "-m", "bench.poller", base + "/healthz", "10",
               str(seconds + 1), str(out)]  # fmt: skip
    return subprocess.Popen(command)


def slow_signers(target: procs.Proc, load: Load, logs: Path, *, clients: int, seconds: float,
                 signer_latency_s: float, has_lag: bool) -> dict[str, Any]:  # fmt: skip
    """S1/S2: `clients` concurrent /v1/dcc for `seconds` while /healthz is polled every 10 ms."""
    url = target.url + "/v1/dcc"
    # Warm-up; one connection for the blocking gateway, whose queued warm-up requests would
    # otherwise occupy its single loop for the whole measured window.
    run_wrk(url, load, connections=20 if has_lag else 1, seconds=2, timeout_s=10)
    # The port the clients use, as always; where the gateway has a probe port (where
    # docs/operations.md points the orchestrator) that one is polled too, for comparison.
    polled = {"healthz": target.url}
    if target.probe_url:
        polled["healthz_probe_port"] = target.probe_url
    pollers: dict[str, tuple[Path, subprocess.Popen[bytes]]] = {}
    for key, base in polled.items():
        out = logs / f"{target.name}-{key}.json"
        pollers[key] = (out, start_poller(base, seconds, out))
    cpu_before = target.cpu_seconds()
    # Loop lag over the measured window only, like the /healthz polls: the first mark before
    # the load starts, the second just before it ends (wrk's closing of 1,000 connections,
    # which cancels the requests still in flight, is not part of the steady load).
    lag_marks: list[LagMark] = []
    if has_lag:  # the blocking gateway has no metrics
        lag_marks.append(LagMark.read(target))
        durations = dcc_durations(target)
        late_mark = threading.Timer(seconds - 0.5, _append_mark, (lag_marks, target))
        late_mark.start()
        steady = SteadyWindow(
            target, settle=min(S1_SETTLE_S, seconds / 4), end=seconds - STEADY_END_MARGIN_S
        )
    ticks = procs.cpu_ticks()
    result = run_wrk(
        url, load, connections=clients, seconds=seconds, threads=2, timeout_s=CLIENT_TIMEOUT_S
    )
    steal = procs.steal_shares(ticks, procs.cpu_ticks())
    cpu = target.cpu_seconds() - cpu_before
    if has_lag:
        late_mark.join()
        steady_figures = steady.figures()
    health = {}
    for key, (out, poller) in pollers.items():
        poller.wait(timeout=seconds + 60)
        health[key] = poll_figures(json.loads(out.read_text()))
    limit = clients / signer_latency_s
    figures = _wrk_figures(result)
    figures |= {
        "clients": clients,
        "limit_rps": limit,
        "throughput_share": round(result.rps / limit, 3),
        "success_share": round(
            result.ok / max(1, result.requests + result.errors - result.status_errors), 4
        ),
        **health,
        "cpu_us_per_request": round(cpu / max(1, result.requests) * 1e6, 1),
        "cpu_steal": steal,
        "loop_lag_max_ms": None,
    }
    if has_lag:
        lag = loop_lag(target)
        if lag:
            figures["loop_lag_max_ms"] = round(lag["maxLagSeconds"] * 1000, 1)
            figures["loop_lag_samples"] = lag["samples"]
            figures["loop_lag_samples_over_100ms"] = lag["samplesOverThreshold"]
        if len(lag_marks) == 2:
            figures["loop_lag_window"] = lag_between(*lag_marks)
        figures["gc"] = gc_pauses(target)
        if steady_figures:
            figures["steady"] = steady_figures
        # wrk counts a timeout only for an answer that came later than its timeout: a
        # request still unanswered when it stops counts as nothing. The gateway's own
        # durations count those too, once the requests it holds have ended.
        still = drained(target, within=DRAIN_WITHIN_S)
        figures["held_over_timeout"] = (
            held_longer(durations, dcc_durations(target), CLIENT_TIMEOUT_S) + still
        )
    return figures


def ceiling(target: procs.Proc, signer: procs.Proc, load: Load, *, clients: int,
            seconds: float, steady: bool = False,
            url: str | None = None) -> dict[str, Any]:  # fmt: skip
    """S3: req/s and CPU per request at signer latency 0.

    `steady`: also measure the gateway's steady state inside the run, as S1's is (`steady`
    in the figures), for S1's limit runs; the proxy has no count of its own to read.
    `url`: what `load` is sent to (default the target's /v1/dcc; bench/endpoints.py).
    """
    url = url or target.url + "/v1/dcc"
    run_wrk(url, load, connections=clients, seconds=3)  # warm-up
    cpu_before, signer_before = target.cpu_seconds(), signer.cpu_seconds()
    window = (
        SteadyWindow(
            target, settle=min(CEILING_SETTLE_S, seconds / 4), end=seconds - STEADY_END_MARGIN_S
        )
        if steady
        else None
    )
    started, ticks = time.monotonic(), procs.cpu_ticks()
    result = run_wrk(url, load, connections=clients, seconds=seconds, threads=2)
    wall, steal = time.monotonic() - started, procs.steal_shares(ticks, procs.cpu_ticks())
    cpu, signer_cpu = target.cpu_seconds() - cpu_before, signer.cpu_seconds() - signer_before
    steady_figures = window.figures() if window else None
    figures = _wrk_figures(result)
    figures |= {
        "clients": clients,
        "cpu_us_per_request": round(cpu / max(1, result.requests) * 1e6, 1),
        "cpu_seconds": round(cpu, 3),
        "target_cpu_share": round(cpu / wall, 2),
        "signer_cpu_share": round(signer_cpu / wall, 2),
        "signer_cpu_us_per_request": round(signer_cpu / max(1, result.requests) * 1e6, 1),
        "cpu_steal": steal,
    }
    if steady_figures:
        figures["steady"] = steady_figures
    return figures


@dataclass(frozen=True)
class MemorySample:
    """One S4 sample: requests inside the server, its RSS, the signer's answers so far."""

    inside: int
    rss: int
    answered: int


def peak_sample(
    samples: list[MemorySample], rss_idle: int, *, before_first_answer: bool
) -> tuple[int, int]:
    """(Most requests inside, the RSS then): of the samples at that count, the latest.

    `before_first_answer`: only the samples taken before the signer answered its first
    request count. Once answers flow, the server also holds what answering costs (the
    answers, their logs and audit records, freed memory not yet given back), and a sample at
    the peak count can fall there or in the fill before it, by chance of timing.
    """
    peak, rss = 0, rss_idle
    for sample in samples:
        if before_first_answer and sample.answered:
            break
        if sample.inside >= peak:
            peak, rss = sample.inside, sample.rss
    return peak, rss


def _signer_answers(stats: dict[str, Any]) -> int:
    """Signing requests the fake signer has ended, whatever their outcome."""
    return sum(stats.get("totals", {}).get("get_credential", {}).values())


def memory(gateway: procs.Proc, signer: procs.Proc, load: Load, *, in_flight: int,
           signer_latency_s: float, seconds: float, is_gateway: bool = True,
           before_first_answer: bool = False) -> dict[str, Any]:  # fmt: skip
    """S4: RSS per in-flight request with `in_flight` requests held by a slow signer.

    `is_gateway` False: the pass-through proxy, which has no metrics or readiness details; its
    in-flight count is the signer's, a lower bound (beyond its connector's limit requests
    wait inside it for a connection), so its KB per request is, if anything, high.
    `before_first_answer`: the RSS is taken at the peak reached before the signer's first
    answer (see `peak_sample`): for a load that all reaches the signer within its latency.
    """
    url = gateway.url + "/v1/dcc"
    run_wrk(url, load, connections=20, seconds=2)  # warm-up at latency 0
    _put_json(signer.url + "/_control", {"latencyMs": signer_latency_s * 1000, "jitterMs": 0})
    time.sleep(0.5)
    rss_idle = gateway.rss_bytes()
    answered_before = _signer_answers(_get_json(signer.url + "/_stats"))  # the warm-up's
    command = wrk_command(url, connections=in_flight, seconds=seconds, threads=4, timeout_s=60)
    out = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **load.env()},
    )  # fmt: skip
    samples: list[MemorySample] = []
    rss_max = rss_idle
    deadline = time.monotonic() + seconds + 5
    peak_at_signer = 0
    while out.poll() is None and time.monotonic() < deadline:
        try:
            stats = _get_json(signer.url + "/_stats")
            at_signer = stats["inFlight"]
            # The gateway's gauge counts this scrape too; the proxy has none (see above).
            inside = in_progress(gateway) - 1 if is_gateway else at_signer
        except OSError:  # a scrape that times out under the burst: try again
            continue
        rss = gateway.rss_bytes()
        rss_max = max(rss_max, rss)
        peak_at_signer = max(peak_at_signer, at_signer)
        samples.append(MemorySample(inside, rss, _signer_answers(stats) - answered_before))
        time.sleep(0.25)
    peak_in_flight, rss_at_peak = peak_sample(
        samples, rss_idle, before_first_answer=before_first_answer
    )
    stdout, _ = out.communicate(timeout=seconds + 90)
    line = next(x for x in stdout.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors",
                                   "status_errors", "timeouts"))  # fmt: skip
    lag = loop_lag_max(gateway) if is_gateway else None
    gc = gc_pauses(gateway) if is_gateway else {}
    return {
        "gc": gc,
        "in_flight_target": in_flight,
        "peak_in_flight": peak_in_flight,
        "peak_at_signer": peak_at_signer,
        "requests": data["requests"],
        "errors": errors,
        "error_detail": {
            k: data[k]
            for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        },
        "p50_ms": data["p50_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "rss_idle_mb": round(rss_idle / 2**20, 1),
        "rss_at_peak_mb": round(rss_at_peak / 2**20, 1),
        "rss_max_mb": round(rss_max / 2**20, 1),
        "peak_before_first_answer": before_first_answer,
        # None when nothing was in flight at a sample: no figure, not 0 KB.
        "kb_per_in_flight": round((rss_at_peak - rss_idle) / 1024 / peak_in_flight, 1)
        if peak_in_flight
        else None,
        "bytes_per_in_flight": round((rss_at_peak - rss_idle) / peak_in_flight)
        if peak_in_flight
        else None,
        "loop_lag_max_ms": None if lag is None else round(lag * 1000, 1),
        "command": shown_command(command, load),
    }
