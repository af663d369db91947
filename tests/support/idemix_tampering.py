"""An app's IssueCommitmentMessage with proofs of U that do not verify, one way each.

Each tamper takes the app's holders (one per credential), the issuer nonce of the session
the commitment is sent in, and that of another session, and returns the commitment JSON.
The Idemix server refuses every one (gabi ``ProofList.Verify`` fails); the fake does the
same, and the gateway in the idemix scheme refuses them before any signer sees them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.idemix_issuer import ORDER, Holder, b64, commitment_message, make_holder

#: holders, the session's issuer nonce, another session's → the app's commitment JSON.
Tamper = Callable[[list[Holder], int, int], dict[str, Any]]

#: S^(v' + k p'q') = S^v': a v_prime_response past gabi's bound (2^2561 - 1) whose proof
#: otherwise holds.
PAST_THE_BOUND = ORDER << 600


def bumped(proof: dict[str, Any], name: str, by: int = 1) -> None:
    """Add `by` to the big integer `name` of a proof."""
    proof[name] = b64(int.from_bytes(base64.b64decode(proof[name]), "big") + by)


def tamper_each(name: str, by: int = 1) -> Tamper:
    """A change of `name` by `by` in every proof (so the proofs still agree with each other)."""

    def change(holders: list[Holder], nonce1: int, _other: int) -> dict[str, Any]:
        commitment = commitment_message(holders, nonce1)
        for proof in commitment["combinedProofs"]:
            bumped(proof, name, by)
        return commitment

    return change


def u_of_another_commitment(holders: list[Holder], nonce1: int, _other: int) -> dict[str, Any]:
    """The first proof names another app's U."""
    commitment = commitment_message(holders, nonce1)
    commitment["combinedProofs"][0]["U"] = b64(make_holder().commitment)
    return commitment


def v_prime_response_changed(holders: list[Holder], nonce1: int, _other: int) -> dict[str, Any]:
    """The last proof's v_prime_response is one more."""
    commitment = commitment_message(holders, nonce1)
    bumped(commitment["combinedProofs"][-1], "v_prime_response")
    return commitment


def proofs_reordered(holders: list[Holder], nonce1: int, _other: int) -> dict[str, Any]:
    """The proofs are sent in the other order (each set then meets another U)."""
    commitment = commitment_message(holders, nonce1)
    commitment["combinedProofs"].reverse()
    return commitment


def proved_for_another_nonce(holders: list[Holder], _nonce1: int, other: int) -> dict[str, Any]:
    """Valid proofs, made for another session's issuer nonce."""
    return commitment_message(holders, other)


def two_secrets(holders: list[Holder], nonce1: int, _other: int) -> dict[str, Any]:
    """Valid proofs of commitments to two different secrets (gabi binds them to one)."""
    lone = make_holder(nonce2=holders[0].nonce2)
    return commitment_message([holders[0], lone], nonce1)


#: Every tamper, for a session of two credentials, with its test id.
TAMPERS = [
    pytest.param(tamper_each("c"), id="c-changed"),
    pytest.param(v_prime_response_changed, id="v-prime-response-changed"),
    pytest.param(tamper_each("s_response"), id="s-response-changed"),
    pytest.param(
        tamper_each("v_prime_response", PAST_THE_BOUND), id="v-prime-response-past-its-bound"
    ),
    pytest.param(u_of_another_commitment, id="u-of-another-commitment"),
    pytest.param(proofs_reordered, id="proofs-reordered"),
    pytest.param(proved_for_another_nonce, id="proved-for-another-nonce"),
    pytest.param(two_secrets, id="two-secrets"),
]
