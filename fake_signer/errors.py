"""The expected failures of a fake signer: a request refused at the wire, a key that has ended."""

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


class KeyExpiredError(Exception):
    """Raised when the certificate a signing needs has ended while the fake runs.

    The signer's own state, not the request, is at fault, and no retry helps: rendered as a
    plain-text `500`, as a real signer whose HSM refuses an ended key would answer, and counted
    in `/_stats` as `key_expired`.
    """

    status = 500
    outcome = "key_expired"
