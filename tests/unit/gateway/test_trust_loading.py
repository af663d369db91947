"""Fetching signer keys at start-up: a signer that gives up stops the fetch from the other."""

from __future__ import annotations

import asyncio

import pytest

from signing_gateway.settings import TrustSettings
from signing_gateway.signers.errors import SignerConnectError
from signing_gateway.trust_loading import TrustUnavailableError, load_trust


class _Signer:
    """A signer client whose key fetch fails, at once or after `delay` seconds."""

    def __init__(self, name: str, delay: float) -> None:
        self.name, self.delay, self.calls = name, delay, 0

    async def fetch_keys(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)  # a slow attempt, as a read timeout would be
        raise SignerConnectError("refused", signer=self.name, endpoint="keys")


async def test_a_failed_fetch_leaves_no_fetch_running():
    """When one signer gives up, start-up fails and the other signer's fetch is cancelled."""
    eu, domestic = _Signer("eu", 0.0), _Signer("domestic", 1.0)
    with pytest.raises(TrustUnavailableError):
        await load_trust(
            TrustSettings(fetch_from_signers=True),
            eu_client=eu,  # type: ignore[arg-type]
            domestic_client=domestic,  # type: ignore[arg-type]
            wait_for_signers=0.3,
        )
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    calls = domestic.calls
    await asyncio.sleep(1.2)
    assert domestic.calls == calls  # nothing asks the domestic signer any more
