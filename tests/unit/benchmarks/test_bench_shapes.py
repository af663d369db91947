"""The shapes report: one row per window, and only the shapes it knows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from bench import shapes
from bench.auth import BenchAuth
from bench.wrk import Load, WrkResult


def test_each_window_is_a_row_under_the_command_that_made_it() -> None:
    """A window whose steady marks failed shows dashes, not a figure it does not have."""
    steady = {"shape": "L", "rps": 812.5, "cpu_us_per_request": 1230.4, "errors": 0, "load": 0.4}
    missed = {"shape": "S", "errors": 3, "load": 1.2}
    table = shapes._table([("LS", [steady, missed])], pollers=True).splitlines()
    assert table[0] == (
        "Shapes (`python -m bench.shapes LS --pollers`): steady req/s and CPU µs per answer, "
        "per window."
    )
    assert table[-2:] == [
        "| LS | 1 | L | 812.5 | 1230.4 | 0 | 0.4 |",
        "| LS | 2 | S | - | - | 3 | 1.2 |",
    ]


def test_a_sequence_of_other_letters_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 2 with argparse's usage line: no signer or gateway is started for a typo."""
    with pytest.raises(SystemExit) as stopped:
        shapes.main(["LSX"])
    assert stopped.value.code == 2
    assert "sequences are made of L, S" in capsys.readouterr().err


def test_each_window_runs_its_shapes_load_against_its_signer_latency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """L: signer 0 ms, 64 clients, 15 s; S: signer 1 s (1,000 ms), 1,000 clients, 20 s.

    Each window's steady state ends before wrk does, and every kind of wrk error counts.
    """
    puts: list[Any] = []
    loads: list[tuple[int, float]] = []
    windows: list[tuple[float, float]] = []

    class Window:
        def __init__(self, _gw: Any, *, settle: float, end: float) -> None:
            windows.append((settle, end))

        def figures(self) -> dict[str, Any]:
            return {"rps": 900.0, "cpu_us_per_request": 1000.0}

    def run_wrk(_url: str, _load: Any, *, connections: int, seconds: float, **_: Any) -> Any:
        loads.append((connections, seconds))
        return WrkResult(10, 1.0, 1, 2, 3, 4, 5, 1.0, 1.0, 1.0, 1.0, command="wrk")

    def put(url: str, *, json: dict[str, Any]) -> httpx.Response:
        puts.append(json)
        return httpx.Response(200, request=httpx.Request("PUT", url))

    @contextlib.contextmanager
    def proc(*_: Any, **__: Any) -> Iterator[Any]:
        yield SimpleNamespace(url="http://127.0.0.1:1", probe_url=None)

    monkeypatch.setattr(shapes.procs, "pinned", proc)
    monkeypatch.setattr(shapes.procs, "fake_signer", proc)
    monkeypatch.setattr(shapes.procs, "gateway", proc)
    monkeypatch.setattr(shapes, "run_wrk", run_wrk)
    monkeypatch.setattr(shapes, "SteadyWindow", Window)
    monkeypatch.setattr(shapes.httpx, "put", put)
    load = Load(tmp_path / "dcc.json", BenchAuth(tmp_path / "jwks.json", "t"))
    rows = shapes.sequence("LS", load, tmp_path, pollers=False)
    assert puts == [{"latencyMs": 0.0}, {"latencyMs": 1000.0}]
    assert loads == [(64, 3), (64, 15.0), (1000, 20.0)]  # the warm-up, then L and S
    assert windows == [(2.0, 14.5), (4.0, 19.5)]
    assert [(w["shape"], w["errors"]) for w in rows] == [("L", 15), ("S", 15)]
