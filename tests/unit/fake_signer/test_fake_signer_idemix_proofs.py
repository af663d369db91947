"""The fake Idemix signer's check of the app's proofs of U: gabi's ProofList.Verify for ProofU."""

from __future__ import annotations

import secrets

import pytest

from fake_signer import idemix, idemix_test_key
from tests.support.idemix_issuer import ORDER, commitment_proofs, make_holders

KEY = idemix.test_issuer_key()
NONCE = secrets.randbits(128)


def proofs_of(raw: list[dict[str, int]]) -> list[idemix.CommitmentProof]:
    """The fake's reading of the app's proofs."""
    return [
        idemix.CommitmentProof(p["U"], p["c"], p["v_prime_response"], p["s_response"]) for p in raw
    ]


@pytest.fixture(scope="module")
def proofs() -> list[idemix.CommitmentProof]:
    """Three bound proofs of one app's commitments for NONCE."""
    return proofs_of(commitment_proofs(make_holders(3), NONCE))


def with_v_prime_response(proofs, added: int) -> list[idemix.CommitmentProof]:
    """The proofs, the first one's v_prime_response raised by `added`."""
    first = proofs[0]
    changed = idemix.CommitmentProof(
        first.u, first.c, first.v_prime_response + added, first.s_response
    )
    return [changed, *proofs[1:]]


def test_the_apps_proofs_verify_for_their_nonce_only(proofs):
    """Proofs made for the issuer nonce verify for it, not for another."""
    assert idemix.commitment_proofs_verify(KEY, proofs, NONCE)
    assert not idemix.commitment_proofs_verify(KEY, proofs, NONCE + 1)


def test_v_prime_response_is_held_to_gabis_bound(proofs):
    """Adding p'q' to v' keeps the proof in the group; past 2^2561 - 1 it is refused even so."""
    assert idemix.commitment_proofs_verify(KEY, with_v_prime_response(proofs, ORDER), NONCE)
    past = with_v_prime_response(proofs, ORDER << 600)
    assert past[0].v_prime_response.bit_length() > idemix.LV_PRIME_COMMIT + 1
    assert not idemix.commitment_proofs_verify(KEY, past, NONCE)


def test_no_proofs_and_a_u_without_inverse_do_not_verify(proofs):
    """An empty list does not verify (gabi's rule); a U sharing a factor with n is no error."""
    assert not idemix.commitment_proofs_verify(KEY, [], NONCE)
    first = proofs[0]
    shared = idemix.CommitmentProof(
        idemix_test_key.P, first.c, first.v_prime_response, first.s_response
    )
    assert not idemix.commitment_proofs_verify(KEY, [shared, *proofs[1:]], NONCE)
