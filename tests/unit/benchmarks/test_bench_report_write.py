"""Regenerating docs/benchmarks.md: the chart changes only with the doc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report


def _run() -> dict[str, Any]:
    """A run's results with what the report reads of a run that measured nothing."""
    return {
        "started": "2026-12-04T12:00:00+00:00",
        "wall_seconds": 1.0,
        "machine": {"cpus": 2, "load_before": [0.1], "load_after": [0.2]},
        "versions": {"python": "3.11"},
        "verdicts": {},
    }


def _charted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the charts `report.write` draws (instead of drawing them)."""
    drawn: list[Path] = []

    def chart(r: dict[str, Any], png: Path) -> None:
        png.write_bytes(b"new chart")
        drawn.append(png)

    monkeypatch.setattr(report, "chart", chart)
    return drawn


def test_a_refused_rewrite_leaves_the_chart_of_the_run_the_doc_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The doc keeps the old run when a hand-written section would be lost: so does the PNG."""
    drawn = _charted(monkeypatch)
    doc, png = tmp_path / "benchmarks.md", tmp_path / "benchmarks.png"
    old_doc = "# Benchmarks\n\n## A hand-written section\n\ntext\n"
    doc.write_text(old_doc)
    png.write_bytes(b"old chart")
    with pytest.raises(report.LostSectionsError):
        report.write(_run(), doc, png, [])
    assert doc.read_text() == old_doc
    assert png.read_bytes() == b"old chart"
    assert drawn == []


def test_an_accepted_rewrite_draws_the_chart_beside_the_doc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are written, doc and chart, from the same run."""
    drawn = _charted(monkeypatch)
    doc, png = tmp_path / "benchmarks.md", tmp_path / "benchmarks.png"
    report.write(_run(), doc, png, [])
    assert doc.read_text().startswith("# Benchmarks\n")
    assert drawn == [png]
    assert png.read_bytes() == b"new chart"
