"""S1 is measured again, with both of its limit runs, while the host steals CPU 0."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import report, run, scenarios


def _measure(steals: list[float]) -> tuple[Any, Any, list[str], Any]:
    """Fakes for S1's three runs; each run takes the next steal of CPU 0 from `steals`."""
    order: list[str] = []

    def next_steal() -> dict[str, float]:
        return {"cpu0": steals.pop(0), "cpu1": 0.0}

    def slow(title: str, starter: Any, *, has_lag: bool) -> dict[str, Any]:
        order.append("S1")
        return {"rps": 300.0, "cpu_steal": next_steal()}

    def ceiling(*args: Any, **kwargs: Any) -> dict[str, Any]:
        order.append("limit")
        return {"rps": 320.0, "cpu_steal": next_steal()}

    @contextlib.contextmanager
    def beside(starter: Any) -> Iterator[tuple[None, None]]:
        yield None, None

    return slow, beside, order, ceiling


@pytest.mark.parametrize(
    ("steals", "runs"),
    [
        ([0.01, 0.02, 0.03], 1),  # calm: measured once
        ([0.01, 0.17, 0.03, 0.0, 0.01, 0.02], 2),  # S1 robbed, then calm
        ([0.2] * 9, 3),  # robbed every time: three attempts, the last judged
    ],
)
def test_s1_is_repeated_while_the_host_steals_cpu_0(
    monkeypatch: pytest.MonkeyPatch, steals: list[float], runs: int
) -> None:
    """Up to `S1_ATTEMPTS`, each as limit, S1, limit; every attempt listed once repeated."""
    slow, beside, order, ceiling = _measure(list(steals))
    monkeypatch.setattr(scenarios, "ceiling", ceiling)
    s1 = run._s1(slow, beside, Path("logs"), Path("body"), scale=1.0, limit=True)
    assert order == ["limit", "S1", "limit"] * runs
    assert s1["cpu_steal"]["cpu0"] == steals[3 * runs - 2]
    assert len(s1.get("attempts", [None])) == runs
    assert runs <= report.S1_ATTEMPTS


def test_s1_without_its_limit_runs_is_measured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """No limit runs (unpinned, or S3 narrowed): nothing to compare, no repeat."""
    slow, beside, order, ceiling = _measure([0.3])
    monkeypatch.setattr(scenarios, "ceiling", ceiling)
    s1 = run._s1(slow, beside, Path("logs"), Path("body"), scale=1.0, limit=False)
    assert order == ["S1"]
    assert "attempts" not in s1
