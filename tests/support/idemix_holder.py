"""An app for tests: credentials signed with the published test key, and their NL proofs.

A real QR only ever discloses what its credential holds; tests that need a hidden category,
an attribute absent or longer than ``Lm`` bits, or no secret key at all sign such a credential
with the test issuer's private primes and prove it as gabi's ``ProofD`` does::

    Z~ = A^e~ * S^v~ * prod_hidden R_i^m~_i,   C = HashCommit([1, A, Z~, nonce]),
    EResponse = e~ + C * (e - 2^(Le-1)),  VResponse = v~ + C * v,  response_i = m~_i + C * m_i

The prover does not randomize ``A`` (gabi does; a verifier cannot tell).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from signing_gateway.verification.idemix import hash_commit, powmod
from tests.support.idemix_issuer import LE, LV, ORDER, TEST_KEY, gabi_exponent, random_prime_e
from tests.unit.verification.idemix_qr_support import ProofFields

#: gabi 2048-bit LmCommit, LeCommit and LvCommit (Lv + Lstatzk + Lh): the prover's randomness.
LM_COMMIT, LE_COMMIT, LV_COMMIT = 640, 504, 3204


def disclosure_proof(
    exponents: Sequence[int],
    *,
    hidden: Sequence[int] = (0,),
    disclosure_time: int = 0,
    negative_commitments: bool = False,
) -> ProofFields:
    """A proof of a fresh credential over ``exponents``, m_0 (R_0's) being the secret key.

    ``hidden`` lists the indices whose values stay hidden, in the proof's response order; the
    others from index 1 are disclosed in order. The verifier takes the responses to be of R_0
    and then of the base after the disclosed ones, so a proof it can verify hides ``(0,)`` or
    ``(0, len(exponents) - 1)``; one hiding neither holds only when m_0 is 0. With
    ``negative_commitments`` the prover's e~ and m~ are negative, and so (almost surely) are
    EResponse and the hidden attributes' responses.
    """
    key, n = TEST_KEY, TEST_KEY.n
    e, v = random_prime_e(), (1 << (LV - 1)) + secrets.randbits(LV - 1)
    denominator = powmod(key.s, v, n)
    for base, m in zip(key.bases, exponents, strict=False):
        denominator = denominator * powmod(base, gabi_exponent(m), n) % n
    a = powmod(key.z * powmod(denominator, -1, n) % n, powmod(e, -1, ORDER), n)
    sign = -1 if negative_commitments else 1
    e_commit, v_commit = sign * secrets.randbits(LE_COMMIT), secrets.randbits(LV_COMMIT)
    m_commits = [sign * secrets.randbits(LM_COMMIT) for _ in hidden]
    z_commit = powmod(a, e_commit, n) * powmod(key.s, v_commit, n) % n
    for index, m_commit in zip(hidden, m_commits, strict=True):
        z_commit = z_commit * powmod(key.bases[index], m_commit, n) % n
    time_digest = hashlib.sha256(str(disclosure_time).encode()).digest()
    c = hash_commit([1, a, z_commit, int.from_bytes(time_digest[:16], "big")])
    return ProofFields(
        disclosure_time=disclosure_time,
        c=c,
        a=a,
        e_response=e_commit + c * (e - (1 << (LE - 1))),
        v_response=v_commit + c * v,
        a_responses=tuple(
            m_commit + c * gabi_exponent(exponents[index])
            for index, m_commit in zip(hidden, m_commits, strict=True)
        ),
        a_disclosed=tuple(m for index, m in enumerate(exponents[1:], 1) if index not in hidden),
    )
