"""A local token issuer for the demo and tests: one ES256 key, its JWKS, signed tokens.

Production tokens come from the identity provider; this exists so `signing-gateway demo`
can run with authentication on, and tests can mint tokens with any claims.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


@dataclass
class LocalTokenIssuer:
    """Signs caller tokens with a fresh P-256 key (generated on construction)."""

    issuer: str
    audience: str
    kid: str = "local-1"
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def jwks(self) -> dict[str, Any]:
        """The public JWKS the gateway verifies these tokens against."""
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "alg": "ES256", "use": "sig"}]}

    def mint(
        self,
        *,
        subject: str = "demo-client",
        scopes: list[str] | None = None,
        ttl_seconds: int = 3600,
        now: float | None = None,
        header_typ: str | None = "JWT",
        **claims: Any,  # noqa: ANN401 - extra or overriding claims, any JSON value
    ) -> str:
        """A signed token for `subject` with `scopes`, valid `ttl_seconds` from `now`.

        `header_typ` is the header's `typ` (`at+jwt` for an RFC 9068 access token); None
        leaves it out.
        """
        issued = int(now if now is not None else time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "scope": " ".join(scopes or []),
            **claims,
        }
        # PyJWT writes `typ: JWT` unless told otherwise, and leaves out a `typ` given as None.
        headers = {"kid": self.kid, "typ": header_typ}
        return jwt.encode(payload, self.key, algorithm="ES256", headers=headers)
