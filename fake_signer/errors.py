"""The one expected failure of a fake signer: a request it refuses at the wire level."""

from __future__ import annotations


class WireInputError(ValueError):
    """Raised when a request body or header breaks the signer's wire contract.

    Rendered as a plain-text response with `status` (400 unless said otherwise), as the real
    signers answer errors.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        """Keep the message for the response body and the status to answer with."""
        super().__init__(message)
        self.status = status
