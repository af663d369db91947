"""Soak: minutes of mixed load with ~10 % injected signer faults; nothing may hang or 500.

    python -m bench.soak                 # 5 minutes (make soak)
    python -m bench.soak --duration 30   # a short run

Starts an EU and a domestic fake signer and a real gateway process (`signing-gateway serve`)
on loopback, drives a closed-loop mix of every public route, and every 0.2 s injects faults
(status codes, resets, hangs, malformed or wrongly signed bodies, slow bodies) through the
fakes' `PUT /_control`: as many signer calls as ~10 % of the requests sent in that period
(`--fault-share`), split between the two fakes. It reports what was sent, what succeeded,
failures by status, hung requests (no answer within deadline + 5 s: must be 0), 500s (must
be 0), the gateway's own received/sent accounting, the signings the signers counted
against the gateway's successes, and the gateway process's memory and open descriptors through
the run and once it is idle again, with what it still has in flight then (must be nothing).
The figures go to docs/benchmarks.md between the soak markers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench import auth as bench_auth
from bench import report
from bench.procs import (
    Proc,
    add_session_store_option,
    free_port,
    session_store_env,
    start,
    stop_children_on_sigterm,
)
from signing_gateway.api import examples
from signing_gateway.security.settings import ALL_SCOPES, LimitsSettings

LOOPBACK = "127.0.0.1"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- soak:start -->", "<!-- soak:end -->"
DEADLINE_S = 5.0
HANG_MARGIN_S = 5.0
SIGNER_CAPACITY = 64
FAULTS = [
    "status=500",
    "status=503;retry-after=0",
    "status=429",
    "reset",
    "hang",
    "malformed",
    "bad-signature",
    "wrong-kid",
    "slow-body=300",
    "delay=6000",
]
#: (route kind, weight); "session" is prepare-issue followed by issue.
MIX = [("dcc", 40), ("static", 25), ("print", 15), ("session", 20)]
#: Signer signings one successful gateway request stands for.
SIGNINGS = {
    "dcc": {"get_credential": 1},
    "static": {"issue_static": 1},
    "print": {"issue_static": 1, "get_credential": 1},
    "prepare": {"prepare_issue": 1},
    "issue": {"issue": 1},
}


#: How often the gateway's memory and open descriptors are read during the load.
RESOURCE_EVERY_S = 5.0
#: From when on the load's memory counts as warmed up: caches and pools have grown by then.
WARM_AFTER_S = 60.0


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    hung: int = 0
    transport_errors: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0
    faults_injected: Counter[str] = field(default_factory=Counter)


def _attributes() -> dict[str, str]:
    return dict(examples.DOMESTIC_ATTRIBUTES, validFrom=str(int(time.time())))


@contextlib.contextmanager
def _fake(logs: Path, role: str, keys: Path) -> Iterator[Proc]:
    port = free_port()
    proc = start(
        f"fake-{role}",
        [sys.executable, "-m", "fake_signer", "--role", role, "--host", LOOPBACK,
         "--port", str(port), "--latency-ms", "20", "--jitter-ms", "10",
         "--capacity", str(SIGNER_CAPACITY), "--overflow", "queue",
         "--keys-dir", str(keys / role), "--log-level", "warning"],
        port=port, ready_path="/healthz", logs=logs,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()


def _gateway_env(eu: str, domestic: str, auth: bench_auth.BenchAuth) -> dict[str, str]:
    """The soaked gateway's settings: callers' tokens checked against `auth`'s keys."""
    env = {
        **auth.gateway_env(),
        "SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS": "true",
        "SIGNING_GATEWAY_REQUEST_DEADLINE_SECONDS": str(DEADLINE_S),
        "SIGNING_GATEWAY_LOG_LEVEL": "ERROR",
        "SIGNING_GATEWAY_READINESS_PROBE_INTERVAL_SECONDS": "1",
    }
    for group, url in (("EU_SIGNER", eu), ("DOMESTIC_SIGNER", domestic)):
        prefix = f"SIGNING_GATEWAY_{group}__"
        env |= {
            prefix + "URL": url,
            prefix + "MAX_CONNECTIONS": str(SIGNER_CAPACITY * 2),
            prefix + "RESILIENCE__MAX_IN_FLIGHT": str(SIGNER_CAPACITY),
            prefix + "RESILIENCE__MAX_PENDING": str(SIGNER_CAPACITY),
            prefix + "RESILIENCE__ATTEMPT_TIMEOUT_SECONDS": "2",
            prefix + "RESILIENCE__BREAKER_OPEN_SECONDS": "1",
        }
    return env


async def _call(
    client: httpx.AsyncClient, tally: Tally, kind: str, path: str, body: Any = None
) -> httpx.Response | None:
    tally.sent[kind] += 1
    started = time.monotonic()
    try:
        response = await client.post(path, json=body)
    except httpx.TimeoutException:
        tally.hung += 1
        return None
    except httpx.TransportError as exc:
        tally.transport_errors[type(exc).__name__] += 1
        return None
    finally:
        tally.slowest_s = max(tally.slowest_s, time.monotonic() - started)
    tally.statuses[response.status_code] += 1
    if response.status_code == 200:
        tally.ok[kind] += 1
    elif response.status_code == 503:
        # A well-behaved caller: wait a random part of Retry-After (full jitter) before the
        # next request, instead of spinning on fast refusals.
        retry_after = float(response.headers.get("retry-after", "1"))
        await asyncio.sleep(random.uniform(0, retry_after))
    return response


async def _one(client: httpx.AsyncClient, tally: Tally, kind: str, rng: random.Random) -> None:
    if kind == "dcc":
        body = rng.choice([examples.EU_VACCINATION, examples.EU_TEST])
        await _call(client, tally, "dcc", "/v1/dcc", body)
    elif kind == "static":
        await _call(
            client, tally, "static", "/v1/domestic/static", {"credentialAttributes": _attributes()}
        )
    elif kind == "print":
        body = {"domestic": _attributes(), "european": examples.EU_TEST}
        await _call(client, tally, "print", "/v1/print", body)
    else:
        prepared = await _call(client, tally, "prepare", "/v1/domestic/prepare-issue")
        if prepared is None or prepared.status_code != 200:
            return
        out = prepared.json()
        nonce = orjson.loads(base64.b64decode(out["prepareIssueMessage"]))["issuerNonce"]
        commitment = orjson.dumps({"issuerNonce": nonce, "proof": "soak"})
        body = {
            "stoken": out["stoken"],
            "issueCommitmentMessage": base64.b64encode(commitment).decode(),
            "credentialsAttributes": [_attributes()],
        }
        await _call(client, tally, "issue", "/v1/domestic/issue", body)


async def _worker(client: httpx.AsyncClient, tally: Tally, until: float, seed: int) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    while time.monotonic() < until:
        await _one(client, tally, rng.choices(kinds, weights)[0], rng)


async def _injector(
    fakes: dict[str, str], tally: Tally, until: float, share: float, seed: int
) -> None:
    """Every 0.2 s, fault `share` of the last period's requests, spread over both fakes.

    A `_control` fault hits the next N calls in a row; short periods keep N small, so the
    faults are spread through the load rather than bunched into long failure streaks.
    """
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=5) as control:
        last = 0
        while time.monotonic() < until:
            await asyncio.sleep(0.2)  # the injection period
            sent = sum(tally.sent.values())
            budget = round((sent - last) * share)
            last = sent
            for role, url in fakes.items():
                count = budget // 2 + (rng.random() < (budget % 2) / 2)
                if count <= 0:
                    continue
                fault = rng.choice(FAULTS)
                await control.put(f"{url}/_control", json={"fault": fault, "faultCount": count})
                tally.faults_injected[f"{role}:{fault.split('=')[0]}"] += count


async def _signer_totals(urls: list[str]) -> Counter[str]:
    totals: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=5) as client:
        for url in urls:
            data = (await client.get(f"{url}/_stats")).json()
            for endpoint, outcomes in data["totals"].items():
                for outcome, count in outcomes.items():
                    totals[f"{endpoint}:{outcome}"] += count
    return totals


def _metric_sum(metrics_text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(prefix)
    )


def _accounting(metrics_text: str) -> dict[str, float]:
    received = sent = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("gateway_requests_received_total"):
            received += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gateway_responses_sent_total{"):
            sent += float(line.rsplit(" ", 1)[1])
    return {"received": received, "sent": sent}


@dataclass
class Resources:
    """The gateway process's RSS and open descriptors: (seconds into the load, bytes, fds)."""

    process: psutil.Process
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def sample(self, at: float) -> tuple[float, int, int]:
        """The figures now, `at` seconds into the load."""
        return (round(at, 1), self.process.memory_info().rss, self.process.num_fds())

    def read(self, at: float) -> None:
        """Keep the figures now among the load's samples."""
        self.samples.append(self.sample(at))

    async def sample_until(self, started: float, until: float) -> None:
        while (now := time.monotonic()) < until:
            self.read(now - started)
            await asyncio.sleep(min(RESOURCE_EVERY_S, max(until - now, 0.0)))

    def figures(self, idle_after: tuple[float, int, int]) -> dict[str, Any]:
        """Start, warmed up, end of the load and idle again; the most descriptors open."""
        load = self.samples
        warm = next((s for s in load if s[0] >= WARM_AFTER_S), load[-1])
        return {
            "rss_mb": {
                "start": _mb(load[0][1]),
                "warm": _mb(warm[1]),
                "end": _mb(load[-1][1]),
                "idle_after": _mb(idle_after[1]),
            },
            "warm_at_s": warm[0],
            "fds": {
                "start": load[0][2],
                "most": max(s[2] for s in load),
                "idle_after": idle_after[2],
            },
            "samples": self.samples,
        }


def _mb(n: int) -> float:
    return round(n / 1e6, 1)


async def _left_in_flight(client: httpx.AsyncClient, bound_s: float) -> dict[str, float]:
    """Requests and signer calls the gateway still holds, once they had `bound_s` to end.

    The scrape that reads them is itself a request in progress, so it is not counted.
    """
    until = time.monotonic() + bound_s
    while True:
        text = (await client.get("/metrics")).text
        left = {
            "requests": max(_metric_sum(text, "gateway_requests_in_progress ") - 1, 0),
            "signer_calls": _metric_sum(text, "gateway_signer_in_flight{"),
        }
        if not any(left.values()) or time.monotonic() >= until:
            return left
        await asyncio.sleep(0.2)


async def _drive(
    gateway: str,
    fakes: dict[str, str],
    args: argparse.Namespace,
    auth: bench_auth.BenchAuth,
    process: psutil.Process | None = None,
) -> dict[str, Any]:
    tally = Tally()
    limits = httpx.Limits(
        max_connections=args.concurrency,
        max_keepalive_connections=args.concurrency,
        # Closing idle connections before the gateway does, as docs/operations.md asks of a
        # caller: at httpx's default (5 s, the gateway's too) a request sent on a connection
        # the gateway was closing at that moment failed with a ReadError.
        keepalive_expiry=LimitsSettings().keep_alive_seconds - 1,
    )
    timeout = httpx.Timeout(DEADLINE_S + HANG_MARGIN_S)
    async with httpx.AsyncClient(
        base_url=gateway, timeout=timeout, limits=limits, headers=auth.header
    ) as client:
        for url in fakes.values():
            await client.post(f"{url}/_stats/reset")
        metrics_before = _accounting((await client.get("/metrics")).text)
        resources = Resources(process) if process else None
        started = time.monotonic()
        until = started + args.duration
        tasks = [_worker(client, tally, until, args.seed + i) for i in range(args.concurrency)]
        tasks.append(_injector(fakes, tally, until, args.fault_share, args.seed))
        if resources:
            tasks.append(resources.sample_until(started, until))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        if resources:
            resources.read(elapsed)
        for url in fakes.values():
            await client.put(f"{url}/_control", json={"fault": None})
        final_metrics = (await client.get("/metrics")).text
        metrics_after = _accounting(final_metrics)
        health = await client.get("/healthz")
        left = await _left_in_flight(client, DEADLINE_S + HANG_MARGIN_S)
    resources_figures = None
    if resources:
        # The callers' connections are closed now; the gateway's idle ones to the signers close
        # after their keep-alive expiry, which is the gateway's own default too.
        await asyncio.sleep(LimitsSettings().keep_alive_seconds + 1)
        resources_figures = resources.figures(resources.sample(time.monotonic() - started))
    signer = await _signer_totals(list(fakes.values()))
    expected: Counter[str] = Counter()
    for kind, count in tally.ok.items():
        for endpoint, n in SIGNINGS[kind].items():
            expected[endpoint] += n * count
    # Answers the fakes count as faults but that are valid signings: slow bodies and
    # delays still deliver a good answer. (A prepare_issue passes bad-signature and
    # wrong-kid by: it signs nothing, so they wait for the next issue or issue_static.)
    delivered_outcomes = {"ok", "fault:slow-body", "fault:delay"}
    signed: Counter[str] = Counter()
    for key, count in signer.items():
        endpoint, outcome = key.split(":", 1)
        if outcome in delivered_outcomes:
            signed[endpoint] += count
    return {
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "sent": sum(tally.sent.values()),
        "sent_by_kind": dict(tally.sent),
        "succeeded": sum(tally.ok.values()),
        "failed_by_status": {str(k): v for k, v in sorted(tally.statuses.items()) if k != 200},
        "hung": tally.hung,
        "transport_errors": dict(tally.transport_errors),
        "status_500": tally.statuses.get(500, 0),
        "slowest_s": round(tally.slowest_s, 2),
        "faults_injected": sum(tally.faults_injected.values()),
        "faults_by_kind": dict(tally.faults_injected),
        "gateway_received": metrics_after["received"] - metrics_before["received"],
        "gateway_sent": metrics_after["sent"] - metrics_before["sent"],
        "breaker_opened": _metric_sum(
            final_metrics, 'gateway_signer_breaker_transitions_total{signer="eu",to="open"}'
        )
        + _metric_sum(
            final_metrics, 'gateway_signer_breaker_transitions_total{signer="domestic",to="open"}'
        ),
        "shed": _metric_sum(final_metrics, "gateway_signer_shed_total{"),
        "session_store_failures": _metric_sum(
            final_metrics, "gateway_session_store_failures_total{"
        ),
        "retries": _metric_sum(final_metrics, "gateway_signer_retries_total{"),
        "retry_budget_exhausted": _metric_sum(
            final_metrics, "gateway_signer_retry_budget_exhausted_total{"
        ),
        "signer_ok_signings": dict(signed),
        "signings_implied_by_successes": dict(expected),
        "signer_outcomes": dict(sorted(signer.items())),
        "healthz_after": health.status_code,
        "left_in_flight": left,
        "resources": resources_figures,
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        START,
        "## Soak (`make soak`, bench/soak.py)",
        "",
        (
            f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}: {result['duration_s']} s, "
            f"{result['concurrency']} closed-loop callers (a 503 makes a caller wait a random "
            f"part of Retry-After), fakes at 20 ± 10 ms, capacity {SIGNER_CAPACITY} each, "
            f"deadline {DEADLINE_S:g} s, faults injected into ~10 % of requests' signer calls "
            "(status 500/503/429, reset, hang, malformed, bad signature, wrong kid, slow body, "
            "delay past the deadline)."
        ),
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent | {result['sent']} ({result['sent'] / result['duration_s']:.0f}/s) |",
        f"| succeeded (200) | {result['succeeded']} |",
        f"| failed, by status | {result['failed_by_status']} |",
        f"| hung (no answer in deadline + 5 s) | **{result['hung']}** |",
        f"| 500s | **{result['status_500']}** |",
        f"| transport errors at the caller | {result['transport_errors'] or 0} |",
        f"| slowest answer | {result['slowest_s']} s |",
        f"| faults injected | {result['faults_injected']} |",
        (
            f"| retries / budget refusals / shed / breaker openings | {result['retries']:.0f} / "
            f"{result['retry_budget_exhausted']:.0f} / {result['shed']:.0f} / "
            f"{result['breaker_opened']:.0f} |"
        ),
        (
            f"| gateway received / sent (/metrics) | {result['gateway_received']:.0f} / "
            f"{result['gateway_sent']:.0f} |"
        ),
        f"| valid signings delivered by the signers | {result['signer_ok_signings']} |",
        f"| signings implied by gateway 200s | {result['signings_implied_by_successes']} |",
        (
            "| left in flight once the load ended: requests / signer calls | "
            f"**{result['left_in_flight']['requests']:.0f} / "
            f"{result['left_in_flight']['signer_calls']:.0f}** |"
        ),
        *_resource_rows(result.get("resources")),
        "",
        (
            "Delivered signings are the fakes' `ok` answers plus the fault outcomes that still "
            "carry a valid answer (`slow-body`, `delay`). Delivered minus implied are "
            "signatures the gateway received but did not release: the surviving half of a "
            "`/v1/print` whose other part failed, and answers that arrived after the request's "
            "deadline had already answered 504. Bad-signature and wrong-kid credentials are "
            "withheld (502) and not counted as delivered. Signer calls the gateway abandoned "
            "show as `cancelled` at the fakes."
        ),
        *(
            [
                "",
                (
                    "RSS and open descriptors are the gateway process's own, read every "
                    f'{RESOURCE_EVERY_S:g} s during the load; "idle again" is read once the '
                    "callers' connections are closed and the gateway's idle connections to "
                    "the signers have passed their keep-alive expiry. A few of those stay: the "
                    "soak probes each signer every second, and aiohttp's pool hands out its "
                    "longest-idle connection first, so each of 4 or 5 is used again before it "
                    "expires."
                ),
            ]
            if result.get("resources")
            else []
        ),
        END,
    ]
    return "\n".join(lines)


def _resource_rows(resources: dict[str, Any] | None) -> list[str]:
    if not resources:
        return []
    rss, fds = resources["rss_mb"], resources["fds"]
    return [
        (
            f"| gateway RSS, MB: at the start / at {resources['warm_at_s']:g} s / at the end / "
            f"idle again | {rss['start']} / {rss['warm']} / {rss['end']} / {rss['idle_after']} |"
        ),
        (
            "| gateway open descriptors: at the start / most / idle again | "
            f"{fds['start']} / {fds['most']} / {fds['idle_after']} |"
        ),
    ]


def _write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    DOCS.write_text(report.replace_block(text, section, start=START, end=END))


def healthy(result: dict[str, Any]) -> bool:
    """The soak's verdict: no request hung, none answered 500, no transport error at a caller,
    and nothing left in flight at the gateway once the load ended."""
    return (
        result["hung"] == 0
        and result["status_500"] == 0
        and not result["transport_errors"]
        and not any(result["left_in_flight"].values())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop callers")
    parser.add_argument("--fault-share", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-docs", action="store_true", help="do not update benchmarks.md")
    add_session_store_option(parser)
    args = parser.parse_args(argv)
    stop_children_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        logs = Path(tmp)
        # The soak mixes every /v1 route: its callers hold every scope.
        auth = bench_auth.make(
            logs, scopes=ALL_SCOPES, valid_seconds=int(args.duration) + bench_auth.RUN_VALID_SECONDS
        )
        with contextlib.ExitStack() as stack:
            eu = stack.enter_context(_fake(logs, "eu", logs))
            domestic = stack.enter_context(_fake(logs, "domestic", logs))
            env = _gateway_env(eu.url, domestic.url, auth) | stack.enter_context(
                session_store_env(logs, args.session_store)
            )
            gateway_port = free_port()
            gateway = start(
                "gateway",
                [sys.executable, "-m", "signing_gateway", "serve", "--host", LOOPBACK,
                 "--port", str(gateway_port)],
                port=gateway_port, ready_path="/readyz", logs=logs, env=env,
            )  # fmt: skip
            try:
                fakes = {"eu": eu.url, "domestic": domestic.url}
                result = asyncio.run(_drive(gateway.url, fakes, args, auth, gateway.ps))
            finally:
                gateway.stop()
            result["gateway_exit_code"] = gateway.popen.returncode
            result["session_store"] = args.session_store
    print(json.dumps(result, indent=2))
    if not args.no_docs:
        _write_docs(_markdown(result))
    return 0 if healthy(result) else 1


if __name__ == "__main__":
    raise SystemExit(main())
