"""Fixtures for in-process gateway tests with respx-mocked signers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from tests.api.signer_mocks import MockedSigners, mock_signers
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    make_test_keys,
    running_gateway,
)
from tests.support.logs import logged_as_written


@pytest.fixture(scope="session")
def test_keys(tmp_path_factory: pytest.TempPathFactory) -> SignerKeys:
    """Signer keys shared by the whole session (key generation is the slow part)."""
    return make_test_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def signers() -> Iterator[respx.MockRouter]:
    """Mock both signers at the httpx level; unmocked signer calls fail the test.

    The probe routes are named `eu_health` and `domestic_health` so a test can break them.
    """
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        # The test client talks to the in-process app through httpx too: let it through.
        mock.route(host="gateway.test").pass_through()
        mock.get(f"{EU_SIGNER_URL}/healthz", name="eu_health").respond(200, json={"status": "ok"})
        mock.get(f"{DOMESTIC_SIGNER_URL}/healthz", name="domestic_health").respond(
            200, json={"status": "ok"}
        )
        yield mock


@pytest.fixture
def mocked(signers: respx.MockRouter, test_keys: SignerKeys) -> MockedSigners:
    """Every signing endpoint answering correctly (signed with the test keys)."""
    return mock_signers(signers, test_keys)


@pytest.fixture
async def gateway(
    test_keys: SignerKeys, signers: respx.MockRouter
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway whose signers are the respx mocks."""
    async with running_gateway(make_settings(test_keys)) as client:
        yield client


@pytest.fixture
def json_log() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every record, rendered by the gateway's JSON formatter, parsed back (root at INFO)."""
    with logged_as_written() as written:
        yield written
