"""Load the keys that verify signer output, at start-up, from files or from the signers.

`load_trust` loads the configured files, or fetches the keys from the signers, when the
gateway starts. What is wrong with the files is found before that, without starting anything,
by `trust_files.trust_file_problems` (`serve` reports it with the other settings problems,
exit status 2).
"""

from __future__ import annotations

import asyncio
import logging

from signing_gateway.settings import TrustSettings
from signing_gateway.signers.domestic import DomesticSignerClient
from signing_gateway.signers.errors import SignerError, SignerMalformedResponseError
from signing_gateway.signers.eu import EuSignerClient
from signing_gateway.start_up import StartUpError
from signing_gateway.trust_files import NO_TRUST, trust_file_problems, unreadable_file
from signing_gateway.verification.trust import (
    DomesticTrustStore,
    EuTrustStore,
    KeySet,
    TrustConfigError,
)

logger = logging.getLogger(__name__)


class TrustUnavailableError(StartUpError):
    """Raised at start-up when no keys could be loaded; the gateway refuses to start."""


def _load_files(settings: TrustSettings) -> tuple[EuTrustStore, DomesticTrustStore]:
    """The trust stores of the configured files (blocking file I/O: start-up only).

    Each file is parsed once when all are usable; only when one is not are they gone through
    again, a file at a time, for the error that names each unusable one (`trust_file_problems`).
    """
    paths = [*settings.eu_certificates, *settings.domestic_keys]
    # Checked without opening first: reading a FIFO, say, would wait for a writer for ever.
    if not any(unreadable_file(path) for path in paths):
        try:
            return (
                EuTrustStore.from_files(settings.eu_certificates),
                DomesticTrustStore.from_files(settings.domestic_keys),
            )
        except (TrustConfigError, OSError):
            pass  # named below
    problems = trust_file_problems(settings) or [
        # All usable by the time they were gone through again: one changed in between.
        "SIGNING_GATEWAY_TRUST: a trust file changed while it was being loaded; start again"
    ]
    raise TrustUnavailableError("; ".join(problems))


_REFETCH_AFTER = 0.25  # seconds between a refused key fetch and the next


async def _fetch(client: EuSignerClient | DomesticSignerClient, *, wait: float) -> KeySet:
    """The signer's keys, asked for again until `wait` seconds have passed.

    The wait bounds the attempts too: a signer that accepts the connection and never answers
    is given up on when the wait ends, not a read timeout later. An answer that came whole
    and cannot be read as keys (not JSON, not the document, key material that does not parse)
    ends the start-up at once: a signer still starting refuses or fails its calls, it does not
    publish a broken document that asking again would mend.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait

    def gave_up(why: object) -> TrustUnavailableError:
        return TrustUnavailableError(
            f"could not fetch keys from the {client.name} signer within {wait:g} s "
            f"(SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS): {why}"
        )

    while True:
        attempt = asyncio.timeout_at(deadline)
        try:
            async with attempt:
                return await client.fetch_keys()
        except TimeoutError as exc:
            if not attempt.expired():
                raise
            raise gave_up("no answer yet") from exc
        except SignerMalformedResponseError as exc:
            raise TrustUnavailableError(
                f"the {client.name} signer's keys cannot be read "
                f"(SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS): {exc}"
            ) from exc
        except SignerError as exc:
            if loop.time() + _REFETCH_AFTER >= deadline:
                raise gave_up(exc) from exc
            await asyncio.sleep(_REFETCH_AFTER)


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
        eu, domestic = await asyncio.to_thread(_load_files, settings)
    if len(eu) == 0 and len(domestic) == 0:
        raise TrustUnavailableError(
            "the signers published no keys (SIGNING_GATEWAY_TRUST__FETCH_FROM_SIGNERS)"
            if settings.fetch_from_signers
            else NO_TRUST
        )
    logger.info("trust loaded", extra={"eu_certificates": len(eu), "domestic_keys": len(domestic)})
    return eu, domestic
