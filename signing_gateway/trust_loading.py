"""Load the keys that verify signer output, at start-up, from files or from the signers."""

from __future__ import annotations

import asyncio
import logging
import time

from signing_gateway.settings import TrustSettings
from signing_gateway.signers.domestic import DomesticSignerClient
from signing_gateway.signers.errors import SignerError
from signing_gateway.signers.eu import EuSignerClient
from signing_gateway.verification.trust import DomesticTrustStore, EuTrustStore, KeySet

logger = logging.getLogger(__name__)


class TrustUnavailableError(RuntimeError):
    """Raised at start-up when no keys could be loaded; the gateway refuses to start."""


async def _fetch(client: EuSignerClient | DomesticSignerClient, *, wait: float) -> KeySet:
    deadline = time.monotonic() + wait
    while True:
        try:
            return await client.fetch_keys()
        except SignerError as exc:
            if time.monotonic() >= deadline:
                raise TrustUnavailableError(
                    f"could not fetch keys from the {exc.signer} signer"
                ) from exc
            await asyncio.sleep(0.25)


async def load_trust(
    settings: TrustSettings,
    *,
    eu_client: EuSignerClient,
    domestic_client: DomesticSignerClient,
    wait_for_signers: float = 30.0,
) -> tuple[EuTrustStore, DomesticTrustStore]:
    """The EU and domestic trust stores the gateway verifies against."""
    if settings.fetch_from_signers:
        fetches = [
            asyncio.create_task(_fetch(client, wait=wait_for_signers))
            for client in (eu_client, domestic_client)
        ]
        try:
            eu_keys, domestic_keys = await asyncio.gather(*fetches)
        except BaseException:
            # One signer gave up (or start-up was cancelled): stop asking the other, whose
            # client the failed start-up is about to close.
            for fetch in fetches:
                fetch.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)
            raise
        eu, domestic = eu_keys.eu, domestic_keys.domestic
    else:
        eu = await asyncio.to_thread(EuTrustStore.from_files, settings.eu_certificates)
        domestic = await asyncio.to_thread(DomesticTrustStore.from_files, settings.domestic_keys)
    if len(eu) == 0 and len(domestic) == 0:
        raise TrustUnavailableError(
            "no signer keys configured: set trust.eu_certificates / trust.domestic_keys"
        )
    logger.info("trust loaded", extra={"eu_certificates": len(eu), "domestic_keys": len(domestic)})
    return eu, domestic
