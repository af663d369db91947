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
    steady = {
        "shape": "L", "server": "gateway", "rps": 812.5, "cpu_us_per_request": 1230.4,
        "busy": 1.0, "errors": 0, "load": 0.4,
    }  # fmt: skip
    missed = {"shape": "S", "server": "proxy", "errors": 3, "load": 1.2}
    table = shapes._table([("LS", [steady, missed])], "python -m bench.shapes LS --pollers")
    lines = table.splitlines()
    assert lines[0] == (
        "Shapes (`python -m bench.shapes LS --pollers`): steady req/s and CPU µs per answer, "
        "per window."
    )
    assert lines[2] == (
        "| sequence | window | server | shape | req/s | CPU µs per answer | busy | wrk errors "
        "| load average |"
    )
    assert lines[3] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[-2:] == [
        "| LS | 1 | gateway | L | 812.5 | 1230.4 | 1.0 | 0 | 0.4 |",
        "| LS | 2 | proxy | S | - | - | - | 3 | 1.2 |",
    ]


@pytest.mark.parametrize("sequence", ["LSX", "router:LS", "proxy:", "gateway:LS:L"])
def test_a_sequence_of_other_letters_or_servers_is_refused_before_anything_starts(
    sequence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with argparse's usage line: no signer or server is started for a typo."""
    with pytest.raises(SystemExit) as stopped:
        shapes.main([sequence])
    assert stopped.value.code == 2
    assert "a sequence is letters of L, S, K, M, Q, P" in capsys.readouterr().err


@contextlib.contextmanager
def _proc(*_: Any, **__: Any) -> Iterator[Any]:
    """A started bench process, as far as `shapes` looks at one."""
    yield SimpleNamespace(url="http://127.0.0.1:1", probe_url=None)


def _patched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, gateway: Any, run_wrk: Any, window: Any,
    put: Any,
) -> Load:  # fmt: skip
    """`shapes` with no process, load or signer of its own; the load its sequences take."""
    monkeypatch.setattr(shapes.procs, "pinned", _proc)
    monkeypatch.setattr(shapes.procs, "fake_signer", _proc)
    monkeypatch.setattr(shapes.procs, "gateway", gateway)
    monkeypatch.setattr(shapes, "run_wrk", run_wrk)
    monkeypatch.setattr(shapes, "SteadyWindow", window)
    monkeypatch.setattr(shapes.httpx, "put", put)
    return Load(tmp_path / "dcc.json", BenchAuth(tmp_path / "jwks.json", "t"))


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
        def __init__(self, _gw: Any, *, settle: float, end: float, answered: Any) -> None:
            windows.append((settle, end))
            assert answered is None  # the gateway counts its own answers

        def figures(self) -> dict[str, Any]:
            return {"rps": 900.0, "cpu_us_per_request": 1000.0}

    def run_wrk(_url: str, _load: Any, *, connections: int, seconds: float, **_: Any) -> Any:
        loads.append((connections, seconds))
        return WrkResult(10, 1.0, 1, 2, 3, 4, 5, 1.0, 1.0, 1.0, 1.0, command="wrk")

    def put(url: str, *, json: dict[str, Any]) -> httpx.Response:
        puts.append(json)
        return httpx.Response(200, request=httpx.Request("PUT", url))

    load = _patched(monkeypatch, tmp_path, gateway=_proc, run_wrk=run_wrk, window=Window, put=put)
    rows = shapes.sequence("LS", load, tmp_path, pollers=False)
    assert puts == [{"latencyMs": 0.0}, {"latencyMs": 1000.0}]
    assert loads == [(64, 3), (64, 15.0), (1000, 20.0)]  # the warm-up, then L and S
    assert windows == [(2.0, 14.5), (4.0, 19.5)]
    assert [(w["shape"], w["server"], w["errors"]) for w in rows] == [
        ("L", "gateway", 15),
        ("S", "gateway", 15),
    ]
    assert [w["busy"] for w in rows] == [0.9, 0.9]  # 900 req/s at 1,000 µs each


def _ok(url: str, **_: Any) -> httpx.Response:
    return httpx.Response(200, request=httpx.Request("PUT", url))


def test_the_proxy_is_started_unbounded_and_counted_at_the_signer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K and P: 1,000 and 4,000 clients; the proxy's answers are the signer's get_credential oks."""
    started: list[tuple[str, dict[str, str]]] = []
    counted: list[float] = []
    loads: list[int] = []
    windows: list[tuple[float, float]] = []

    class Window:
        def __init__(self, _gw: Any, *, settle: float, end: float, answered: Any) -> None:
            counted.append(answered())
            windows.append((settle, end))

        def figures(self) -> dict[str, Any]:
            return {"rps": 2000.0, "cpu_us_per_request": 450.0}

    def run_wrk(_url: str, _load: Any, *, connections: int, **_: Any) -> Any:
        loads.append(connections)
        return WrkResult(10, 1.0, 0, 0, 0, 0, 0, 1.0, 1.0, 1.0, 1.0, command="wrk")

    def get(url: str, **_: Any) -> httpx.Response:
        stats = {"totals": {"get_credential": {"ok": 41, "cancelled": 2}, "issue": {"ok": 7}}}
        return httpx.Response(200, json=stats, request=httpx.Request("GET", url))

    @contextlib.contextmanager
    def app(_logs: Path, name: str, _factory: str, env: dict[str, str]) -> Iterator[Any]:
        started.append((name, env))
        yield SimpleNamespace(url="http://127.0.0.1:2", probe_url=None)

    def no_gateway(*_: Any, **__: Any) -> Any:
        raise AssertionError("the gateway must not start for a proxy sequence")

    load = _patched(
        monkeypatch, tmp_path, gateway=no_gateway, run_wrk=run_wrk, window=Window, put=_ok
    )
    monkeypatch.setattr(shapes.procs, "uvicorn_app", app)
    monkeypatch.setattr(shapes.httpx, "get", get)
    rows = shapes.sequence("KP", load, tmp_path, pollers=True, server="proxy")
    assert started == [
        (
            "passthrough",
            {"BENCH_SIGNER_URL": "http://127.0.0.1:1", "BENCH_PROXY_CONNECTIONS": "8192"},
        )
    ]
    assert loads == [64, 1000, 4000]  # the warm-up, then K and P
    assert counted == [41.0, 41.0]
    assert windows == [(2.0, 14.5), (5.0, 19.5)]  # 4,000 clients settle a second longer
    assert [(w["server"], w["busy"]) for w in rows] == [("proxy", 0.9), ("proxy", 0.9)]
