"""The system's CA store, loaded once per process for every client that trusts it alone.

Loading the store takes ~35 ms and each context keeps its own copy of every certificate. The
clients that trust only the system's CAs (a signer's without a CA bundle or a client
certificate, the JWKS URL's without a CA bundle) share one context; a CA bundle or a client
certificate gets a context of its own, so nothing is ever loaded into the shared one. httpx
sets the same ALPN list (`http/1.1`) on it before each handshake.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def system_trust_context() -> ssl.SSLContext:
    """The client context that verifies servers against the system's CAs (built on first use)."""
    return ssl.create_default_context()
