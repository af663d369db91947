"""Build the token verifier at start-up from `auth` settings (None when auth is disabled)."""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AsyncExitStack
from pathlib import Path

from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.jwks import (
    JwksError,
    KeySource,
    RemoteJwks,
    StaticJwks,
    jwks_http_client,
)
from signing_gateway.security.settings import AuditSettings, AuthSettings
from signing_gateway.trust_loading import unreadable_file

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


def security_file_problems(auth: AuthSettings, audit: AuditSettings) -> list[str]:
    """What stops the JWKS file or the audit file from opening at start-up, a line each.

    Blocking file I/O, for `serve`'s check before it starts: without it the lifespan fails
    with a traceback and exit status 3. The paths are not repeated, as for every setting.
    """
    problems = []
    if auth.mode != "disabled" and auth.jwks_file is not None:
        problem = unreadable_file(auth.jwks_file)
        if problem is None:
            try:
                StaticJwks.read(auth.jwks_file)
            except JwksError as exc:
                # A read error's message names the path; the settings' lines never do.
                problem = "cannot be read" if isinstance(exc.__cause__, OSError) else str(exc)
        if problem is not None:
            problems.append(f"SIGNING_GATEWAY_AUTH__JWKS_FILE: {problem}")
    if audit.file is not None:
        problem = _unwritable(audit.file)
        if problem is not None:
            problems.append(f"SIGNING_GATEWAY_AUDIT__FILE: {problem}")
    return problems


def _unwritable(path: Path) -> str | None:
    """Why the audit file at `path` cannot be opened for appending (None: it can)."""
    if path.exists():
        if not path.is_file():
            return "not a regular file"
        return None if os.access(path, os.W_OK) else "not writable by this process"
    if not path.parent.is_dir():
        return "its directory does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its directory is not writable by this process"
    return None
