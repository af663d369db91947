"""The TLS context a client connects with: the server's CAs and the gateway's own certificate.

One builder for every client that loads TLS files: the signers' (`signers.http`), the Redis
session store's (`issuance.redis_stokens`) and the JWKS URL's (`security.jwks`). Each gets:

- the server's certificate verified strictly, and its name checked against the host
  (`runtime.system_trust.verifying_context`), against the CA bundle or the system's CAs;
- with neither a CA bundle nor a client certificate, the one context shared by every client
  that trusts the system's CAs alone (nothing is ever loaded into it);
- a client certificate loaded without ever asking for its key's password
  (`tls_files.load_client_certificate`): OpenSSL would otherwise ask on the terminal, or read
  the process's stdin, and the event loop of a start-up would wait there.

Building reads files: call it at start-up, off the event loop.
"""

from __future__ import annotations

import ssl
from os import PathLike
from typing import TypeAlias

from signing_gateway.runtime.system_trust import system_trust_context, verifying_context
from signing_gateway.security.tls_files import load_client_certificate

#: A file's path, as the settings (a `Path`) or a library's options (a `str`) give it.
TlsFile: TypeAlias = str | PathLike[str]


def client_tls_context(
    *,
    ca_bundle: TlsFile | None = None,
    client_cert: TlsFile | None = None,
    client_key: TlsFile | None = None,
    key_password: str | None = None,
    verify_server: bool = True,
) -> ssl.SSLContext:
    """The client context that verifies the server against `ca_bundle` and shows `client_cert`.

    Args:
        ca_bundle: PEM CAs that may issue the server's certificate; None: the system's CAs.
        client_cert: PEM certificate for mutual TLS; with no `client_key`, the file holds the
            key as well.
        client_key: PEM key of `client_cert`.
        key_password: The key's password, where a caller has one (no setting gives one).
            Without it an encrypted key is refused, never asked for.
        verify_server: False checks neither the server's certificate nor its name (for a
            caller's own tests; no setting turns the check off).

    Raises:
        EncryptedKeyError: (a ValueError) the key is encrypted and no password was given.
        OSError: a file that cannot be read, or does not hold what it should (ssl.SSLError).
        ValueError: a CA bundle given with `verify_server=False`.
    """
    if not verify_server:
        if ca_bundle is not None:
            raise ValueError("a CA bundle is for verifying the server")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_bundle is None and client_cert is None:
        return system_trust_context()
    else:
        context = verifying_context(None if ca_bundle is None else str(ca_bundle))
    if client_cert is not None:
        load_client_certificate(context, client_cert, client_key, password=key_password)
    return context
