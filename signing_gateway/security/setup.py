"""Build the token verifier at start-up from `auth` settings (None when auth is disabled)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.jwks import KeySource, RemoteJwks, StaticJwks, jwks_http_client
from signing_gateway.security.settings import AuthSettings

logger = logging.getLogger("signing_gateway.security")


async def open_token_verifier(
    settings: AuthSettings, stack: AsyncExitStack
) -> TokenVerifier | None:
    """Load the JWKS (file in a thread, or URL with a refresher registered on `stack`)."""
    if settings.mode == "disabled":
        logger.warning(
            "caller authentication is disabled: every /v1 caller is trusted (local use only)"
        )
        return None
    source: KeySource
    if settings.jwks_file is not None:
        source = await asyncio.to_thread(StaticJwks.read, settings.jwks_file)
    else:
        assert settings.jwks_url is not None  # noqa: S101 - settings validation guarantees one
        http = await asyncio.to_thread(
            jwks_http_client,
            ca_bundle=settings.jwks_ca_bundle,
            timeout=settings.jwks_fetch_timeout_seconds,
        )
        await stack.enter_async_context(http)
        remote = RemoteJwks(
            http,
            settings.jwks_url,
            refresh_interval=settings.jwks_refresh_interval_seconds,
            min_refresh_interval=settings.jwks_min_refresh_interval_seconds,
            fetch_timeout=settings.jwks_fetch_timeout_seconds,
        )
        await remote.start()
        stack.push_async_callback(remote.stop)
        source = remote
    return TokenVerifier(settings, source)
