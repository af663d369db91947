"""Open what the security settings name at start-up: the token verifier, the audit trail.

A JWKS file or an audit file that cannot be used is named the same way before anything
starts (`serve` and the served factory: `security_file_problems`) and when the lifespan
opens it (a `SecurityFileError`, logged as one line): by its setting, never its path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from contextlib import AsyncExitStack
from pathlib import Path

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security.audit_trail import AuditTrail
from signing_gateway.security.auth import TokenVerifier
from signing_gateway.security.jwks import (
    JwksError,
    KeySource,
    RemoteJwks,
    StaticJwks,
    jwks_http_client,
)
from signing_gateway.security.settings import AuditSettings, AuthSettings
from signing_gateway.security.tls_files import tls_problems
from signing_gateway.start_up import StartUpError
from signing_gateway.trust_loading import unreadable_file

logger = logging.getLogger("signing_gateway.security")

_JWKS_FILE = "SIGNING_GATEWAY_AUTH__JWKS_FILE"
_JWKS_URL = "SIGNING_GATEWAY_AUTH__JWKS_URL"
_AUDIT_FILE = "SIGNING_GATEWAY_AUDIT__FILE"
#: The JWKS URL client's TLS settings, less their names' last part (`CA_BUNDLE`).
JWKS_TLS = "SIGNING_GATEWAY_AUTH__JWKS_"


class SecurityFileError(StartUpError):
    """Raised when the JWKS file or the audit file cannot be used; the gateway refuses to start.

    Its message is one line of the settings report: the variable and what is wrong.
    """


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


def read_jwks_file(path: Path) -> StaticJwks:
    """The keys of the JWKS file at `path` (blocking file I/O: start-up only).

    Raises:
        SecurityFileError: the file cannot be read or holds no usable key.
    """
    # Checked without opening first: reading a FIFO, say, would wait for a writer for ever.
    problem = unreadable_file(path)
    if problem is None:
        try:
            return StaticJwks.read(path)
        except JwksError as exc:
            # A read error's message names the path; the settings' lines never do.
            problem = "cannot be read" if isinstance(exc.__cause__, OSError) else str(exc)
    raise SecurityFileError(f"{_JWKS_FILE}: {problem}")


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
        problem = await asyncio.to_thread(_unwritable, settings.file)
        if problem is None:
            problem = (exc.strerror or type(exc).__name__).lower()
        raise SecurityFileError(f"{_AUDIT_FILE}: {problem}") from exc


def security_file_problems(auth: AuthSettings, audit: AuditSettings) -> list[str]:
    """What stops the JWKS file or the audit file from opening at start-up, a line each.

    Blocking file I/O, for the check before anything starts (`start_up_checks`): without it
    the lifespan fails at the first of them, once the server is up, with exit status 3. The
    paths are not repeated, as for every setting.
    """
    problems = []
    if auth.mode != "disabled" and auth.jwks_file is not None:
        try:
            read_jwks_file(auth.jwks_file)
        except SecurityFileError as exc:
            problems.append(str(exc))
    if audit.file is not None:
        problem = _unwritable(audit.file)
        if problem is not None:
            problems.append(f"{_AUDIT_FILE}: {problem}")
    return problems


def _unwritable(path: Path) -> str | None:
    """Why the audit file at `path` cannot be opened for appending (None: it can).

    A path that cannot be looked up (a directory on the way this process may not search) is
    named by the OS's word for it, as a key file's is (`unreadable_file`): `Path.exists`
    raised there, and the check ended in a traceback instead of its lines.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        return (exc.strerror or type(exc).__name__).lower()
    else:
        if not stat.S_ISREG(mode):
            return "not a regular file"
        return None if os.access(path, os.W_OK) else "not writable by this process"
    try:
        directory = stat.S_ISDIR(path.parent.stat().st_mode)
    except OSError:
        directory = False
    if not directory:
        return "its directory does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return "its directory is not writable by this process"
    return None
