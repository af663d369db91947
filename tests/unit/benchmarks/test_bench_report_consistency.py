"""What the report states matches what it judges and what it plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import report


def _s4(*, errors: int, held_errors: int) -> dict[str, Any]:
    """S4's figures: the 10,000 run and the run with every request at the signer."""
    return {
        "kb_per_in_flight": 30.0,
        "errors": errors,
        "peak_in_flight": 10_000,
        report.ALL_AT_SIGNER: {"kb_per_in_flight": 40.0, "errors": held_errors},
    }


def test_s4_errors_are_judged_over_both_of_its_gateway_runs() -> None:
    """The all-at-the-signer run feeds the memory verdict, so its errors count too."""
    clean = report.verdicts({"S4": _s4(errors=0, held_errors=0)})["S4"]
    assert clean["no_errors"] is True
    failed = report.verdicts({"S4": _s4(errors=0, held_errors=3)})["S4"]
    assert failed["no_errors"] is False
    assert failed["errors_all_at_signer"] == 3
    row = next(x for x in report._verdict_rows({"S4": failed}, {}) if "S4 no errors" in x)
    assert "all at the signer: 3" in row
    assert row.endswith("| **NO** |")


def _s1_rounds() -> dict[str, Any]:
    """S1 in three rounds: the table shows round 2 (the median), the verdicts the worst."""
    health = {"failures": 0, "p50_ms": 3.0, "p99_ms": 20.0, "max_ms": 80.0, "polls": 1900}
    worst = {"failures": 0, "p99_ms": 45.0, "max_ms": 240.0}
    rounds = [
        {"healthz": worst, "errors": 0, "lag_ms": 50.0, "lag_text": "50 ms", "lag_ok": True},
        {"healthz": health, "errors": 0, "lag_ms": 40.0, "lag_text": "40 ms", "lag_ok": True},
        {"healthz": health, "errors": 0, "lag_ms": 30.0, "lag_text": "30 ms", "lag_ok": True},
    ]
    return {
        "rps": 900.0,
        "ok": 17_000,
        "requests": 17_500,
        "limit_rps": 1000.0,
        "errors": 0,
        "healthz": health,
        "loop_lag_max_ms": 40.0,
        "rounds": rounds,
        "judged_round": 2,
    }


def test_the_s1_table_names_its_response_figures_for_what_they_count() -> None:
    """Answers below 400 among the responses wrk completed: not 2xx among those sent."""
    rows = report._s1_s2_table({"S1": _s1_rounds(), "S2": {}})
    row = next(x for x in rows if "17000 / 17500" in x)
    assert row.startswith("| responses < 400 / responses completed (wrk) |")


def test_the_healthz_chart_names_the_round_it_shows_beside_the_worst_the_verdicts_take(
    monkeypatch: Any,
) -> None:
    """The verdict table reports the worst round; the chart says it shows the judged one."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only this test draws

    figures: list[Any] = []
    monkeypatch.setattr(plt, "close", figures.append)
    monkeypatch.setattr(plt.Figure, "savefig", lambda *_, **__: None)
    r = {"started": "2026-12-04T12:00:00+00:00", "S1": _s1_rounds()}
    report.chart(r, Path("unused.png"))
    panel = figures[0].axes[1]
    _, labels = panel.get_legend_handles_labels()
    assert "S1 gateway, round 2 of 3 (median)" in labels
    assert "round 2 of 3" in panel.get_title()
    assert "worst round: p99 45 ms, max 240 ms" in panel.get_title()


def test_the_repeatability_row_shows_the_s1_figures_its_verdicts_were_judged_on() -> None:
    """Round 1 (not the median) stalled: the row names its lag and /healthz beside the miss.

    The row used to show the median round's /healthz and lag (20 / 80 ms, 40 ms) beside
    "loop_lag_le_100ms missed", a miss no figure in the row explained.
    """
    s1 = _s1_rounds()
    s1["rounds"][0] |= {"lag_ms": 120.0, "lag_text": "120 ms", "lag_ok": False}
    s1["loop_lag_window"] = {"samples": 380, "over_100ms": 0, "max_ms": 40.0}
    r: dict[str, Any] = {
        "started": "2026-12-06T02:29:40+00:00",
        "machine": {"load_before": [0.6], "load_after": [0.7]},
        "S1": s1,
    }
    r["verdicts"] = report.verdicts(r)
    assert r["verdicts"]["S1"]["loop_lag_le_100ms"] is False
    cells = [cell.strip() for cell in report._history_row(r).split("|")]
    assert cells[4] == "45.0/240.0", "the row shows the median round's /healthz, not the worst"
    assert cells[5] == "120 ms", "the row shows the median round's lag, not the one judged"
    assert "loop_lag_le_100ms" in cells[8]


def test_the_healthz_rows_say_when_failed_polls_are_what_missed_them() -> None:
    """Polls that failed miss both /healthz targets; their rows say so beside the latencies.

    They read "45.0 ms (worst of 3 rounds) | **NO**" with nothing in them missing 50 ms.
    """
    s1 = _s1_rounds()
    s1["rounds"][2]["healthz"] = s1["rounds"][2]["healthz"] | {"failures": 2}
    verdicts = report.verdicts({"S1": s1})
    rows = [x for x in report._verdict_rows(verdicts, s1) if x.startswith("| S1 /healthz")]
    assert [row.endswith("| **NO** |") for row in rows] == [True, True]
    for row in rows:
        assert "2 polls failed" in row, row


def test_the_failed_polls_of_every_round_are_added_up() -> None:
    """Rounds 1 and 3 each lost a poll: 2 failed, though no round lost more than one."""
    s1 = _s1_rounds()
    for n in (0, 2):
        s1["rounds"][n]["healthz"] = s1["rounds"][n]["healthz"] | {"failures": 1}
    verdicts = report.verdicts({"S1": s1})
    assert verdicts["S1"]["worst_of_rounds"]["healthz_failures"] == 2
    rows = [x for x in report._verdict_rows(verdicts, s1) if x.startswith("| S1 /healthz")]
    assert all("; 2 polls failed (worst of 3 rounds) | **NO** |" in row for row in rows), rows
