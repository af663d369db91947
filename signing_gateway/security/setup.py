"""Open what the security settings name at start-up: the token verifier, the audit trail.

A JWKS file or an audit file that cannot be used is named the same way before anything
starts (`serve` and the served factory: `security_file_problems`) and when the lifespan
opens it (a `SecurityFileError`, logged as one line): by its setting, never its path. The
check and the error are in `files`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit_trail import AuditTrail
from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.files import (
    AUDIT_FILE,
    JWKS_TLS,
    SecurityFileError,
    read_jwks_file,
    unwritable,
)
from signing_gateway.security.jwks import JwksError, KeySource, RemoteJwks, jwks_http_client
from signing_gateway.security.settings import AuditSettings, AuthSettings
from signing_gateway.security.tls_files import tls_problems
from signing_gateway.start_up import StartUpError

logger = logging.getLogger("signing_gateway.security")

_JWKS_URL = "SIGNING_GATEWAY_AUTH__JWKS_URL"


class JwksUnavailableError(StartUpError):
    """Raised when the first fetch from the JWKS URL fails; the gateway refuses to start.

    Its message names the setting and why, not the URL: one line, where a traceback would
    bury the reason.
    """


async def open_token_verifier(
    settings: AuthSettings, stack: AsyncExitStack
) -> TokenVerifier | None:
    """Load the JWKS (file in a thread, or URL with a refresher registered on `stack`).

    Raises:
        SecurityFileError: the JWKS file cannot be read or holds no usable key.
        JwksUnavailableError: the first fetch from the JWKS URL failed.
    """
    if settings.mode == "disabled":
        logger.warning(
            "caller authentication is disabled: every /v1 caller is trusted (local use only)"
        )
        return None
    source: KeySource
    if settings.jwks_file is not None:
        source = await asyncio.to_thread(read_jwks_file, settings.jwks_file)
    else:
        assert settings.jwks_url is not None  # noqa: S101 - settings validation guarantees one
        try:
            http = await asyncio.to_thread(
                jwks_http_client,
                ca_bundle=settings.jwks_ca_bundle,
                timeout=settings.jwks_fetch_timeout_seconds,
            )
        except OSError as exc:  # ssl.SSLError included: the CA bundle does not load
            problems = await asyncio.to_thread(
                tls_problems, JWKS_TLS, settings.jwks_ca_bundle, (None, None)
            )
            raise SecurityFileError(
                "; ".join(problems) or f"{JWKS_TLS}CA_BUNDLE: {type(exc).__name__}"
            ) from exc
        await stack.enter_async_context(http)
        remote = RemoteJwks(
            http,
            settings.jwks_url,
            refresh_interval=settings.jwks_refresh_interval_seconds,
            min_refresh_interval=settings.jwks_min_refresh_interval_seconds,
            fetch_timeout=settings.jwks_fetch_timeout_seconds,
        )
        try:
            await remote.start()
        except JwksError as exc:
            raise JwksUnavailableError(f"{_JWKS_URL}: {exc}") from exc
        stack.push_async_callback(remote.stop)
        source = remote
    return TokenVerifier(settings, source)


async def open_audit_trail(
    settings: AuditSettings, *, metrics: GatewayMetrics, cancellations_answered: bool
) -> AuditTrail:
    """The audit trail `settings` describe, its file (if any) opened in a thread.

    Raises:
        SecurityFileError: the file cannot be opened for appending.
    """
    try:
        return await AuditTrail.open(
            settings.file,
            metrics=metrics,
            fail_closed=settings.fail_closed,
            max_pending=settings.max_pending_writes,
            write_timeout=settings.write_timeout_seconds,
            cancellations_answered=cancellations_answered,
        )
    except OSError as exc:
        if settings.file is None:
            raise
        # Named as the check before start-up names it (here, a path the check did not see, or
        # one that changed since), falling back to the system's word for it.
        problem = await asyncio.to_thread(unwritable, settings.file)
        if problem is None:
            problem = (exc.strerror or type(exc).__name__).lower()
        raise SecurityFileError(f"{AUDIT_FILE}: {problem}") from exc
