"""Capacity per endpoint (bench/endpoints.py): its table, its session figure, its doc block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import endpoints, report
from bench.auth import BenchAuth
from bench.wrk import shown_command, wrk_command


def _figures(**changes: Any) -> dict[str, Any]:
    """One route's figures as `scenarios.ceiling` returns them for bench/endpoints.lua."""
    return {
        "requests": 3000,
        "rps": 1000.0,
        "seconds": 3.0,
        "cpu_us_per_request": 800.0,
        "cpu_seconds": 2.4,
        "target_cpu_share": 0.97,
        "p50_ms": 61.25,
        "p99_ms": 120.0,
        "statuses": {"200": 3000},
        "error_detail": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
        "command": "BENCH_METHOD=POST wrk ...",
    } | changes


def _results(routes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "started": "2026-12-06T19:40:00+00:00",
        "wall_seconds": 200.0,
        "machine": {"cpus": 2, "load_before": [0.3], "load_after": [1.1]},
        "versions": {"python": "3.11.7", "wrk": "wrk 4.1.0"},
        "pinned": True,
        "loop": "asyncio",
        "clients": 64,
        "seconds": 15.0,
        "rss_started_mb": 80.5,
        "rss_after_load_mb": 88.0,
        "still_held": 0,
        "routes": routes,
    }


def test_a_row_shows_every_answer_other_than_200_by_status_and_the_transport_errors() -> None:
    """A 503 or a timeout is an error, shown with its count; a clean route shows 0."""
    detail = {"connect": 0, "read": 2, "write": 0, "status": 5, "timeout": 1}
    failing = _figures(statuses={"200": 2995, "503": 4, "429": 1}, error_detail=detail)
    rows = endpoints.table(_results({"dcc": failing, "healthz": _figures()}))
    dcc = next(r for r in rows if "`POST /v1/dcc`" in r)
    assert dcc.endswith("| 1 x 429, 4 x 503, 2 read, 1 timeout |")
    healthz = next(r for r in rows if "`GET /healthz`" in r)
    assert healthz.endswith("| 0 |")


def test_a_row_shows_the_cpu_per_answer_and_what_one_core_would_answer() -> None:
    """800 µs per answer: 1,250 answers per CPU-second, whatever rate the load side reached.

    The rate counts 200s only: wrk's own counts every answer under 400.
    """
    figures = _figures(statuses={"200": 2940, "302": 60})
    (row,) = endpoints.table(_results({"dcc": figures}))[2:]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "`POST /v1/dcc`", "980", "97%", "800", "1,250", "61.2 / 120.0", "3,000", "60 x 302",
    ]  # fmt: skip


def test_the_session_row_counts_sessions_and_their_cpu_without_the_unspent_prepare_issues() -> None:
    """400 issued of 420 prepared: the 20 left over cost a prepare-issue each and are taken out."""
    session = _figures(
        cpu_seconds=1.0, steps={"prepared": 420, "issued": 400}, statuses={"200": 820}
    )
    assert endpoints.session_cpu_us(session, prepare_cpu_us=500.0) == 2475.0
    assert endpoints.session_cpu_us(session, prepare_cpu_us=None) == 2500.0
    assert endpoints.session_cpu_us(_figures(steps={}), prepare_cpu_us=500.0) is None
    session |= {"sessions_per_s": 133.3, "cpu_us_per_session": 2475.0}
    (row,) = endpoints.table(_results({endpoints.SESSION: session}))[2:]
    assert row.startswith("| `POST /v1/domestic/prepare-issue` + `/issue`, per session | 133 |")
    assert "| 2,475 | 404 |" in row


def test_the_block_names_the_command_the_machine_and_the_rss() -> None:
    """What a reader needs to judge the figures: how they were made, when, on what."""
    block = endpoints.markdown(_results({"dcc": _figures()}), "python -m bench.endpoints")
    assert block.startswith(endpoints.START + "\n## Capacity per endpoint")
    assert block.endswith(endpoints.END)
    assert "Run 2026-12-06 19:40:00 UTC: `python -m bench.endpoints`, 200.0 s wall" in block
    assert "load average 0.3 before, 1.1 after. Versions: python 3.11.7, wrk wrk 4.1.0." in block
    assert "80.5 MB after start-up, 88.0 MB after the load, idle" in block
    assert "\nBENCH_METHOD=POST wrk ...\n" in block


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # Replaced where it stands, the rest left as it was.
        (
            "# B\n\n<!-- endpoints:start -->\nold\n<!-- endpoints:end -->\n\n## After\n",
            "# B\n\nNEW\n\n## After\n",
        ),
        # None yet: before the soak block, where bench/report.py puts it.
        (
            "# B\n\n<!-- soak:start -->\nsoak\n<!-- soak:end -->\n",
            "# B\n\nNEW\n\n<!-- soak:start -->\nsoak\n<!-- soak:end -->\n",
        ),
        # Neither: at the end.
        ("# B\n\ntext\n\n", "# B\n\ntext\n\nNEW\n"),
    ],
)
def test_the_block_is_rewritten_between_its_markers(doc: str, expected: str) -> None:
    """A second run replaces the first's block, and leaves the doc around it as it was."""
    new = f"{endpoints.START}\nNEW\n{endpoints.END}"
    framed = expected.replace("NEW", new)
    assert endpoints.rewrite(doc, new) == framed
    assert endpoints.rewrite(framed, new) == framed


def test_a_full_bench_run_keeps_the_block_before_the_soak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make bench` regenerates docs/benchmarks.md: the capacity figures survive it verbatim."""
    monkeypatch.setattr(report, "chart", lambda _r, _png: None)
    doc = tmp_path / "benchmarks.md"
    block = endpoints.markdown(_results({"dcc": _figures()}), "python -m bench.endpoints")
    soak = "<!-- soak:start -->\n## Soak\n<!-- soak:end -->"
    doc.write_text(endpoints.rewrite(f"# Benchmarks\n\n{soak}\n", block))
    run = {
        "started": "2026-12-04T12:00:00+00:00",
        "wall_seconds": 1.0,
        "machine": {"cpus": 2, "load_before": [0.1], "load_after": [0.2]},
        "versions": {"python": "3.11"},
        "verdicts": {},
    }
    report.write(run, doc, tmp_path / "benchmarks.png", [])
    text = doc.read_text()
    assert block in text
    assert text.index(block) < text.index(soak)


def test_a_probe_command_is_printed_without_the_token(tmp_path: Path) -> None:
    """Probes and scrapes carry no token: the printed command sends none either."""
    auth = BenchAuth(tmp_path / "jwks.json", "a-token")
    route = next(r for r in endpoints.routes("0") if r.name == "healthz")
    load = endpoints.load_for(route, tmp_path, auth)
    command = wrk_command(
        "http://127.0.0.1:41000/healthz", connections=64, seconds=15, threads=2,
        timeout_s=30, script=load.script,
    )  # fmt: skip
    shown = shown_command(command, load)
    assert shown.startswith("BENCH_METHOD=GET BENCH_BODY_FILE=$RUN_DIR/healthz.json BENCH_TOKEN= ")
    assert "-s bench/endpoints.lua" in shown
    assert shown.endswith("http://127.0.0.1:$PORT/healthz")
    assert load.env()["BENCH_TOKEN"] == ""
