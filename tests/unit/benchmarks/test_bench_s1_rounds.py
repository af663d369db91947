"""S1 runs in rounds, each between two measurements of its limit; the median round is judged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import report, run, scenarios


def _s1_figures(steady_rps: float, *, max_ms: float = 60.0) -> dict[str, Any]:
    """One S1 run's figures, with the parts its round and verdicts read."""
    return {
        "rps": steady_rps - 20,  # wrk's whole run: lower, it counts the first second too
        "steady": {"rps": steady_rps, "cpu_us_per_request": 2500.0, "seconds": 15.5, "from_s": 4},
        "limit_rps": 1000.0,
        "errors": 0,
        "healthz": {"failures": 0, "p99_ms": 9.0, "max_ms": max_ms, "polls": 1900},
        "loop_lag_max_ms": 30.0,
        "cpu_steal": {"cpu0": 0.01, "cpu1": 0.0},
    }


def _measure(s1_rps: list[float], limits: list[float]) -> tuple[Any, Any, list[str], Any]:
    """Fakes for S1's runs: each S1 takes the next of `s1_rps`, each limit run of `limits`."""
    order: list[str] = []

    def slow(title: str, starter: Any, *, has_lag: bool) -> dict[str, Any]:
        order.append("S1")
        return _s1_figures(s1_rps.pop(0))

    def ceiling(*args: Any, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["steady"]  # S1's limit is measured the way S1 is
        order.append("limit")
        rps = limits.pop(0)
        return {"rps": rps - 2, "steady": {"rps": rps}, "cpu_steal": {"cpu0": 0.0, "cpu1": 0.0}}

    @contextlib.contextmanager
    def beside(starter: Any) -> Iterator[tuple[None, None]]:
        yield None, None

    return slow, beside, order, ceiling


def test_s1_runs_in_rounds_between_its_limit_runs_and_the_median_round_is_judged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """limit, S1, limit, S1, limit, S1, limit: a limit run serves the rounds on both sides."""
    # Shares: 300 / 320 = 0.9375 (shown cut: 0.937), 250 / 300 = 0.833 (the host took the
    # minute), 330 / 320 = 1.031.
    slow, beside, order, ceiling = _measure([300.0, 250.0, 330.0], [320.0, 320.0, 280.0, 360.0])
    monkeypatch.setattr(scenarios, "ceiling", ceiling)
    s1 = run._s1(slow, beside, Path("logs"), Path("body"), scale=1.0, limit=True)
    assert order == ["limit", "S1"] * report.S1_ROUNDS + ["limit"]
    assert [a["share"] for a in s1["rounds"]] == [0.937, 0.833, 1.031]
    assert s1["judged_round"] == 1
    assert s1["steady"]["rps"] == 300.0
    assert [a["limits"] for a in s1["rounds"]] == [[320.0, 320.0], [320.0, 280.0], [280.0, 360.0]]
    verdict = report.verdicts({"S1": s1})["S1"]
    assert verdict["throughput_share_of_limit"] == 0.937
    assert verdict["throughput_ge_90pct"]


def test_s1_without_its_limit_runs_is_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No limit runs (unpinned, or S3 narrowed): nothing to compare, one S1."""
    slow, beside, order, ceiling = _measure([300.0], [])
    monkeypatch.setattr(scenarios, "ceiling", ceiling)
    s1 = run._s1(slow, beside, Path("logs"), Path("body"), scale=1.0, limit=False)
    assert order == ["S1"]
    assert "rounds" not in s1


def test_every_round_must_meet_the_s1_targets_other_than_throughput() -> None:
    """One round's /healthz spike fails its target, although the judged round was calm."""
    limit = {"rps": 320.0, "steady": {"rps": 320.0}}
    rounds = [
        _s1_figures(300.0) | {"limit_ceiling_before": limit, "limit_ceiling": limit},
        _s1_figures(310.0, max_ms=310.0) | {"limit_ceiling_before": limit, "limit_ceiling": limit},
        _s1_figures(290.0) | {"limit_ceiling_before": limit, "limit_ceiling": limit},
    ]
    judged = report.median_round(rounds)
    s1 = rounds[judged] | {"rounds": [report.s1_round(r) for r in rounds]}
    verdict = report.verdicts({"S1": s1})["S1"]
    assert judged == 0
    assert verdict["healthz_max_le_250ms"] is False
    assert verdict["worst_of_rounds"]["healthz_max_ms"] == 310.0
    assert verdict["healthz_p99_le_50ms"]
    rows = report._verdict_rows(report.verdicts({"S1": s1}), s1)
    (row,) = [x for x in rows if x.startswith("| S1 /healthz max")]
    assert row == "| S1 /healthz max ≤ 250 ms | 310.0 ms (worst of 3 rounds) | **NO** |"
    table = report._s1_rounds(s1 | {"judged_round": 1})
    assert any(line.startswith("| 2 | 310 (290) | 2500.0 | 320 / 320 | 0.968 |") for line in table)


def test_the_probe_port_polls_are_shown_beside_the_main_port_but_not_judged() -> None:
    """A slow /healthz on the probe port is listed per round; only the main port is judged."""
    limit = {"rps": 320.0, "steady": {"rps": 320.0}}
    probe_port = {"failures": 0, "p99_ms": 70.0, "max_ms": 400.0, "polls": 1900}
    rounds = [
        _s1_figures(rps) | {"limit_ceiling_before": limit, "limit_ceiling": limit}
        for rps in (300.0, 310.0, 290.0)
    ]
    rounds[1]["healthz_probe_port"] = probe_port
    s1 = rounds[0] | {"rounds": [report.s1_round(r) for r in rounds], "judged_round": 1}
    verdict = report.verdicts({"S1": s1})["S1"]
    assert verdict["healthz_max_le_250ms"]
    assert verdict["healthz_p99_le_50ms"]
    table = report._s1_rounds(s1)
    assert any(" | 70 / 400 ms | " in line for line in table if line.startswith("| 2 |"))
    assert any(" | - | " in line for line in table if line.startswith("| 1 |"))


def _round(steady_rps: float, limit_rps: float, **figures: Any) -> dict[str, Any]:
    """An S1 round between two limit runs of `limit_rps` (steady req/s)."""
    limit = {"rps": limit_rps, "steady": {"rps": limit_rps}}
    return (
        _s1_figures(steady_rps) | figures | {"limit_ceiling_before": limit, "limit_ceiling": limit}
    )


def test_the_median_round_is_the_median_share_of_its_limit_not_of_req_s() -> None:
    """Shares 0.75, 0.961, 1.031: round 2 is judged, though round 1 has the median req/s.

    Of two rounds the lower share is judged.
    """
    rounds = [_round(300.0, 400.0), _round(250.0, 260.0), _round(330.0, 320.0)]
    assert report.median_round(rounds) == 1
    assert report.median_round(rounds[1:]) == 0


def test_rounds_without_a_lag_window_are_judged_on_their_lag_since_start() -> None:
    """Older results: round 2's 150 ms since start is the worst lag, and it misses the target."""
    rounds = [_round(300.0, 320.0), _round(310.0, 320.0, loop_lag_max_ms=150.0)]
    rounds.append(_round(290.0, 320.0))
    s1 = rounds[0] | {"rounds": [report.s1_round(r) for r in rounds]}
    verdict = report.verdicts({"S1": s1})["S1"]
    assert verdict["worst_of_rounds"]["lag_text"] == "150.0 ms (since start)"
    assert verdict["loop_lag_le_100ms"] is False
