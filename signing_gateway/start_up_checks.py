"""What would stop the gateway from starting, found before anything starts: a line per problem.

`signing-gateway serve` and the factory that `uvicorn --factory` and each worker of `serve
--workers N` call (`app.create_served_app`) both check the settings here, so both report the
same problems in the same words (`settings_env.problems_report`) and exit with status 2 before
anything serves. Without the check, a file the settings name that cannot be used fails the
app's lifespan, once the server is up: one problem at a time, exit status 3, and a traceback
for the JWKS and audit files.
"""

from __future__ import annotations

from collections.abc import Iterable

from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.tracing_setup import (
    TracingUnavailableError,
    check_tracing_available,
)
from signing_gateway.security.files import JWKS_TLS, read_password_text, security_file_problems
from signing_gateway.security.tls_files import tls_problems
from signing_gateway.settings import Settings
from signing_gateway.settings_env import read_settings
from signing_gateway.trust_files import trust_file_problems, unreadable_file


def checked_settings(also_read: Iterable[str]) -> tuple[Settings | None, list[str]]:
    """The settings from the environment, or what is wrong with them (one line per problem).

    Includes what reading them cannot find: a `SIGNING_GATEWAY_*` variable that is neither a
    setting nor one of `also_read` (a misspelling is never read, and its setting keeps its
    default), and what only building or starting the app would find: tracing switched on
    where the `otel` extra is missing; no trust configured, or a trust file that cannot be
    read or holds no usable key; a JWKS file that cannot be read or parsed, an audit file
    that cannot be opened for appending, a TLS file a client cannot load (blocking file I/O:
    before serving only).
    """
    settings, problems = read_settings(also_read)
    if settings is None:
        return None, problems
    problems += start_up_problems(settings)
    return (None if problems else settings), problems


def start_up_problems(settings: Settings) -> list[str]:
    """What only building or starting the app would find wrong with `settings`, a line each.

    Tracing without the `otel` extra, the trust, and the JWKS, audit and TLS files the
    settings name (blocking file I/O: before serving only).
    """
    return (
        tracing_problems(settings)
        + trust_file_problems(settings.trust)
        + idemix_problems(settings)
        + tls_file_problems(settings)
        + security_file_problems(settings.auth, settings.audit)
    )


def idemix_problems(settings: Settings) -> list[str]:
    """In the idemix scheme, a line per issuer key file that cannot be read or parsed.

    The key files' module, and the key parser with it, is imported in that scheme only: the
    simulation scheme loads none of the Idemix code.
    """
    if settings.domestic_scheme != "idemix":
        return []
    from signing_gateway.idemix_key_files import idemix_key_problems  # noqa: PLC0415 - idemix only

    return idemix_key_problems(settings.idemix.keys)


def tls_file_problems(settings: Settings) -> list[str]:
    """What stops the TLS files the clients load at start-up from loading, a line each.

    Each signer's `ca_bundle`, `client_cert` and `client_key`, the JWKS URL's
    `jwks_ca_bundle`, and a Redis session store's TLS and password files: a file that does
    not exist, is not a regular file or cannot be read, or does not hold what it should
    (blocking file I/O). Without the check the start-up ended in
    the SSL module's traceback, exit status 3.
    """
    problems = []
    for group, signer in (
        ("EU_SIGNER", settings.eu_signer),
        ("DOMESTIC_SIGNER", settings.domestic_signer),
    ):
        problems += tls_problems(
            f"SIGNING_GATEWAY_{group}__", signer.ca_bundle, (signer.client_cert, signer.client_key)
        )
    auth = settings.auth
    if auth.mode != "disabled" and auth.jwks_file is None:  # the JWKS URL's client
        problems += tls_problems(JWKS_TLS, auth.jwks_ca_bundle, (None, None))
    return problems + session_store_file_problems(settings.session_store)


#: The prefix of the session store's settings in the environment.
SESSION_STORE = "SIGNING_GATEWAY_SESSION_STORE__"


def session_store_file_problems(store: SessionStoreSettings) -> list[str]:
    """What stops a Redis session store's files from loading: its TLS and password files.

    Only for `kind=redis`: files left set for a memory store are never opened. A password
    file that cannot be read, or is empty, would otherwise fail the lifespan (exit 3), or
    send an empty AUTH that every request then pays for in 503s.
    """
    if store.kind != "redis":
        return []
    problems = tls_problems(SESSION_STORE, store.ca_bundle, (store.client_cert, store.client_key))
    passwords = {
        "REDIS_PASSWORD_FILE": store.redis_password_file,
        "SENTINEL_PASSWORD_FILE": store.sentinel_password_file,
    }
    for name, path in passwords.items():
        if path is None:
            continue
        problem = unreadable_file(path)
        if problem is None:
            try:
                problem = None if read_password_text(path) else "is empty"
            except UnicodeDecodeError:
                problem = "is not UTF-8 text"
            except OSError as exc:
                problem = (exc.strerror or type(exc).__name__).lower()
        if problem is not None:
            problems.append(f"{SESSION_STORE}{name}: {problem}")
    return problems


def tracing_problems(settings: Settings) -> list[str]:
    """A line when `settings` switch tracing on where the `otel` extra is missing."""
    try:
        check_tracing_available(settings.observability)
    except TracingUnavailableError as exc:
        return [f"SIGNING_GATEWAY_OBSERVABILITY__TRACING_ENABLED: {exc}"]
    return []
