"""The idemix scheme's checks of a domestic signer's answers, against what the gateway asked.

`verify_static_qr` and `verify_issue_signature` (``idemix``, ``idemix_issuance``) check the
cryptography; here each answer is also held to the request it answers:

- a static QR (``/issue_static``) must be disclosed at time 0, under a configured issuer key,
  disclose exactly the attributes asked for (and be a paper proof: ``isPaperProof`` "1"),
  and carry the proofIdentifier the signer gave beside it;
- an issue answer (``/issue``) must hold one item per attribute set asked for, in order, each
  ``{"issueSignatureMessage", "attributes"}`` with ``attributes`` the base64 of the byte
  values asked for (`credential_attribute_values`: the metadata naming the session's
  issuerPkId first), and a signature over them and the app's commitment ``U`` of that
  credential (``combinedProofs[i].U``), its proof made for the app's nonce ``n_2``.

These run in the check workers (`runtime.idemix_pool`): ~7 ms of CPU per QR, ~13 ms per
issued signature (~0.37 s for a session of 28), too much for the event loop. A failure
raises `CredentialVerificationError` with one of the domestic reasons.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from signing_gateway.verification.idemix import (
    STATIC_DISCLOSURE_TIME,
    credential_attribute_values,
    idemix_failure,
    verify_static_qr,
)
from signing_gateway.verification.idemix_issuance import gabi_big_int, verify_issue_signature

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from signing_gateway.verification.idemix_keys import IdemixPublicKey

__all__ = [
    "AppCommitment",
    "check_issue_answer",
    "check_issued_credential",
    "check_static_answer",
    "commitment_big_int",
    "issue_commitments",
    "read_app_commitment",
    "session_key",
]

#: The credential version whose attributes include a category (`idemix.ATTRIBUTE_NAMES`).
_CATEGORY_VERSION = 3
_PLAIN_VERSION = 2


def check_static_answer(
    qr: str,
    proof_identifier: str,
    *,
    keys: Mapping[str, IdemixPublicKey],
    expected_attributes: Mapping[str, str],
) -> None:
    """Check a static QR and its proofIdentifier against the attributes asked for.

    Raises:
        CredentialVerificationError: those of `verify_static_qr` (``nonce-mismatch`` for a
            disclosure time other than 0), ``payload-mismatch`` or
            ``proof-identifier-mismatch``.
    """
    verified = verify_static_qr(qr, keys, disclosure_time=STATIC_DISCLOSURE_TIME)
    if verified.attributes != dict(expected_attributes):
        raise idemix_failure("payload-mismatch")
    if verified.attributes.get("isPaperProof") != "1":
        raise idemix_failure("payload-mismatch", "a static QR must be a paper proof")
    if proof_identifier != base64.b64encode(verified.proof_identifier).decode("ascii"):
        raise idemix_failure("proof-identifier-mismatch")


class AppCommitment:
    """The numbers the gateway needs from the app's IssueCommitmentMessage: each U, and n_2."""

    __slots__ = ("commitments", "nonce2")

    def __init__(self, commitments: tuple[int, ...], nonce2: int) -> None:
        """Keep each credential's commitment ``U`` (in order) and the app's nonce ``n_2``."""
        self.commitments = commitments
        self.nonce2 = nonce2


def commitment_big_int(value: object, name: str) -> int:
    """A gabi JSON big integer: base64 of big-endian bytes, or (gabi reads it too) a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str):
        raise idemix_failure("decode-failed", f"commitment {name} must be a big integer")
    return gabi_big_int(value, f"commitment {name}")


def read_app_commitment(document: bytes) -> AppCommitment:
    """Each credential's ``U`` and the nonce ``n_2`` of the app's commitment JSON.

    The document was checked to be one JSON object within the body limits
    (`issuance.commitment`); its numbers are read here with Python's unbounded integers.

    Raises:
        CredentialVerificationError: ``decode-failed``, no ``n_2`` or ``combinedProofs`` of
            objects with a ``U`` in it.
    """
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        raise idemix_failure("decode-failed", "commitment is not JSON") from exc
    proofs = parsed.get("combinedProofs") if isinstance(parsed, dict) else None
    if not isinstance(proofs, list) or not all(isinstance(p, dict) for p in proofs):
        raise idemix_failure("decode-failed", "commitment must hold combinedProofs objects")
    commitments = tuple(commitment_big_int(proof.get("U"), "U") for proof in proofs)
    return AppCommitment(commitments, commitment_big_int(parsed.get("n_2"), "n_2"))


def _expected_values(attributes: Mapping[str, str], issuer_pk_id: str) -> tuple[bytes, ...]:
    version = _CATEGORY_VERSION if "category" in attributes else _PLAIN_VERSION
    return credential_attribute_values(
        attributes, issuer_pk_id=issuer_pk_id, credential_version=version
    )


def issue_commitments(
    items: Sequence[Mapping[str, Any]],
    app: AppCommitment,
    expected_attributes: Sequence[Mapping[str, str]],
) -> tuple[int, ...]:
    """Each credential's ``U``, once the items and the app's commitments match the sets asked.

    Raises:
        CredentialVerificationError: ``count-mismatch``.
    """
    if len(items) != len(expected_attributes):
        raise idemix_failure("count-mismatch", f"{len(items)} != {len(expected_attributes)}")
    if len(app.commitments) != len(expected_attributes):
        raise idemix_failure("count-mismatch", "the app's commitments and the attribute sets")
    return app.commitments


def check_issued_credential(
    item: Mapping[str, Any],
    *,
    key: IdemixPublicKey,
    commitment: int,
    nonce2: int,
    issuer_pk_id: str,
    expected: Mapping[str, str],
) -> None:
    """Check one item of an Idemix issue answer: the attributes asked for, signed over ``U``.

    Raises:
        CredentialVerificationError: ``payload-mismatch`` (attributes other than those asked
            for) or those of `verify_issue_signature`.
    """
    values = _expected_values(expected, issuer_pk_id)
    if item.get("attributes") != [base64.b64encode(v).decode("ascii") for v in values]:
        raise idemix_failure("payload-mismatch")
    verify_issue_signature(
        item.get("issueSignatureMessage", {}),
        key=key,
        commitment=commitment,
        nonce2=nonce2,
        attributes=values,
    )


def session_key(keys: Mapping[str, IdemixPublicKey], issuer_pk_id: str) -> IdemixPublicKey:
    """The key of the session's issuerPkId; ``unknown-kid`` when none is configured."""
    key = keys.get(issuer_pk_id)
    if key is None:
        raise idemix_failure("unknown-kid", issuer_pk_id)
    return key


def check_issue_answer(
    items: Sequence[Mapping[str, Any]],
    *,
    keys: Mapping[str, IdemixPublicKey],
    commitment: bytes,
    issuer_pk_id: str,
    expected_attributes: Sequence[Mapping[str, str]],
) -> None:
    """Check every item of an Idemix issue answer, in order, against what was asked.

    ``issuer_pk_id`` is the session's, from its prepare-issue message: the app committed for
    that key. ``commitment`` is the app's IssueCommitmentMessage as the gateway forwarded it.
    `runtime.idemix_pool` runs the same checks, each item's in a worker of its own.

    Raises:
        CredentialVerificationError: ``count-mismatch`` (items, or commitments in the app's
            message, other than the attribute sets asked for), ``unknown-kid`` (the session's
            key is not configured), ``decode-failed`` or those of `check_issued_credential`.
    """
    app = read_app_commitment(commitment)
    commitments = issue_commitments(items, app, expected_attributes)
    key = session_key(keys, issuer_pk_id)
    for item, expected, u in zip(items, expected_attributes, commitments, strict=True):
        check_issued_credential(
            item,
            key=key,
            commitment=u,
            nonce2=app.nonce2,
            issuer_pk_id=issuer_pk_id,
            expected=expected,
        )
