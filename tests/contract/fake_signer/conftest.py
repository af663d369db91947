"""Fixtures for contract tests against real fake-signer processes on free ports."""

from __future__ import annotations

import httpx
import pytest

from tests.contract.fake_signer.signer_wire import DEFAULT_CONTROL
from tests.support.fake_signer_process import (
    FakeSignerProcess,
    running_fake_signer,
    start_fake_signer,
)


def reset(signer: FakeSignerProcess) -> None:
    """Put a shared signer back to its default behaviour with zeroed stats."""
    with httpx.Client(base_url=signer.base_url, timeout=5) as client:
        client.put("/_control", json=DEFAULT_CONTROL).raise_for_status()
        client.post("/_stats/reset").raise_for_status()


@pytest.fixture(scope="module")
def shared_signer():
    """One fake signer (role all) per test module: starting a process costs about a second."""
    with running_fake_signer("--role", "all") as signer:
        yield signer


@pytest.fixture
def signer(shared_signer):
    """The module's fake signer, reset to default behaviour and zeroed stats."""
    reset(shared_signer)
    return shared_signer


@pytest.fixture
async def client(signer):
    """An HTTP client on the module's fake signer."""
    async with httpx.AsyncClient(base_url=signer.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def fake_signer_factory():
    """Start dedicated fake signers with given CLI options; all are stopped after the test."""
    started: list[FakeSignerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> FakeSignerProcess:
        process = start_fake_signer(*args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
