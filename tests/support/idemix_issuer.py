"""An Idemix issuer and app for tests: CL signatures made with the published test key.

The private primes of ``VWS-TEST-0`` are published with it (see
``tests/unit/verification/idemix_testdata.py``); with them a test signs as gabi's issuer does,
over an app's commitment ``U = S^v' * R_0^secret``. The app's side is gabi's as the CoronaCheck
holder runs it (minvws/nl-covid19-coronacheck-idemix ``holder/holder.go``
``CreateCommitments``; privacybydesign/gabi ``prooflist.go`` ``BuildProofList``,
``builder.go`` ``Commit``/``CreateProof``): one secret for all its credentials, a ``U`` per
credential, and one proof of knowledge of them all for the issuer's nonce.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signing_gateway.verification.idemix import (
    attribute_int,
    credential_attribute_values,
    hash_commit,
    powmod,
)
from signing_gateway.verification.idemix_issuance import is_probable_prime
from signing_gateway.verification.idemix_keys import IdemixPublicKey
from tests.unit.verification.idemix_testdata import TEST_KEY_P, TEST_KEY_Q, TEST_KEY_XML

TEST_KEY_FILE = Path(__file__).parents[1] / "unit" / "verification" / "data" / "idemix_test_pk.xml"
TEST_KEY = IdemixPublicKey.from_xml(TEST_KEY_XML)
ORDER = (TEST_KEY_P - 1) // 2 * ((TEST_KEY_Q - 1) // 2)
#: gabi 2048-bit parameters: Le, LePrime, Lv, LvPrime, LvPrimeCommit, Lm.
LE, LE_PRIME, LV, LV_PRIME, LV_PRIME_COMMIT, LM = 645, 120, 2820, 2176, 2560, 256
#: The size of the secret's commitment in a proof list: gabi's 1024-bit LmCommit, for any key.
LSK_COMMIT = 592


@dataclass(frozen=True)
class Holder:
    """An app's secret, its commitment U and its nonce n_2."""

    secret: int
    v_prime: int
    commitment: int
    nonce2: int


def b64(value: int) -> str:
    """A gabi JSON big integer."""
    return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode()


def gabi_exponent(m: int) -> int:
    """An attribute as gabi's ``RepresentToBases`` raises a base to it: hashed past Lm bits.

    Written here rather than taken from the gateway's ``attribute_exponent``, which the
    tests sign with this to check: shared, a mistake in it would sign and verify alike.
    """
    if m.bit_length() <= LM:
        return m
    return int.from_bytes(
        hashlib.sha256(m.to_bytes((m.bit_length() + 7) // 8, "big")).digest(), "big"
    )


def random_prime_e() -> int:
    """A random prime in gabi's range for e."""
    while True:
        candidate = (1 << (LE - 1)) + secrets.randbits(LE_PRIME - 1) | 1
        if is_probable_prime(candidate):
            return candidate


def make_holder(
    key: IdemixPublicKey = TEST_KEY, *, nonce2: int | None = None, secret: int | None = None
) -> Holder:
    """An app's secret and its commitment U = S^v' * R_0^secret, with its nonce n_2."""
    secret = secrets.randbits(256) if secret is None else secret
    v_prime = secrets.randbits(LV_PRIME)
    commitment = powmod(key.s, v_prime, key.n) * powmod(key.bases[0], secret, key.n) % key.n
    return Holder(secret, v_prime, commitment, secrets.randbits(128) if nonce2 is None else nonce2)


def make_holders(count: int) -> list[Holder]:
    """An app's commitments for `count` credentials: a U each, one secret, one nonce n_2."""
    first = make_holder()
    others = (make_holder(nonce2=first.nonce2, secret=first.secret) for _ in range(count - 1))
    return [first, *others]


def sign(holder: Holder, values: Any, *, e: int | None = None) -> dict[str, Any]:
    """An issueSignatureMessage over U and ``values``, as gabi's issuer makes it."""
    key = TEST_KEY
    n, e = key.n, e or random_prime_e()
    v = (1 << (LV - 1)) + secrets.randbits(LV - 1)
    denominator = pow(key.s, v, n) * holder.commitment % n
    for index, value in enumerate(values, start=1):
        exponent = gabi_exponent(attribute_int(value))
        denominator = denominator * pow(key.bases[index], exponent, n) % n
    q = key.z * pow(denominator, -1, n) % n
    d = pow(e, -1, ORDER)
    a = pow(q, d, n)
    e_commit = secrets.randbelow(ORDER - 1) + 1
    c = hash_commit([1, q, a, holder.nonce2, pow(q, e_commit, n)])
    e_response = (e_commit - c * d) % ORDER
    return {
        "proof": {"c": b64(c), "e_response": b64(e_response)},
        "signature": {"A": b64(a), "e": b64(e), "v": b64(v), "KeyshareP": None},
    }


def issuer_nonce(prepare_issue_message: dict[str, Any]) -> int:
    """The issuer nonce of a prepareIssueMessage (a gabi big integer)."""
    return int.from_bytes(base64.b64decode(prepare_issue_message["issuerNonce"]), "big")


def commitment_proofs(
    holders: list[Holder], nonce1: int, key: IdemixPublicKey = TEST_KEY
) -> list[dict[str, int]]:
    """A ProofU (gabi's) per holder commitment, bound in one proof list for the issuer nonce.

    One challenge ``c = HashCommit([1, U_1, U_commit_1, .., nonce1])`` for all, each
    ``U_commit = S^v'_commit * R_0^sk_commit`` with one ``sk_commit`` for the shared secret.
    """
    n = key.n
    sk_commit = secrets.randbits(LSK_COMMIT)
    v_commits = [secrets.randbits(LV_PRIME_COMMIT) for _ in holders]
    contributions: list[int] = []
    for holder, v_commit in zip(holders, v_commits, strict=True):
        u_commit = powmod(key.s, v_commit, n) * powmod(key.bases[0], sk_commit, n) % n
        contributions += (holder.commitment, u_commit)
    c = hash_commit([1, *contributions, nonce1])
    return [
        {
            "U": holder.commitment,
            "c": c,
            "v_prime_response": v_commit + c * holder.v_prime,
            "s_response": sk_commit + c * holder.secret,
        }
        for holder, v_commit in zip(holders, v_commits, strict=True)
    ]


def commitment_message(holders: list[Holder], nonce1: int) -> dict[str, Any]:
    """An app's IssueCommitmentMessage for one credential per holder commitment.

    ``nonce1`` is the issuer nonce of the session's prepareIssueMessage (`issuer_nonce`), which
    the proofs of the commitments are made for.
    """
    return {
        "combinedProofs": [
            {name: b64(value) for name, value in proof.items()}
            for proof in commitment_proofs(holders, nonce1)
        ],
        "n_2": b64(holders[0].nonce2),
    }


def issue_answer(
    expected: list[dict[str, str]], *, nonce1: int
) -> tuple[list[dict[str, Any]], bytes]:
    """A signer's items over `expected`, and the app's commitment (for `nonce1`) they answer."""
    holders = make_holders(len(expected))
    items = []
    for holder, attributes in zip(holders, expected, strict=True):
        version = 3 if "category" in attributes else 2
        values = credential_attribute_values(
            attributes, issuer_pk_id="VWS-TEST-0", credential_version=version
        )
        items.append(
            {
                "issueSignatureMessage": sign(holder, values),
                "attributes": [base64.b64encode(v).decode() for v in values],
            }
        )
    return items, json.dumps(commitment_message(holders, nonce1)).encode()
