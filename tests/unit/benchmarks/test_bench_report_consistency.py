"""What the report states matches what it judges and what it plots."""

from __future__ import annotations

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
