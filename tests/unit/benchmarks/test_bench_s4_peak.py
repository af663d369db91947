"""S4's RSS at the peak: which sample stands for "N requests in flight"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from bench import report, scenarios
from bench.auth import BenchAuth
from bench.scenarios import MemorySample, peak_sample
from bench.wrk import Load

MB = 2**20

#: 1,500 requests filling a gateway at a 10 s signer, then answers flowing while wrk sends
#: the next ones: the count is back at 1,500 once, with what answering holds on top.
SAMPLES = [
    MemorySample(inside=600, rss=120 * MB, answered=0),
    MemorySample(inside=1500, rss=155 * MB, answered=0),
    MemorySample(inside=1500, rss=155 * MB + 4096, answered=0),
    MemorySample(inside=1490, rss=158 * MB, answered=40),
    MemorySample(inside=1500, rss=159 * MB, answered=300),
]
#: The fake signer's in-flight count and answers so far (the warm-up's 20 among them), per sample.
SAMPLED = [(1000, 20), (1500, 20), (1500, 60)]


def test_all_at_the_signer_is_read_before_the_signer_answers() -> None:
    """The latest sample at the peak while none was answered, not one once answers flow."""
    assert peak_sample(SAMPLES, 80 * MB, before_first_answer=True) == (1500, 155 * MB + 4096)


def test_a_run_with_answers_in_it_takes_the_latest_sample_at_its_peak() -> None:
    """The 10,000 run, where answers flow before the peak: any sample may hold it."""
    assert peak_sample(SAMPLES, 80 * MB, before_first_answer=False) == (1500, 159 * MB)


def test_no_sample_before_the_first_answer_is_the_idle_rss_at_no_requests() -> None:
    """Nothing measured in time reads as 0 in flight, which the report shows, not a figure."""
    answered_at_once = [MemorySample(inside=1500, rss=159 * MB, answered=1)]
    assert peak_sample(answered_at_once, 80 * MB, before_first_answer=True) == (0, 80 * MB)


def test_a_run_with_nothing_in_flight_has_no_figure_and_misses_the_target() -> None:
    """No KB figure is 0 KB: the S4 memory verdict is missed, and the report still renders."""
    results = {
        "S4": {
            "kb_per_in_flight": 48.0,
            "errors": 0,
            "peak_in_flight": 10_000,
            report.ALL_AT_SIGNER: {"kb_per_in_flight": None, "bytes_per_in_flight": None},
        }
    }
    verdicts = report.verdicts(results)
    assert verdicts["S4"]["le_50kb"] is False
    [row] = [r for r in report._verdict_rows(verdicts, {}) if "50 KB" in r]
    assert row.endswith("every request at the signer: not measured | **NO** |"), row


class _Server:
    """What `scenarios.memory` reads of the server under test: its RSS, one reading per call."""

    url = "http://127.0.0.1:1"

    def __init__(self, rss: list[int]) -> None:
        self.rss = iter(rss)

    def rss_bytes(self) -> int:
        return next(self.rss)


class _Wrk:
    """wrk as `scenarios.memory` starts it: running for `polls` polls, then its summary line."""

    def __init__(self, polls: int, summary: dict[str, int]) -> None:
        self.polls = polls
        self.summary = summary

    def poll(self) -> int | None:
        self.polls -= 1
        return None if self.polls >= 0 else 0

    def communicate(self, **_: float) -> tuple[str, None]:
        return f"Running 30s test\nBENCH_JSON {json.dumps(self.summary)}\n", None


def test_kb_per_in_flight_request_is_the_rss_over_idle_at_the_peak_of_requests_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,500 inside (the gauge, less the scrape asking) held 45,000 bytes each above idle.

    The warm-up's 20 answers are not the run's: the peak is read before the run's first one.
    """
    idle = 80 * MB
    gauge = iter([1001, 1501, 1501])  # /metrics counts its own scrape
    stats = iter(
        [{"inFlight": 0, "totals": {"get_credential": {"ok": 20}}}]  # after the warm-up
        + [{"inFlight": n, "totals": {"get_credential": {"ok": a}}} for n, a in SAMPLED]
    )
    rss = [idle, idle + 1000 * 40_000, idle + 1500 * 45_000, idle + 1500 * 47_000]
    summary = dict.fromkeys(("connect_errors", "read_errors", "write_errors"), 0) | {
        "requests": 1500, "status_errors": 1, "timeouts": 2, "p50_us": 10_002_000,
        "p99_us": 10_090_000,
    }  # fmt: skip
    monkeypatch.setattr(scenarios, "run_wrk", lambda *_, **__: None)
    monkeypatch.setattr(scenarios, "_put_json", lambda *_: None)
    monkeypatch.setattr(scenarios, "_get_json", lambda _url: next(stats))
    monkeypatch.setattr(scenarios, "in_progress", lambda _server: next(gauge))
    monkeypatch.setattr(scenarios, "loop_lag_max", lambda _server: 0.0123)
    monkeypatch.setattr(scenarios, "gc_pauses", lambda _server: {})
    monkeypatch.setattr(scenarios, "wrk_command", lambda *_, **__: ["wrk", "-c", "1500"])
    monkeypatch.setattr(scenarios.subprocess, "Popen", lambda *_, **__: _Wrk(3, summary))
    monkeypatch.setattr(scenarios.time, "sleep", lambda _s: None)
    load = Load(tmp_path / "dcc.json", BenchAuth(tmp_path / "jwks.json", "t"))
    figures = scenarios.memory(
        cast("Any", _Server(rss)), cast("Any", _Server([])), load, in_flight=1500,
        signer_latency_s=10.0, seconds=20, before_first_answer=True,
    )  # fmt: skip
    assert (figures["peak_in_flight"], figures["peak_at_signer"]) == (1500, 1500)
    assert figures["bytes_per_in_flight"] == 45_000
    assert figures["kb_per_in_flight"] == 43.9  # 45,000 / 1,024
    assert figures["rss_idle_mb"] == 80.0
    assert figures["errors"] == 3, "a timeout is an error as a status error is"
    assert figures["loop_lag_max_ms"] == 12.3
