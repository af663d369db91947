"""TLS files a client loads at start-up (a CA bundle, a client certificate and its key), checked.

The signers', the session store's and the JWKS URL's clients load them when the gateway starts
(`tls_contexts.client_tls_context`); the SSL module then fails with a message that names no
setting. `tls_problems` says in the settings
report's words what is wrong with each file, named by its setting, never its path.
"""

from __future__ import annotations

import ssl
from os import PathLike
from pathlib import Path

from cryptography import x509

from signing_gateway.trust_files import unreadable_file


def tls_problems(
    prefix: str, ca_bundle: Path | None, client: tuple[Path | None, Path | None]
) -> list[str]:
    """The lines for one client's TLS files, each named `prefix` + its setting's name."""
    cert, key = client
    files = {"CA_BUNDLE": ca_bundle, "CLIENT_CERT": cert, "CLIENT_KEY": key}
    problems = [
        f"{prefix}{name}: {problem}"
        for name, path in files.items()
        if path is not None and (problem := unreadable_file(path)) is not None
    ]
    if problems or (ca_bundle is None and cert is None):
        return problems  # the system's CAs alone: nothing of the settings' to load
    try:
        context = ssl.create_default_context(cafile=None if ca_bundle is None else str(ca_bundle))
    except OSError as exc:  # ssl.SSLError included
        return [f"{prefix}CA_BUNDLE: {_tls_reason(exc, 'holds no PEM CA certificate')}"]
    if cert is None or key is None:
        return []
    problem = _client_cert_problem(prefix, context, (cert, key))
    return [] if problem is None else [problem]


def _client_cert_problem(
    prefix: str, context: ssl.SSLContext, client: tuple[Path, Path]
) -> str | None:
    """The line saying why the client certificate and its key do not load into `context`."""
    cert, key = client
    try:
        load_client_certificate(context, cert, key)
    except EncryptedKeyError:
        return f"{prefix}CLIENT_KEY: is encrypted; give the key without a password"
    except OSError as exc:
        if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
            return f"{prefix}CLIENT_KEY: is not the key of {prefix}CLIENT_CERT"
        if not _holds_a_certificate(cert):
            return f"{prefix}CLIENT_CERT: {_tls_reason(exc, 'holds no PEM certificate')}"
        return f"{prefix}CLIENT_KEY: {_tls_reason(exc, 'holds no PEM private key')}"
    return None


def load_client_certificate(
    context: ssl.SSLContext,
    cert: str | PathLike[str],
    key: str | PathLike[str] | None,
    *,
    password: str | None = None,
) -> None:
    """Load a client certificate and its key into `context`, never asking for a password.

    No key takes a password (no setting gives one; `password` is for a caller that has one),
    and OpenSSL prompts on the terminal for an encrypted key when no callback is given (with
    no terminal, it reads the process's stdin): a start-up would wait there. `key` None: the
    certificate's file holds the key too. Raises `EncryptedKeyError` (a ValueError) for an
    encrypted key without `password`, OSError otherwise.
    """
    context.load_cert_chain(cert, key, password=_no_password if password is None else password)


def _tls_reason(exc: OSError, malformed: str) -> str:
    """`malformed` for what the SSL module refused, else the OS's word for it."""
    if isinstance(exc, ssl.SSLError):
        return malformed
    return (exc.strerror or type(exc).__name__).lower()


class EncryptedKeyError(ValueError):
    """The client key asked for a password."""


def _no_password() -> bytes:
    raise EncryptedKeyError


def _holds_a_certificate(path: Path) -> bool:
    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True
