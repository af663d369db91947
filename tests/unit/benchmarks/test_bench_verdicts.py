"""Every bench target's verdict, true and false, at its bound and across S1's rounds.

Each verdict is pinned both ways: a run that meets every target passes each of them, and a run
that misses one target (and only that one) fails it while the others still pass.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import report, wrk
from bench.auth import BenchAuth
from bench.scenarios import _wrk_figures
from bench.wrk import WrkResult

#: The S1 verdicts, which every round must meet except throughput (the median round's).
S1_TARGETS = (
    "success_100pct",
    "throughput_ge_90pct",
    "healthz_p99_le_50ms",
    "healthz_max_le_250ms",
    "loop_lag_le_100ms",
)
S3_TARGETS = ("ge_60pct_of_proxy", "ge_5x_httpx_transport")
S4_TARGETS = ("le_50kb", "no_errors", "reached_10k_in_flight")


def _wrk(**counts: int) -> WrkResult:
    """The summary wrk gives of 19,000 requests in 20 s, with the given error counts (else none)."""
    errors = dict.fromkeys(
        ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"), 0
    )
    return WrkResult(
        requests=19_000,
        seconds=20.0,
        **(errors | counts),
        p50_ms=1000.0,
        p90_ms=1100.0,
        p99_ms=1300.0,
        max_ms=1500.0,
        command="wrk",
    )


def _s1(steady_rps: float = 950.0, *, wrk: WrkResult | None = None, **parts: Any) -> dict[str, Any]:
    """One S1 run's figures as `scenarios.slow_signers` returns them; `parts` replace some."""
    return (
        _wrk_figures(wrk or _wrk())
        | {
            "limit_rps": 1000.0,
            "steady": {"rps": steady_rps, "cpu_us_per_request": 900.0, "seconds": 15.5},
            "healthz": {"polls": 2000, "failures": 0, "p50_ms": 2.0, "p99_ms": 9.0, "max_ms": 40.0},
            "loop_lag_max_ms": 30.0,
            "loop_lag_window": {"samples": 380, "over_100ms": 0, "max_ms": 30.0},
        }
        | parts
    )


def _results(s1: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run that meets every target: S1 once, the S3 ceiling above 1,000 req/s."""
    return {
        "S1": s1 or _s1(),
        "S2": {"ok": 19, "rps": 0.9, "healthz": {"polls": 5, "failures": 5}},
        "S3": {
            "gateway": {"rps": 1500.0},
            "passthrough-proxy": {"rps": 2000.0},
            "gateway-httpx-transport": {"rps": 250.0},
        },
        "S4": {"kb_per_in_flight": 30.0, "errors": 0, "peak_in_flight": 10_000},
    }


def _in_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """S1 measured in rounds, as `run._s1` stores it: the judged round's figures plus all."""
    limit = {"rps": 1000.0, "steady": {"rps": 1000.0}}
    rounds = [r | {"limit_ceiling_before": limit, "limit_ceiling": limit} for r in rounds]
    judged = report.median_round(rounds)
    return rounds[judged] | {
        "rounds": [report.s1_round(r) for r in rounds],
        "judged_round": judged,
    }


def _missed(verdicts: dict[str, Any]) -> set[str]:
    """The names of the targets a run missed."""
    return {k for part in verdicts.values() for k, v in part.items() if v is False}


def test_a_run_meeting_every_target_passes_every_verdict() -> None:
    """Each verdict is a boolean and each is met; none is left out or missing."""
    verdicts = report.verdicts(_results())
    for scenario, targets in (("S1", S1_TARGETS), ("S3", S3_TARGETS), ("S4", S4_TARGETS)):
        assert {t: verdicts[scenario][t] for t in targets} == dict.fromkeys(targets, True)
    assert verdicts["S2"]["shows_contrast"] is True
    assert _missed(verdicts) == set()


@pytest.mark.parametrize(
    "counts",
    [
        {"connect_errors": 1},
        {"read_errors": 2},
        {"write_errors": 1},
        {"status_errors": 3},
        {"timeouts": 1},
    ],
)
def test_wrk_counts_every_kind_of_failure_as_an_error(counts: dict[str, int]) -> None:
    """A 5xx answer (a status error) is an error like a broken connection or a timeout."""
    result = _wrk(**counts)
    assert result.errors == sum(counts.values())
    assert result.ok == 19_000 - counts.get("status_errors", 0)


def test_wrks_summary_line_is_read_in_its_units_and_only_answers_below_400_make_throughput(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/dcc.lua prints microseconds; the figures are seconds and milliseconds.

    wrk's own req/s counts every response; the throughput counts those below 400 only.
    """
    summary = {
        "requests": 19_000, "duration_us": 20_004_000, "bytes": 1, "connect_errors": 1,
        "read_errors": 2, "write_errors": 3, "status_errors": 1_000, "timeouts": 4,
        "p50_us": 1_001_500, "p90_us": 1_090_000, "p99_us": 1_350_250, "max_us": 2_000_001,
        "mean_us": 1.0,
    }  # fmt: skip
    stdout = f"Running 20s test\nBENCH_JSON {json.dumps(summary)}\n"
    monkeypatch.setattr(wrk, "ensure_wrk", lambda: "/usr/bin/wrk")
    monkeypatch.setattr(
        wrk.subprocess, "run", lambda *_, **__: subprocess.CompletedProcess([], 0, stdout, "")
    )
    load = wrk.Load(tmp_path / "dcc.json", BenchAuth(tmp_path / "jwks.json", "t"))
    result = wrk.run_wrk("http://127.0.0.1:1/v1/dcc", load, connections=1000, seconds=20)
    assert result.seconds == 20.004
    assert (result.p50_ms, result.p90_ms, result.p99_ms, result.max_ms) == (
        1001.5, 1090.0, 1350.25, 2000.001,
    )  # fmt: skip
    assert (result.status_errors, result.timeouts, result.errors) == (1_000, 4, 1_010)
    assert result.ok == 18_000
    assert round(result.rps, 1) == 899.8  # 18,000 in 20.004 s, not 19,000
    figures = _wrk_figures(result)
    assert (figures["ok"], figures["errors"], figures["rps"]) == (18_000, 1_010, 899.8)


def test_wrks_script_prints_each_figure_under_its_own_name() -> None:
    """bench/dcc.lua's summary line: the 99th percentile as p99_us, a 5xx as a status error."""
    script = (Path(report.__file__).parent / "dcc.lua").read_text()
    names = re.findall(r'"(\w+)":%', script)
    values = re.search(r"\}\\n',(.*?)\)\)\s*end", script, re.DOTALL)
    assert values is not None, "the summary line's values"
    printed = dict(zip(names, (v.strip() for v in values.group(1).split(",")), strict=True))
    assert printed == {
        "requests": "summary.requests", "duration_us": "summary.duration",
        "bytes": "summary.bytes", "connect_errors": "e.connect", "read_errors": "e.read",
        "write_errors": "e.write", "status_errors": "e.status", "timeouts": "e.timeout",
        "p50_us": "latency:percentile(50)", "p90_us": "latency:percentile(90)",
        "p99_us": "latency:percentile(99)", "max_us": "latency.max", "mean_us": "latency.mean",
    }  # fmt: skip


def test_one_error_of_any_kind_fails_s1_success_and_only_it() -> None:
    """A single 5xx in S1 (wrk's status error) fails "100 % success"; nothing else moves."""
    assert report.verdicts(_results(_s1(wrk=_wrk())))["S1"]["success_100pct"] is True
    for kind in ("status_errors", "connect_errors", "timeouts"):
        verdicts = report.verdicts(_results(_s1(wrk=_wrk(**{kind: 1}))))
        assert verdicts["S1"]["success_100pct"] is False
        assert verdicts["S1"]["worst_of_rounds"]["errors"] == 1
        assert _missed(verdicts) == {"success_100pct"}


@pytest.mark.parametrize("erring", [1, 2])
def test_status_errors_in_a_round_that_is_not_judged_fail_s1_success(erring: int) -> None:
    """Round 1 is judged and clean; a 5xx in round `erring` + 1 alone still fails success."""
    rounds = [_s1(950.0), _s1(900.0), _s1(990.0)]
    rounds[erring] = _s1(rounds[erring]["steady"]["rps"], wrk=_wrk(status_errors=2))
    s1 = _in_rounds(rounds)
    assert s1["judged_round"] == 0
    assert s1["errors"] == 0  # the judged round's own figures are clean
    verdicts = report.verdicts({"S1": s1})
    assert verdicts["S1"]["success_100pct"] is False
    assert verdicts["S1"]["worst_of_rounds"]["errors"] == 2
    assert report.verdicts({"S1": _in_rounds([_s1(950.0)] * 3)})["S1"]["success_100pct"]


def test_s1_errors_are_added_up_over_its_rounds_and_the_row_says_so() -> None:
    """2 status errors in round 2, 3 timeouts in round 3: 5 errors in all, not the worst round's 3.

    Results from before the gateway's held count was read show no count of it.
    """
    rounds = [_s1(950.0), _s1(900.0, wrk=_wrk(status_errors=2)), _s1(990.0, wrk=_wrk(timeouts=3))]
    s1 = _in_rounds(rounds)
    verdicts = report.verdicts({"S1": s1})
    assert verdicts["S1"]["worst_of_rounds"]["errors"] == 5
    assert verdicts["S1"]["worst_of_rounds"]["held_over_timeout"] is None
    row = next(x for x in report._verdict_rows(verdicts, s1) if "S1 100 % success" in x)
    assert row == "| S1 100 % success | errors = 5 (3 rounds together) | **NO** |"


@pytest.mark.parametrize(("steady_rps", "met"), [(900.0, True), (899.0, False), (950.0, True)])
def test_s1_throughput_is_met_from_exactly_90_percent_of_its_limit(
    steady_rps: float, met: bool
) -> None:
    """900 of 1,000 req/s is exactly 0.9: met; 899 is not."""
    verdicts = report.verdicts(_results(_s1(steady_rps)))
    assert verdicts["S1"]["throughput_share_of_limit"] == steady_rps / 1000
    assert verdicts["S1"]["throughput_ge_90pct"] is met
    assert _missed(verdicts) == (set() if met else {"throughput_ge_90pct"})


def test_s1_limit_is_1000_req_s_when_the_ceiling_is_above_it() -> None:
    """A gateway whose CPU allows 1,500 req/s is still judged against its clients' 1,000."""
    results = _results(_s1(950.0))
    assert report.s1_ceiling(results) == 1500.0
    s1 = report.verdicts(results)["S1"]
    assert s1["limit_rps"] == 1000.0
    assert s1["throughput_share_of_limit"] == 0.95
    assert s1["throughput_ge_90pct"] is True
    pinned = {"rps": 1190.0, "steady": {"rps": 1200.0}}
    results["S1"] |= {"limit_ceiling_before": pinned, "limit_ceiling": pinned}
    assert report.verdicts(results)["S1"]["limit_rps"] == 1000.0
    assert report.s1_round(results["S1"])["share"] == 0.95


def test_s1_limit_is_the_ceiling_when_the_ceiling_is_below_1000_req_s() -> None:
    """The other side of the minimum: a ceiling of 800 req/s is the limit, 700 is 0.875 of it."""
    results = _results(_s1(700.0))
    results["S3"]["gateway"]["rps"] = 800.0
    s1 = report.verdicts(results)["S1"]
    assert s1["limit_rps"] == 800.0
    assert s1["throughput_ge_90pct"] is False


@pytest.mark.parametrize(
    ("p99_ms", "max_ms", "missed"),
    [
        (50.0, 250.0, set()),
        (50.01, 250.0, {"healthz_p99_le_50ms"}),
        (50.0, 250.01, {"healthz_max_le_250ms"}),
    ],
)
def test_healthz_p99_and_max_are_met_up_to_and_including_their_bounds(
    p99_ms: float, max_ms: float, missed: set[str]
) -> None:
    """p99 of exactly 50 ms and max of exactly 250 ms pass; a hundredth more fails."""
    healthz = {"polls": 2000, "failures": 0, "p50_ms": 2.0, "p99_ms": p99_ms, "max_ms": max_ms}
    assert _missed(report.verdicts(_results(_s1(healthz=healthz)))) == missed


@pytest.mark.parametrize("failing_round", [None, 0, 1, 2])
def test_a_failed_healthz_poll_fails_p99_and_max_whatever_the_latencies(
    failing_round: int | None,
) -> None:
    """One poll that failed (its time taken as the timeout, or a non-200) fails both targets."""
    failed = {"polls": 2000, "failures": 1, "p50_ms": 2.0, "p99_ms": 9.0, "max_ms": 40.0}
    if failing_round is None:
        s1 = _s1(healthz=failed)
    else:
        rounds = [_s1(950.0), _s1(900.0), _s1(990.0)]
        rounds[failing_round] = _s1(rounds[failing_round]["steady"]["rps"], healthz=failed)
        s1 = _in_rounds(rounds)
    assert _missed(report.verdicts(_results(s1))) == {
        "healthz_p99_le_50ms",
        "healthz_max_le_250ms",
    }


@pytest.mark.parametrize("slow_round", [1, 2])
def test_healthz_is_judged_on_the_worst_round(slow_round: int) -> None:
    """A p99 or max over its bound in any round fails the target; the table shows the worst."""
    rounds = [_s1(950.0), _s1(900.0), _s1(990.0)]
    slow = {"polls": 2000, "failures": 0, "p50_ms": 2.0, "p99_ms": 51.0, "max_ms": 260.0}
    rounds[slow_round] = _s1(rounds[slow_round]["steady"]["rps"], healthz=slow)
    verdicts = report.verdicts({"S1": _in_rounds(rounds)})
    assert verdicts["S1"]["healthz_p99_le_50ms"] is False
    assert verdicts["S1"]["healthz_max_le_250ms"] is False
    assert verdicts["S1"]["worst_of_rounds"]["healthz_p99_ms"] == 51.0


@pytest.mark.parametrize("lagging_round", [1, 2])
def test_loop_lag_over_100ms_in_any_round_fails_the_lag_target(lagging_round: int) -> None:
    """Round 1 calm, a later round with one sample over 100 ms: the target is missed."""
    lagging = {"samples": 380, "over_100ms": 1, "max_ms": 120.0}
    rounds = [_s1(950.0), _s1(900.0), _s1(990.0)]
    rounds[lagging_round] = _s1(rounds[lagging_round]["steady"]["rps"], loop_lag_window=lagging)
    verdicts = report.verdicts({"S1": _in_rounds(rounds)})
    assert verdicts["S1"]["loop_lag_le_100ms"] is False
    assert verdicts["S1"]["worst_of_rounds"]["lag_text"] == "120 ms"
    calm = report.verdicts({"S1": _in_rounds([_s1(950.0)] * 3)})
    assert calm["S1"]["loop_lag_le_100ms"] is True


@pytest.mark.parametrize(("lag_ms", "met"), [(100.0, True), (100.1, False)])
def test_loop_lag_without_a_window_is_met_up_to_and_including_100ms(
    lag_ms: float, met: bool
) -> None:
    """Older results (no window) are judged on the maximum since start, bound included."""
    s1 = _s1(loop_lag_max_ms=lag_ms)
    del s1["loop_lag_window"]
    assert report.verdicts(_results(s1))["S1"]["loop_lag_le_100ms"] is met


@pytest.mark.parametrize(("s2_rps", "shown"), [(0.9, True), (94.0, True), (95.0, False)])
def test_s2_shows_the_contrast_below_a_tenth_of_s1s_throughput(s2_rps: float, shown: bool) -> None:
    """S1 at 950 req/s: S2 at 94 shows the contrast, S2 at 95 (a tenth) or more does not."""
    results = _results(_s1(wrk=_wrk()))
    assert results["S1"]["rps"] == 950.0
    results["S2"]["rps"] = s2_rps
    assert report.verdicts(results)["S2"]["shows_contrast"] is shown


@pytest.mark.parametrize(
    ("gateway_rps", "proxy_met", "httpx_met"),
    [
        (1500.0, True, True),  # 0.75 of the proxy, 6x httpx
        (1250.0, True, True),  # exactly 5x httpx
        (1200.0, True, False),  # 0.6 of the proxy exactly, 4.8x httpx
        (1199.0, False, False),  # just under both
        (1000.0, False, False),  # 0.5 of the proxy, 4x httpx
    ],
)
def test_s3_ratios_are_met_from_exactly_their_bounds(
    gateway_rps: float, proxy_met: bool, httpx_met: bool
) -> None:
    """Against a 2,000 req/s proxy and a 250 req/s httpx gateway: 0.6 and 5x are met."""
    results = _results()
    results["S3"]["gateway"]["rps"] = gateway_rps
    s3 = report.verdicts(results)["S3"]
    assert s3["ge_60pct_of_proxy"] is proxy_met
    assert s3["ge_5x_httpx_transport"] is httpx_met


def test_s3_ratios_are_shown_cut_to_three_and_two_digits() -> None:
    """1,234 req/s against a 2,000 req/s proxy and a 300 req/s httpx gateway: 0.617, 4.11x."""
    results = _results()
    results["S3"] |= {"gateway": {"rps": 1234.0}, "gateway-httpx-transport": {"rps": 300.0}}
    s3 = report.verdicts(results)["S3"]
    assert (s3["share_of_proxy"], s3["x_httpx_transport"]) == (0.617, 4.11)


def test_s3_ratios_are_judged_each_on_its_own() -> None:
    """Above 60 % of the proxy but under 5x httpx, and under 60 % but above 5x."""
    results = _results()
    results["S3"] |= {"passthrough-proxy": {"rps": 1600.0}, "gateway-httpx-transport": {"rps": 400}}
    results["S3"]["gateway"]["rps"] = 1000.0  # 0.625, 2.5x
    assert report.verdicts(results)["S3"] | {"share_of_proxy": 0, "x_httpx_transport": 0} == {
        "share_of_proxy": 0,
        "x_httpx_transport": 0,
        "ge_60pct_of_proxy": True,
        "ge_5x_httpx_transport": False,
    }
    results["S3"] |= {"passthrough-proxy": {"rps": 2000.0}, "gateway-httpx-transport": {"rps": 100}}
    s3 = report.verdicts(results)["S3"]  # 0.5, 10x
    assert (s3["ge_60pct_of_proxy"], s3["ge_5x_httpx_transport"]) == (False, True)
    assert (s3["share_of_proxy"], s3["x_httpx_transport"]) == (0.5, 10.0)


@pytest.mark.parametrize(
    ("kb", "at_signer", "met"),
    [
        (48.8, None, True),
        (48.9, None, False),
        (30.0, 48.8, True),
        (30.0, 48.9, False),
        (48.9, 30.0, False),
    ],
)
def test_s4_memory_is_met_up_to_and_including_50kb_on_both_figures(
    kb: float, at_signer: float | None, met: bool
) -> None:
    """Up to 50,000 bytes per in-flight request passes, at 10,000 and with all at the signer.

    The figures are KB of 1,024 bytes: 48.8 KB is 49,971 bytes, 48.9 KB 50,074, over 50 kB.
    """
    results = _results()
    results["S4"]["kb_per_in_flight"] = kb
    if at_signer is not None:
        results["S4"][report.ALL_AT_SIGNER] = {"kb_per_in_flight": at_signer}
    verdicts = report.verdicts(results)
    assert verdicts["S4"]["le_50kb"] is met
    assert _missed(verdicts) == (set() if met else {"le_50kb"})


@pytest.mark.parametrize(
    ("at_signer_bytes", "met", "shown"), [(50_000, True, "50.0"), (50_001, False, "50.1")]
)
def test_s4_is_judged_on_the_bytes_a_run_kept_and_shows_them_rounded_up(
    at_signer_bytes: int, met: bool, shown: str
) -> None:
    """50,000 bytes meets 50 KB, one byte more does not; its row never reads 50.0 beside NO."""
    results = _results()
    results["S4"][report.ALL_AT_SIGNER] = {
        "kb_per_in_flight": round(at_signer_bytes / 1024, 1),  # 48.8 either way
        "bytes_per_in_flight": at_signer_bytes,
    }
    verdicts = report.verdicts(results)
    assert verdicts["S4"]["le_50kb"] is met
    [row] = [r for r in report._verdict_rows(verdicts, results["S1"]) if "50 KB" in r]
    assert row.endswith(f"the larger is {shown} kB of 1,000) | {report._yes(met)} |"), row


def test_the_s4_errors_row_is_missed_when_10000_were_never_in_flight() -> None:
    """No errors at a peak of 4,000 has not shown "no errors at 10,000": the row says NO."""
    results = _results()
    results["S4"]["peak_in_flight"] = 4000
    verdicts = report.verdicts(results)
    [row] = [r for r in report._verdict_rows(verdicts, results["S1"]) if "no errors" in r]
    assert row.endswith("(reached: **NO**) | **NO** |"), row


@pytest.mark.parametrize(
    ("figure", "value", "target", "met"),
    [
        ("errors", 0, "no_errors", True),
        ("errors", 1, "no_errors", False),
        ("errors", 250, "no_errors", False),
        ("peak_in_flight", 10_000, "reached_10k_in_flight", True),
        ("peak_in_flight", 10_240, "reached_10k_in_flight", True),
        ("peak_in_flight", 9_999, "reached_10k_in_flight", False),
    ],
)
def test_s4_needs_no_errors_and_10000_in_flight_each_judged_apart(
    figure: str, value: int, target: str, met: bool
) -> None:
    """Any S4 error fails "no errors"; a peak of 9,999 in flight misses 10,000, exactly it meets."""
    results = _results()
    results["S4"][figure] = value
    verdicts = report.verdicts(results)
    assert verdicts["S4"][target] is met
    assert _missed(verdicts) == (set() if met else {target})


def test_the_verdict_table_says_no_for_every_missed_target() -> None:
    """A run missing every target reads **NO** on each target's row of the table."""
    failed = {"polls": 2000, "failures": 1, "p50_ms": 2.0, "p99_ms": 60.0, "max_ms": 300.0}
    lagging = {"samples": 380, "over_100ms": 3, "max_ms": 150.0}
    results = _results(
        _s1(200.0, wrk=_wrk(status_errors=1), healthz=failed, loop_lag_window=lagging)
    )
    results["S2"]["rps"] = 900.0
    results["S3"]["gateway"]["rps"] = 300.0
    results["S4"] |= {"kb_per_in_flight": 70.0, "errors": 5, "peak_in_flight": 4000}
    verdicts = report.verdicts(results)
    assert _missed(verdicts) == {*S1_TARGETS, "shows_contrast", *S3_TARGETS, *S4_TARGETS}
    rows = report._verdict_rows(verdicts, results["S1"])[2:]
    assert len(rows) == 10
    assert all(row.endswith("| **NO** |") for row in rows), rows


def test_a_ratio_just_short_of_its_target_is_never_shown_as_reaching_it() -> None:
    """89.96 % of the limit, 59.996 % of the proxy, 4.999x httpx: each shown short, each NO.

    Rounded to the nearest, they read 0.9, 0.6 and 5.0 beside **NO**.
    """
    v = report.verdicts(_results(_s1(899.6)))  # its S3 ceiling, 1,500 req/s, is not the limit
    s3 = {
        "gateway": {"rps": 599.96},
        "passthrough-proxy": {"rps": 1000.0},
        "gateway-httpx-transport": {"rps": 599.96 / 4.999},
    }
    v["S3"] = report.verdicts({"S3": s3})["S3"]
    shown = {
        "throughput_ge_90pct": (v["S1"]["throughput_share_of_limit"], 0.9),
        "ge_60pct_of_proxy": (v["S3"]["share_of_proxy"], 0.6),
        "ge_5x_httpx_transport": (v["S3"]["x_httpx_transport"], 5.0),
    }
    for target, (figure, bound) in shown.items():
        assert v["S1" if target.startswith("throughput") else "S3"][target] is False
        assert figure < bound, f"{target}: shown as {figure}, met: NO"
    assert v["S1"]["throughput_share_of_limit"] == 0.899
    assert v["S1"]["whole_run_share_of_limit"] == 0.95


def test_requests_the_gateway_held_past_wrks_timeout_fail_s1_success() -> None:
    """A request still unanswered when wrk stops is no wrk error; the gateway's count has it.

    Three requests of round 3 (not the judged one) outlived the clients' 10 s timeout.
    """
    rounds = [_s1(950.0, held_over_timeout=0), _s1(900.0, held_over_timeout=0)]
    rounds.append(_s1(990.0, held_over_timeout=3))
    s1 = _in_rounds(rounds)
    assert s1["judged_round"] == 0
    assert s1["errors"] == 0
    verdicts = report.verdicts({"S1": s1})
    assert verdicts["S1"]["success_100pct"] is False, "3 requests never answered, 0 errors"
    assert verdicts["S1"]["worst_of_rounds"]["held_over_timeout"] == 3
    row = next(x for x in report._verdict_rows(verdicts, s1) if "S1 100 % success" in x)
    assert "errors = 0; held past wrk's 10 s timeout = 3 (3 rounds together) | **NO** |" in row
    clean = _in_rounds([_s1(950.0, held_over_timeout=0)] * 3)
    assert report.verdicts({"S1": clean})["S1"]["success_100pct"] is True
