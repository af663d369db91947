"""`signing-gateway demo` once its settings pass: its fake signers and its smoke requests."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from signing_gateway import demo
from tests.contract.gateway.gateway_process import free_port

#: httpx's own client, before a test puts its stand-in in its place.
_CLIENT = httpx.Client


def _answering(monkeypatch: pytest.MonkeyPatch, statuses: dict[str, int]) -> list[str]:
    """Make `demo`'s client answer each path with its status (200 if not given); paths asked."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(statuses.get(request.url.path, 200), text="refused")

    def mocked(**kwargs: Any) -> httpx.Client:
        return _CLIENT(transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(demo.httpx, "Client", mocked)
    return asked


def test_a_smoke_run_is_0_only_when_every_example_is_answered_200(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pin the smoke run's status: one answer not 200 makes it 1, and its body is shown."""
    asked = _answering(monkeypatch, {})
    assert demo._smoke("http://127.0.0.1:9", "token") == 0
    assert asked == [path for _, path, _ in demo.demo_requests()]
    capsys.readouterr()
    _answering(monkeypatch, {"/readyz": 503})
    assert demo._smoke("http://127.0.0.1:9", "token") == 1
    assert "GET /readyz -> 503\nrefused\n" in capsys.readouterr().out


def test_a_fake_signer_that_exits_is_named_at_once_with_its_status() -> None:
    """Pin that the demo does not wait out the 20 s for a fake signer that has ended."""
    ended = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
    ended.wait(timeout=30)
    began = time.monotonic()
    with pytest.raises(SystemExit, match=r"^fake signer exited early with code 4$"):
        demo._wait_healthy(f"http://127.0.0.1:{free_port()}", ended)
    assert time.monotonic() - began < 5


class _FailingServer:
    """Stands in for a `uvicorn.Server` whose start-up fails: `run` ends, never started.

    (uvicorn's `run` raises SystemExit(3) there, which ends only the thread it runs in.)
    """

    started = False
    should_exit = False

    def run(self) -> None:
        return


def test_a_smoke_run_whose_gateway_fails_to_start_ends_at_once_with_status_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No request is sent, the status is uvicorn's for a failed start-up, and it comes at once.

    Before, the smoke run waited out its 30 s for the server to start, then sent the examples
    to a port nothing listened on and ended in httpx's ConnectError traceback, status 1.
    """
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(demo, "_smoke", lambda base, token: sent.append((base, token)) or 0)
    began = time.monotonic()
    status = demo._run_smoke(_FailingServer(), "http://127.0.0.1:9", "token")  # type: ignore[arg-type]
    assert (status, sent) == (3, [])
    assert time.monotonic() - began < 5
    assert capsys.readouterr().err == (
        "signing-gateway demo: the gateway did not start; no request sent\n"
    )
