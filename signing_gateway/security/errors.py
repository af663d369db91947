"""Security failures as gateway errors, rendered as problem+json by api/problems.py.

The tree::

    GatewayError
    ├── AuthenticationFailed     401  no, malformed, expired or unverifiable bearer token, or one
                                      of a type not accepted
    ├── PermissionDenied         403  a valid token without the scope the route needs
    └── AuditUnavailable         503  the audit record could not be written; nothing released

`reason` is a short, bounded slug for logs and metrics; the caller sees it only as the
RFC 6750 `error` code in `WWW-Authenticate`, never the token or its claims.
"""

from __future__ import annotations

from typing import Literal, get_args

from signing_gateway.errors import GatewayError

REALM = "signing-gateway"

#: Why a bearer token is refused (401): the `reason` of `AuthenticationFailed`.
TokenRefusal = Literal[
    "missing",
    "malformed",
    "algorithm",
    "unknown-key",
    "bad-signature",
    "expired",
    "not-yet-valid",
    "wrong-audience",
    "wrong-issuer",
    "wrong-type",
    "missing-claim",
    "no-keys",
    "invalid",
]
#: The reasons `gateway_auth_failures_total` counts: a token's, and a missing scope's (403).
AUTH_FAILURE_REASONS: tuple[str, ...] = (*get_args(TokenRefusal), "insufficient-scope")


class AuthenticationFailed(GatewayError):
    """Raised when a /v1 request carries no valid bearer token."""

    status = 401
    slug = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str, *, reason: TokenRefusal) -> None:
        """Keep the bounded `reason` slug ("missing", "expired", ...)."""
        super().__init__(detail)
        self.reason: TokenRefusal = reason

    def headers(self) -> dict[str, str]:
        """RFC 6750: no error code when no token was sent, else `invalid_token`."""
        if self.reason == "missing":
            return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        return {
            "WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", '
            f'error_description="{self.detail}"'
        }


class PermissionDenied(GatewayError):
    """Raised when a valid token lacks a scope the route needs."""

    status = 403
    slug = "forbidden"
    title = "Permission denied"

    def __init__(self, missing: list[str], *, any_of: bool = False) -> None:
        """Name the missing scopes (public names, not secrets): all of them, or one `any_of`."""
        needed = "one of the scopes" if any_of else "the scope(s)"
        super().__init__(f"the token lacks {needed}: {' '.join(missing)}")
        self.missing = missing

    def headers(self) -> dict[str, str]:
        """RFC 6750 `insufficient_scope`, listing what is needed."""
        return {
            "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
            f'scope="{" ".join(self.missing)}"'
        }


class AuditUnavailable(GatewayError):
    """Raised when an issuance's audit record cannot be written and audit fails closed."""

    status = 503
    slug = "audit-unavailable"
    title = "Audit trail unavailable"

    def headers(self) -> dict[str, str]:
        """Ask the caller to come back; the audit sink may recover."""
        return {"Retry-After": "5"}
