"""The one error the verification layer raises."""

from __future__ import annotations

__all__ = ["CredentialVerificationError"]


class CredentialVerificationError(Exception):
    """Raised when a credential a signer returned must not be released.

    ``reason`` is a short, stable, machine-friendly slug (``"bad-signature"``,
    ``"unknown-kid"``, ``"payload-mismatch"``, ...) fit for metrics labels and logs; ``detail``
    adds a human hint and never carries personal data from the credential.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        """Keep the reason slug and an optional hint."""
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
