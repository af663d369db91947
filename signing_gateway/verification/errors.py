"""The one error the verification layer raises, and the reasons it gives."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "DOMESTIC_VERIFICATION_FAILURES",
    "EU_VERIFICATION_FAILURES",
    "CommitmentProofError",
    "CredentialVerificationError",
    "DomesticVerificationFailure",
    "EuVerificationFailure",
    "VerificationFailure",
]

#: Why an EU credential (HC1) fails verification (verification/hcert.py, cbor.py).
EuVerificationFailure = Literal[
    "decode-failed",
    "too-large",
    "bad-signature",
    "unsupported-alg",
    "unknown-kid",
    "alg-mismatch",
    "key-usage-mismatch",
    "certificate-not-valid",
    "iss-mismatch",
    "payload-mismatch",
    "exp-mismatch",
    "exp-beyond-certificate",
    "iat-out-of-range",
    "proof-identifier-mismatch",
]
#: Why a domestic credential (static QR, issued signatures) fails (verification/domestic.py).
DomesticVerificationFailure = Literal[
    "decode-failed",
    "too-large",
    "bad-signature",
    "unknown-kid",
    "payload-mismatch",
    "proof-identifier-mismatch",
    "count-mismatch",
    "nonce-mismatch",
    "kid-mismatch",
]
VerificationFailure = EuVerificationFailure | DomesticVerificationFailure

#: The reasons as values: the `reason` labels of each signer's verification-failure counter.
EU_VERIFICATION_FAILURES: tuple[str, ...] = get_args(EuVerificationFailure)
DOMESTIC_VERIFICATION_FAILURES: tuple[str, ...] = get_args(DomesticVerificationFailure)


class CredentialVerificationError(Exception):
    """Raised when a credential a signer returned must not be released.

    ``reason`` is a short, stable, machine-friendly slug (``"bad-signature"``,
    ``"unknown-kid"``, ``"payload-mismatch"``, ...) fit for metrics labels and logs: one of a
    fixed set (`VerificationFailure`), so each can be counted from 0. ``detail`` adds a human
    hint and never carries personal data from the credential.
    """

    def __init__(self, reason: VerificationFailure, detail: str = "") -> None:
        """Keep the reason slug and an optional hint."""
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: VerificationFailure = reason
        self.detail = detail


class CommitmentProofError(Exception):
    """Raised when an app's proofs of its commitments U (gabi ``ProofU``) do not verify.

    ``loc`` is where in the IssueCommitmentMessage (``("combinedProofs", 1, "c")``, or
    ``("combinedProofs",)`` when only the list as a whole can be blamed); ``msg`` says why,
    without the numbers.
    """

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        """Keep where the proof fails and why."""
        super().__init__(loc, msg)
        self.loc = loc
        self.msg = msg
