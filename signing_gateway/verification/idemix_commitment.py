r"""The app's proofs of knowledge of its commitments U, checked before the Idemix signer sees them.

Sources: ``privacybydesign/gabi`` ``proofs.go`` (``ProofU``: ``reconstructUcommit``,
``correctResponseSizes``, ``ChallengeContribution``; ``createChallenge``), ``prooflist.go``
(``ProofList.Verify``) and ``gabikeys/sysparams.go`` (``LvPrimeCommit``);
``minvws/nl-covid19-coronacheck-idemix`` ``issuer/issuer.go`` ``Issue``, which verifies the
list against the key ``FindIssuerPk(prepareIssueMessage.issuerPkId)``, with context 1, the
prepare message's ``issuerNonce`` n_1 and no keyshare server, and refuses a failing list
with an error its server answers 500.

``issueCommitmentMessage.combinedProofs`` holds one ``{"U", "c", "v_prime_response",
"s_response"}`` per credential. The list holds when, for the issuer key ``(n, S, R_0)``::

    U_commit_i = U_i^(-c) * S^(v_prime_response_i) * R_0^(s_response)  (mod n)
    c = HashCommit([1, U_1, U_commit_1, .., U_k, U_commit_k, n_1])

with one ``c`` and one ``s_response`` (one holder secret) in every proof, and each
``|v_prime_response| <= 2^(LvPrimeCommit+1) - 1``. gabi bounds nothing else; so that a crafted
proof costs no more than a real one, every exponent is bounded here before any is used:
``c`` by 256 bits (it is compared with a SHA-256 output), ``s_response`` by LmCommit + 1 bits
(an app's is its Lm-bit secret times c plus an LmCommit-bit randomizer), ``U`` to ``(1, n)``
and invertible modulo ``n`` (a real ``U`` is a residue modulo ``n``).

Only the public key is used. The cheap checks (`read_commitment_proofs`,
`check_proof_list`) run where they are called; the exponentiations (`commitment_contribution`,
~4 ms of CPU per proof) run in the check workers (`runtime.idemix_pool`), one proof each, and
`check_challenge` hashes their results. A failure raises `CommitmentProofError` naming the
proof, or the list when only the challenge as a whole fails: one challenge covers every
proof, so a changed proof cannot be told from a changed sibling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signing_gateway.verification.errors import CommitmentProofError, CredentialVerificationError
from signing_gateway.verification.idemix import hash_commit, powmod
from signing_gateway.verification.idemix_answers import commitment_big_int

if TYPE_CHECKING:
    from collections.abc import Sequence

    from signing_gateway.verification.idemix_keys import IdemixPublicKey

__all__ = [
    "CommitmentProof",
    "check_challenge",
    "check_proof_list",
    "commitment_contribution",
    "read_commitment_proofs",
    "verify_commitment_proofs",
]

#: gabi's context for CoronaCheck proofs (``common.BigOne``).
_CONTEXT = 1
#: Bits of a challenge: a SHA-256 output.
_CHALLENGE_BITS = 256
_PROOFS = "combinedProofs"
_FIELDS = ("U", "c", "v_prime_response", "s_response")


@dataclass(frozen=True, slots=True)
class CommitmentProof:
    """One credential's commitment ``U`` and the app's proof of knowledge of it (``ProofU``)."""

    u: int
    c: int
    v_prime_response: int
    s_response: int


def _read_proof(proof: object, index: int) -> CommitmentProof:
    if not isinstance(proof, dict):
        raise CommitmentProofError((_PROOFS, index), "must be an object")
    values: list[int] = []
    for name in _FIELDS:
        try:
            values.append(commitment_big_int(proof.get(name), name))
        except CredentialVerificationError as exc:
            raise CommitmentProofError(
                (_PROOFS, index, name), "must be a big integer (base64 of its bytes)"
            ) from exc
    return CommitmentProof(*values)


def read_commitment_proofs(document: bytes) -> tuple[CommitmentProof, ...]:
    """The proofs of an IssueCommitmentMessage's JSON, in order.

    The document was checked to be one JSON object within the body limits
    (`issuance.commitment`); its numbers are read with Python's unbounded integers.

    Raises:
        CommitmentProofError: no ``combinedProofs`` list, or a proof without its four numbers.
    """
    try:
        parsed = json.loads(document)
    except ValueError as exc:  # a bare number past int's digit limit, say
        raise CommitmentProofError((), "must be JSON whose numbers can be read") from exc
    proofs = parsed.get(_PROOFS) if isinstance(parsed, dict) else None
    if not isinstance(proofs, list):
        raise CommitmentProofError((_PROOFS,), "must be a list of proofs")
    return tuple(_read_proof(proof, index) for index, proof in enumerate(proofs))


def check_proof_list(
    proofs: Sequence[CommitmentProof], key: IdemixPublicKey, *, count: int
) -> None:
    """Everything about the proofs but the challenge: count, agreement and every size.

    ``count`` is the number of credentials asked for: one proof each. Cheap (no
    exponentiation), so done before the exponentiations are sent to a worker.

    Raises:
        CommitmentProofError: naming the first proof that fails, and why.
    """
    if not proofs:
        raise CommitmentProofError((_PROOFS,), "must hold a proof")
    if len(proofs) != count:
        raise CommitmentProofError(
            (_PROOFS,), f"must hold one proof per credential asked for ({count}), not {len(proofs)}"
        )
    params = key.params
    v_prime_limit = (1 << (params.lv_prime_commit + 1)) - 1
    for index, proof in enumerate(proofs):
        if proof.c != proofs[0].c:
            raise CommitmentProofError((_PROOFS, index, "c"), "differs from the first proof's")
        if proof.s_response != proofs[0].s_response:
            raise CommitmentProofError(
                (_PROOFS, index, "s_response"), "differs from the first proof's (one secret)"
            )
        if proof.c.bit_length() > _CHALLENGE_BITS:
            raise CommitmentProofError((_PROOFS, index, "c"), "is longer than a challenge")
        if proof.s_response.bit_length() > params.lm_commit + 1:
            raise CommitmentProofError((_PROOFS, index, "s_response"), "is out of range")
        if proof.v_prime_response > v_prime_limit:
            raise CommitmentProofError((_PROOFS, index, "v_prime_response"), "is out of range")
        if not 1 < proof.u < key.n or math.gcd(proof.u, key.n) != 1:
            raise CommitmentProofError(
                (_PROOFS, index, "U"), "is not a commitment under the session's issuer key"
            )


def commitment_contribution(proof: CommitmentProof, key: IdemixPublicKey) -> int:
    """``U^(-c) * S^v_prime_response * R_0^s_response mod n``: the ``U_commit`` it was made with.

    `check_proof_list` first: it bounds the exponents and makes ``U`` invertible.
    """
    n = key.n
    u_commit = powmod(proof.u, -proof.c, n) * powmod(key.s, proof.v_prime_response, n) % n
    return u_commit * powmod(key.bases[0], proof.s_response, n) % n


def check_challenge(
    proofs: Sequence[CommitmentProof], contributions: Sequence[int], nonce1: int
) -> None:
    """The proofs' one challenge against the one their contributions and ``nonce1`` make.

    Raises:
        CommitmentProofError: at ``combinedProofs``: the list does not hold for ``nonce1``.
    """
    committed = [
        value
        for proof, u_commit in zip(proofs, contributions, strict=True)
        for value in (proof.u, u_commit)
    ]
    if hash_commit([_CONTEXT, *committed, nonce1]) != proofs[0].c:
        raise CommitmentProofError(
            (_PROOFS,), "the proofs of U do not verify for the session's issuer nonce"
        )


def verify_commitment_proofs(
    document: bytes, key: IdemixPublicKey, *, nonce1: int, count: int
) -> None:
    """Verify an IssueCommitmentMessage's proofs in one go, as gabi's ``ProofList.Verify``.

    The pieces `runtime.idemix_pool` runs apart, each where it belongs, in order.

    Raises:
        CommitmentProofError: where, and why, the proofs fail.
    """
    proofs = read_commitment_proofs(document)
    check_proof_list(proofs, key, count=count)
    check_challenge(proofs, [commitment_contribution(proof, key) for proof in proofs], nonce1)
