"""The TLS client contexts that verify a server: the system's CAs, loaded once, or a CA bundle.

Loading the system's store takes ~35 ms and each context keeps its own copy of every
certificate. The clients that trust only the system's CAs (a signer's without a CA bundle or a
client certificate, the JWKS URL's without a CA bundle) share one context; a CA bundle or a
client certificate gets a context of its own, so nothing is ever loaded into the shared one.
httpx sets the same ALPN list (`http/1.1`) on it before each handshake.

Every such context checks certificates the same way on every Python the gateway runs on
(`VERIFY_FLAGS`): Python 3.13 made these checks its default, and before that a server's
certificate that 3.13 refuses was taken. A signer's or an identity provider's certificate is
then accepted or refused alike whichever Python runs the gateway (the image's or a newer one).
"""

from __future__ import annotations

import functools
import ssl

#: OpenSSL's strict X.509 checks (RFC 5280: a CA's certificate carries its key usage and key
#: identifier, one it signed names the CA's key identifier, ...), and any certificate in the
#: CA bundle, an intermediate CA's included, may end a chain (no need to add its root).
VERIFY_FLAGS = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN


def verifying_context(cafile: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server against `cafile` (None: the system's CAs)."""
    context = ssl.create_default_context(cafile=cafile)
    context.verify_flags |= VERIFY_FLAGS
    return context


@functools.cache
def system_trust_context() -> ssl.SSLContext:
    """The client context that verifies servers against the system's CAs (built on first use)."""
    return verifying_context()
