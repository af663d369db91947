"""Fixtures for the signer client tests: clients on both transports, respx routers."""

from __future__ import annotations

import pytest
import respx

from signing_gateway.signers.http import build_signer_client

BASE_URL = "http://signer.test"


@pytest.fixture(params=["httpx", "aiohttp"])
def transport(request):
    """Run the test once per supported transport."""
    return request.param


@pytest.fixture
async def http(transport):
    """A signer client on the chosen transport, closed after the test."""
    client = build_signer_client(
        BASE_URL,
        connect_timeout=1.0,
        read_timeout=1.0,
        write_timeout=1.0,
        pool_timeout=1.0,
        max_connections=4,
        transport=transport,
    )
    async with client:
        yield client


@pytest.fixture
def router():
    """Mock signers with respx at the httpx client level, so every transport is intercepted."""
    with respx.mock(using="httpx", base_url=BASE_URL, assert_all_called=False) as mock:
        yield mock
