"""The bench's verdicts and the table that states them (docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from bench import report, scenarios
from bench.procs import signer_bound_for, steal_shares
from bench.scenarios import (
    LagMark,
    SteadyMark,
    held_longer,
    histogram_buckets,
    lag_between,
    steady_between,
)
from bench.wrk import WrkResult


def _results(*, lag_ms: float, p99_ms: float, max_ms: float, kb: float) -> dict[str, Any]:
    """A run's figures, shaped like bench/results/<time>.json, with the parts a verdict reads."""
    return {
        "S1": {
            "limit_rps": 1000.0,
            "rps": 280.0,
            "errors": 0,
            "healthz": {"failures": 0, "p99_ms": p99_ms, "max_ms": max_ms, "polls": 1900},
            "loop_lag_max_ms": lag_ms,
        },
        "S2": {"ok": 19, "rps": 0.9, "healthz": {"polls": 5, "failures": 5}},
        "S3": {
            "gateway": {"rps": 300.0},
            "passthrough-proxy": {"rps": 1500.0},
            "gateway-httpx-transport": {"rps": 150.0},
        },
        "S4": {"kb_per_in_flight": kb, "errors": 0, "peak_in_flight": 10_000},
    }


def test_verdicts_judge_each_target_on_its_own_figure() -> None:
    """Throughput against the S3 ceiling, bounds inclusive, ratios rounded as reported."""
    verdicts = report.verdicts(_results(lag_ms=100.0, p99_ms=50.1, max_ms=250.0, kb=48.8))
    s1 = verdicts["S1"]
    assert s1["limit_rps"] == 300.0  # the S3 ceiling, lower than 1,000 clients / 1 s
    assert s1["throughput_share_of_limit"] == 0.933
    assert s1["throughput_ge_90pct"]
    assert s1["loop_lag_le_100ms"]
    assert not s1["healthz_p99_le_50ms"]
    assert s1["healthz_max_le_250ms"]
    assert verdicts["S2"]["shows_contrast"]
    assert verdicts["S3"] == {
        "share_of_proxy": 0.2,
        "ge_60pct_of_proxy": False,
        "x_httpx_transport": 2.0,
        "ge_5x_httpx_transport": False,
    }
    assert verdicts["S4"]["le_50kb"]


def test_s1_is_judged_against_the_ceiling_measured_on_its_own_cpu_placement() -> None:
    """With the pinned ceiling measured after S1, it is the limit, not the unpinned S3 row."""
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=40.0)
    results["S1"]["limit_ceiling"] = {"rps": 320.0}
    s1 = report.verdicts(results)["S1"]
    assert s1["limit_rps"] == 320.0
    assert s1["throughput_share_of_limit"] == 0.875
    assert not s1["throughput_ge_90pct"]  # 0.933 of the unpinned row's 300 req/s
    del results["S1"]["limit_ceiling"]
    assert report.verdicts(results)["S1"]["limit_rps"] == 300.0


def test_s1_limit_is_the_mean_of_the_ceilings_measured_before_and_after_it() -> None:
    """Measured around S1, the limit is their mean; the report shows both measurements."""
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=40.0)
    results["S1"] |= {
        "limit_ceiling_before": {"rps": 340.0, "cpu_us_per_request": 2900.0, "errors": 0},
        "limit_ceiling": {
            "rps": 300.0, "cpu_us_per_request": 3300.0, "errors": 0,
            "cpu_steal": {"cpu0": 0.12, "cpu1": 0.01},
        },
    }  # fmt: skip
    s1 = report.verdicts(results)["S1"]
    assert s1["limit_rps"] == 320.0
    assert not s1["throughput_ge_90pct"]  # 280 / 320 = 0.875; against 300 alone it passed
    rows = [row for row in report._s1_s2_table(results) if "S1's limit" in row]
    assert ["just before S1" in rows[0], "just after" in rows[1]] == [True, True]
    assert "340 req/s" in rows[0]
    assert "300 req/s" in rows[1]
    assert "steal -" in rows[0]  # not recorded
    assert "steal 12 % / 1 %" in rows[1]


def test_s4_is_judged_on_the_larger_of_its_two_memory_figures() -> None:
    """A machine too slow to get the 10,000 to the signer does not pass on the mix alone."""
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=37.6)
    assert report.verdicts(results)["S4"]["le_50kb"]  # no all-at-the-signer run: 10k alone
    results["S4"][report.ALL_AT_SIGNER] = {"kb_per_in_flight": 63.2, "in_flight_target": 1500}
    s4 = report.verdicts(results)["S4"]
    assert s4["kb_all_at_signer"] == 63.2
    assert not s4["le_50kb"]
    rows = report._verdict_rows(report.verdicts(results), results["S1"])
    (row,) = [x for x in rows if x.startswith("| S4 ≤ 50 KB")]
    assert "37.6 KB" in row
    assert "every request at the signer: 63.2 KB" in row
    assert row.endswith("| **NO** |")


def test_the_verdict_table_shows_the_figure_behind_every_s1_target() -> None:
    """A reader sees the measured /healthz p99, max and loop lag next to yes or NO."""
    results = _results(lag_ms=164.3, p99_ms=34.21, max_ms=170.05, kb=56.3)
    rows = report._verdict_rows(report.verdicts(results), results["S1"])
    by_target = {row.split(" | ")[0].lstrip("| "): row for row in rows}
    assert by_target["S1 /healthz p99 ≤ 50 ms"].endswith("| 34.21 ms | **yes** |")
    assert by_target["S1 /healthz max ≤ 250 ms"].endswith("| 170.05 ms | **yes** |")
    assert by_target["S1 max loop lag ≤ 100 ms"].endswith("| 164.3 ms (since start) | **NO** |")
    assert by_target["S4 ≤ 50 KB per in-flight request"].endswith(
        "| 56.3 KB (KB of 1,024 bytes; the larger is 57.7 kB of 1,000) | **NO** |"
    )


def _mark(max_ms: float, **counts: float) -> LagMark:
    """A lag mark; `counts` by bucket bound, written b0_05 for le="0.05", inf for le="+Inf"."""
    bounds = {"b0_05": "0.05", "b0_1": "0.1", "b0_25": "0.25", "inf": "+Inf"}
    return LagMark({bounds[k]: v for k, v in counts.items()}, max_ms / 1000)


def test_lag_in_the_window_counts_only_its_own_samples() -> None:
    """A warm-up peak of 140 ms before the window; in it 400 samples, none over 100 ms."""
    before = _mark(140.0, b0_05=90, b0_1=95, b0_25=100, inf=100)
    after = _mark(140.0, b0_05=480, b0_1=495, b0_25=500, inf=500)
    window = lag_between(before, after)
    assert window == {"samples": 400, "over_100ms": 0, "max_ms": None, "max_bound_ms": 100.0}
    s1 = {**_results(lag_ms=140.0, p99_ms=20, max_ms=90, kb=40)["S1"], "loop_lag_window": window}
    assert report.verdicts({"S1": s1})["S1"]["loop_lag_le_100ms"]
    assert report.lag_window_text(s1) == "≤ 100 ms"


def test_a_new_maximum_in_the_window_is_reported_exactly_and_judged() -> None:
    """Two samples over 100 ms in the window, the larger a new maximum since start: NO."""
    before = _mark(80.0, b0_05=90, b0_1=100, b0_25=100, inf=100)
    after = _mark(180.0, b0_05=400, b0_1=498, b0_25=500, inf=500)
    window = lag_between(before, after)
    assert window == {"samples": 400, "over_100ms": 2, "max_ms": 180.0, "max_bound_ms": 250.0}
    s1 = {**_results(lag_ms=180.0, p99_ms=20, max_ms=90, kb=40)["S1"], "loop_lag_window": window}
    assert not report.verdicts({"S1": s1})["S1"]["loop_lag_le_100ms"]
    assert report.lag_window_text(s1) == "180 ms"


def test_a_window_without_lag_samples_is_not_judged_as_met() -> None:
    """Both scrapes answered but the monitor recorded nothing between them: nothing measured.

    The window used to read "≤ 1 ms" (the smallest bucket holds all of no samples) and pass.
    """
    mark = _mark(40.0, b0_05=90, b0_1=100, b0_25=100, inf=100)
    window = lag_between(mark, mark)
    assert window["samples"] == 0
    s1 = {**_results(lag_ms=40.0, p99_ms=20, max_ms=90, kb=40)["S1"], "loop_lag_window": window}
    assert report.verdicts({"S1": s1})["S1"]["loop_lag_le_100ms"] is False, "passed unmeasured"
    assert report.lag_window_text(s1) == "no samples"


def test_s4_sizes_the_signer_bound_to_the_fd_limit() -> None:
    """Callers plus signer connections fit the limit; where it is ample the wanted bound holds."""
    assert signer_bound_for(10_000, nofile=65_536, wanted=10_240) == 10_240
    bound = signer_bound_for(10_000, nofile=20_000, wanted=10_240)
    assert 10_000 + bound < 20_000
    assert bound > 9_000
    assert signer_bound_for(10_000, nofile=5_000, wanted=10_240) == 1


def test_steal_is_the_share_of_each_cpus_time_the_host_ran_another_guest() -> None:
    """/proc/stat's eighth counter (steal) over the sum of the eight, per CPU."""
    before = {"cpu0": [100, 0, 50, 800, 0, 0, 0, 50], "cpu1": [0] * 8}
    after = {"cpu0": [600, 0, 150, 900, 0, 0, 0, 350], "cpu1": [0] * 8, "cpu2": [1] * 8}
    assert steal_shares(before, after) == {"cpu0": 0.3, "cpu1": 0.0}


def test_s1_verdict_row_says_when_the_host_took_cpu_0() -> None:
    """Steal of 5 % or more in S1 or either limit run is named beside the ratio."""
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=40.0)
    results["S1"] |= {
        "cpu_steal": {"cpu0": 0.165, "cpu1": 0.0},
        "limit_ceiling_before": {"rps": 300.0, "cpu_steal": {"cpu0": 0.038, "cpu1": 0.0}},
        "limit_ceiling": {"rps": 300.0},
    }

    def s1_row() -> str:
        rows = report._verdict_rows(report.verdicts(results), results["S1"])
        (row,) = [x for x in rows if x.startswith("| S1 throughput")]
        return row

    assert "took CPU 0 from the gateway: 16 % of S1's time, 4 % / - of its limit runs" in s1_row()
    results["S1"]["cpu_steal"] = {"cpu0": 0.049, "cpu1": 0.0}
    assert "took CPU 0" not in s1_row()
    results["S1"]["cpu_steal"] = {"cpu0": 0.05, "cpu1": 0.0}
    assert "took CPU 0 from the gateway: 5 % of S1's time" in s1_row()


def test_s1_is_judged_on_its_steady_state_against_its_limit_runs_steady_states() -> None:
    """Both sides measured the same way; wrk's whole-run share is shown beside it."""
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=40.0)
    steady = {"cpu_us_per_request": 2500.0, "seconds": 12.5, "from_s": 2.0}
    results["S1"] |= {
        "steady": {"rps": 300.0, "cpu_us_per_request": 2500.0, "seconds": 15.5, "from_s": 4.0},
        "limit_ceiling_before": {
            "rps": 310.0, "cpu_us_per_request": 2600.0, "errors": 0,
            "steady": steady | {"rps": 330.0},
        },
        "limit_ceiling": {
            "rps": 300.0, "cpu_us_per_request": 2700.0, "errors": 0,
            "steady": steady | {"rps": 310.0},
        },
    }  # fmt: skip
    s1 = report.verdicts(results)["S1"]
    assert s1["limit_rps"] == 320.0
    assert s1["throughput_share_of_limit"] == 0.937  # 300 / 320
    assert s1["whole_run_share_of_limit"] == 0.875  # wrk's 280 / 320 would have missed
    assert s1["throughput_ge_90pct"]
    rows = report._verdict_rows(report.verdicts(results), results["S1"])
    (row,) = [x for x in rows if x.startswith("| S1 throughput")]
    assert "| 0.937 (whole run: 0.875) |" in row
    steady_row = [x for x in report._s1_s2_table(results) if "steady state" in x]
    assert steady_row == [
        (
            "| throughput in the steady state (the gateway's count) | 300 req/s at 2500 µs per "
            "request (s 4-19.5) | - |"
        )
    ]
    (before,) = [x for x in report._s1_s2_table(results) if "just before S1" in x]
    assert (
        "| 330 req/s at 2500 µs per request (s 2-14.5); whole run 310 req/s at 2600 µs;" in before
    )


def test_steady_state_is_the_rate_and_cpu_between_two_marks() -> None:
    """Answers and CPU time counted by the gateway between the marks, over the time between."""
    before = SteadyMark(at=104.0, answered=1_200.0, cpu_seconds=50.0)
    after = SteadyMark(at=119.5, answered=7_400.0, cpu_seconds=65.5)
    assert steady_between(before, after) == {
        "seconds": 15.5,
        "answered": 6_200,
        "rps": 400.0,
        "cpu_us_per_request": 2500.0,
    }


def test_the_repeatability_table_keeps_the_runs_already_in_the_report(tmp_path: Path) -> None:
    """bench/results/ is not in the repository: rows in the report carry earlier runs on."""
    doc = "\n".join(
        [
            "## Repeatability (last runs)",
            "",
            "| run (UTC) | load | ... |",
            "|---|---|---|",
            *(f"| 2026-12-01T0{h}:00:00+00:00 | old row {h} |" for h in range(8)),
            "",
            "## Profile of the S3 path",
            "| 2026-12-09T00:00:00+00:00 | not a run: another section |",
        ]
    )
    earlier = report._earlier_history(doc)
    assert len(earlier) == 8
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=40.0)
    results |= {"started": "2026-12-02T16:00:00+00:00", "machine": {"load_before": [0.5]}}
    results["verdicts"] = report.verdicts(results)
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(results))
    rows = report._history([run_file], earlier)[2:]
    assert len(rows) == report.HISTORY_RUNS
    assert rows[0].startswith("| 2026-12-01T01:00:00+00:00 | old row 1 |")  # the oldest dropped
    assert rows[-1].startswith("| 2026-12-02T16:00:00+00:00 | 0.5→? | 280 (0.933) |")


def test_a_repeatability_row_shows_the_steady_rate_and_counts_only_the_verdicts() -> None:
    """S1's steady req/s, the one judged; "met" counts targets, not the figures beside them."""
    results = _results(lag_ms=50.0, p99_ms=10.0, max_ms=50.0, kb=40.0)
    results["S1"]["steady"] = {"rps": 285.0}
    results |= {"started": "2026-12-02T16:00:00+00:00", "machine": {"load_before": [0.5]}}
    results["verdicts"] = report.verdicts(results)
    cells = [cell.strip() for cell in report._history_row(results).split("|")]
    assert cells[3] == "285 steady (0.95)"
    assert cells[8] == "9/11: ge_5x_httpx_transport, ge_60pct_of_proxy missed"


def test_the_repeatability_table_says_which_rows_ran_without_tokens() -> None:
    """Rows from before the bench checked tokens are named until they leave the table."""
    header = ["| run (UTC) | load |", "|---|---|"]
    before, since = "2026-12-04T20:30:22+00:00", report.TOKENS_SINCE
    later = "2026-12-05T01:00:00+00:00"
    mixed = [*header, f"| {before} | a |", f"| {since} | b |", f"| {later} | c |"]
    caveat = " ".join(report._history_caveat(mixed))
    assert f"Rows before {since} (1 of 3) ran every gateway with" in caveat
    assert "`auth.mode=disabled`" in caveat
    assert report._history_caveat([*header, f"| {since} | b |", f"| {later} | c |"]) == []


def test_a_hand_written_section_outside_the_kept_blocks_is_reported_before_it_is_lost() -> None:
    """Regenerating the doc names every heading it would drop; kept blocks lose none."""
    profile = "<!-- profile:start -->\n### Round one\ntext\n<!-- profile:end -->"
    old = f"# Benchmarks\n## Profile\n{profile}\n\n### Round two\nmore\n## How\n"
    regenerated = f"# Benchmarks\n## Profile\n{profile}\n\n## How\n"
    assert report.lost_headings(old, regenerated) == ["### Round two"]
    assert report.lost_headings(regenerated, regenerated) == []


def _duration_lines(route: str, status: str, counts: dict[str, int]) -> list[str]:
    """A `gateway_request_duration_seconds` series as /metrics renders it."""
    name = "gateway_request_duration_seconds_bucket"
    return [
        f'{name}{{le="{le}",route="{route}",status_class="{status}"}} {n}.0'
        for le, n in counts.items()
    ]


def test_requests_held_over_the_timeout_are_counted_across_outcomes_for_dcc_only() -> None:
    """Answered late or left when wrk went away, each /v1/dcc request over 10 s counts once."""
    before = _duration_lines("/v1/dcc", "2xx", {"5.0": 40, "10.0": 40, "20.0": 40, "+Inf": 40})
    after = [
        *_duration_lines("/v1/dcc", "2xx", {"5.0": 900, "10.0": 902, "20.0": 904, "+Inf": 904}),
        *_duration_lines("/v1/dcc", "disconnected", {"5.0": 7, "10.0": 7, "20.0": 9, "+Inf": 10}),
        *_duration_lines("/v1/print", "2xx", {"5.0": 0, "10.0": 0, "20.0": 5, "+Inf": 5}),
        *_duration_lines("/v1/dcc/{id}", "2xx", {"5.0": 0, "10.0": 0, "20.0": 6, "+Inf": 6}),
        'gateway_event_loop_lag_seconds_bucket{le="10.0"} 3.0',
    ]
    name = "gateway_request_duration_seconds"
    counts = [histogram_buckets(lines, name, route="/v1/dcc") for lines in (before, after)]
    assert counts[1]["+Inf"] == 914
    assert held_longer(counts[0], counts[1], 10.0) == 2 + 3
    assert held_longer(counts[0], counts[1], 12.0) == 2 + 3  # judged from the 10 s bound
    assert held_longer(counts[0], counts[1], 5.0) == 4 + 3
    assert held_longer(counts[1], counts[1], 10.0) == 0  # only those that ended in between
    # A histogram without labels (the loop lag's): every series of it.
    assert histogram_buckets(after, "gateway_event_loop_lag_seconds") == {"10.0": 3.0}


def test_the_gateway_is_waited_for_until_it_holds_no_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its gauge, which counts the scrape asking, falls to 1: nothing is left over."""
    gauge = iter([40, 3, 1])
    monkeypatch.setattr(scenarios, "in_progress", lambda _gateway: next(gauge))
    monkeypatch.setattr(scenarios.time, "sleep", lambda _s: None)
    assert scenarios.drained(cast("Any", None), within=30.0) == 0
    stuck = iter([6] * 1000)
    monkeypatch.setattr(scenarios, "in_progress", lambda _gateway: next(stuck))
    assert scenarios.drained(cast("Any", None), within=0.0) == 5


class _Gateway:
    """What `scenarios.slow_signers` reads of the gateway itself: its address and CPU time."""

    url, probe_url, name = "http://127.0.0.1:1", None, "gateway"

    def cpu_seconds(self) -> float:
        return 10.0


def test_s1_figures_count_what_the_gateway_held_past_the_timeout_and_its_lag_in_ms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the load: 3 requests ended over 10 s, 2 are still held; the lag peaked at 123.4 ms.

    The limit is the clients over the signer's latency: 500 over 0.5 s is 1,000 req/s.
    """
    loaded = threading.Event()  # the measured load (not the warm-up) has run

    def run_wrk(*_: Any, connections: int, **__: Any) -> WrkResult:
        if connections == 500:
            loaded.set()
        errors = dict.fromkeys(
            ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"), 0
        )
        return WrkResult(9_000, 10.0, **errors, p50_ms=500.0, p90_ms=600.0, p99_ms=700.0,
                         max_ms=900.0, command="wrk")  # fmt: skip

    def metrics(_gateway: Any) -> list[str]:
        counts = {"10.0": 900, "+Inf": 903} if loaded.is_set() else {"10.0": 5, "+Inf": 5}
        return _duration_lines("/v1/dcc", "2xx", counts)

    def poller(base: str, seconds: float, out: Path) -> Any:
        out.write_text(json.dumps({"latencies": [0.002] * 100, "failures": 0}))
        return subprocess.Popen([sys.executable, "-c", ""])

    readyz = {"eventLoop": {"maxLagSeconds": 0.1234, "samples": 200, "samplesOverThreshold": 1}}
    monkeypatch.setattr(scenarios, "run_wrk", run_wrk)
    monkeypatch.setattr(scenarios, "start_poller", poller)
    monkeypatch.setattr(scenarios, "_metrics_lines", metrics)
    monkeypatch.setattr(scenarios, "_readyz_detail", lambda _gw, key: readyz.get(key, {}))
    monkeypatch.setattr(scenarios, "in_progress", lambda _gateway: 3)  # 2 and the scrape
    monkeypatch.setattr(scenarios, "DRAIN_WITHIN_S", 0.0)
    figures = scenarios.slow_signers(
        cast("Any", _Gateway()), cast("Any", None), tmp_path, clients=500, seconds=1.0,
        signer_latency_s=0.5, has_lag=True,
    )  # fmt: skip
    assert figures["held_over_timeout"] == 3 + 2
    assert figures["loop_lag_max_ms"] == 123.4
    assert figures["limit_rps"] == 1000.0
    assert figures["throughput_share"] == 0.9
