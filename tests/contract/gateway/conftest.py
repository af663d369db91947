"""Fixtures: two real fake signers (EU, domestic) and a real gateway process in front of them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    gateway_env,
    running_gateway_process,
)
from tests.support.fake_signer_process import FakeSignerProcess, running_fake_signer

DEFAULT_CONTROL = {"latencyMs": 0, "jitterMs": 0, "capacity": None, "errorRate": 0, "fault": None}


@pytest.fixture(scope="session")
def eu_signer() -> Iterator[FakeSignerProcess]:
    """A fake EU signer process for the whole session."""
    with running_fake_signer("--role", "eu") as signer:
        yield signer


@pytest.fixture(scope="session")
def domestic_signer() -> Iterator[FakeSignerProcess]:
    """A fake domestic signer process for the whole session."""
    with running_fake_signer("--role", "domestic") as signer:
        yield signer


@pytest.fixture(scope="module")
def idemix_signer() -> Iterator[FakeSignerProcess]:
    """A fake domestic signer in the idemix scheme for the module."""
    with running_fake_signer("--role", "domestic", "--domestic-scheme", "idemix") as signer:
        yield signer


@pytest.fixture(scope="session")
def gateway_process(
    eu_signer: FakeSignerProcess, domestic_signer: FakeSignerProcess
) -> Iterator[GatewayProcess]:
    """`python -m signing_gateway serve` on a free port, trusting the fakes' published keys."""
    with running_gateway_process(gateway_env(eu_signer.base_url, domestic_signer.base_url)) as gw:
        yield gw


def set_control(signer: FakeSignerProcess, **control: object) -> None:
    """Change a fake signer's behaviour (PUT /_control)."""
    response = httpx.put(f"{signer.base_url}/_control", json=control, timeout=5)
    response.raise_for_status()


@pytest.fixture
def fakes(
    eu_signer: FakeSignerProcess, domestic_signer: FakeSignerProcess
) -> Iterator[tuple[FakeSignerProcess, FakeSignerProcess]]:
    """Both fakes at default behaviour for the test, and put back afterwards."""
    for signer in (eu_signer, domestic_signer):
        set_control(signer, **DEFAULT_CONTROL)
    yield eu_signer, domestic_signer
    for signer in (eu_signer, domestic_signer):
        set_control(signer, **DEFAULT_CONTROL)


@pytest.fixture
def gateway_url(gateway_process: GatewayProcess, fakes) -> str:
    """Base URL of the running gateway (fakes reset for the test)."""
    return gateway_process.base_url
