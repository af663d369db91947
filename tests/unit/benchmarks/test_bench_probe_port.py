"""`bench.probe_port`'s probers count the ticks a slow probe held up, as `bench.poller` does."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bench import probe_port, scenarios


def test_a_slow_probe_counts_the_ticks_it_held_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probes answered in 65, 1 and 1 ms (the last failed) on the 20 ms schedule."""
    stop = threading.Event()
    answers = iter([(0.065, True), (0.001, True), (0.001, False)])

    def fake_probe(_port: int) -> tuple[float, bool]:
        seconds, ok = next(answers)
        if not ok:
            stop.set()
        return seconds, ok

    monkeypatch.setattr(probe_port, "_probe", fake_probe)
    out: dict[str, Any] = {"latencies": [], "failures": 0}

    probe_port._prober(0, out, stop)

    figures = scenarios.poll_figures(out)
    # The 65 ms probe held up the ticks at 20, 40 and 60 ms: they would have seen 45, 25, 5 ms.
    assert (figures["polls"], figures["failures"], figures["skipped_ticks"]) == (3, 1, 3)
    assert figures["max_ms"] == pytest.approx(65.0)
    assert figures["p50_ms"] == pytest.approx(15.0)  # the median of 65, 45, 25, 5, 1 and 1
