"""An Idemix issuer for tests: CL signatures made with the published CoronaCheck test key.

The private primes of ``VWS-TEST-0`` are published with it (see
``tests/unit/verification/idemix_testdata.py``); with them a test signs as gabi's issuer does,
over an app's commitment ``U = S^v' * R_0^secret``.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signing_gateway.verification.idemix import attribute_int, hash_commit
from signing_gateway.verification.idemix_issuance import is_probable_prime
from signing_gateway.verification.idemix_keys import IdemixPublicKey
from tests.unit.verification.idemix_testdata import TEST_KEY_P, TEST_KEY_Q, TEST_KEY_XML

TEST_KEY_FILE = Path(__file__).parents[1] / "unit" / "verification" / "data" / "idemix_test_pk.xml"
TEST_KEY = IdemixPublicKey.from_xml(TEST_KEY_XML)
ORDER = (TEST_KEY_P - 1) // 2 * ((TEST_KEY_Q - 1) // 2)
#: gabi 2048-bit parameters: Le, LePrime, Lv, LvPrime.
LE, LE_PRIME, LV, LV_PRIME = 645, 120, 2820, 2176


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


def random_prime_e() -> int:
    """A random prime in gabi's range for e."""
    while True:
        candidate = (1 << (LE - 1)) + secrets.randbits(LE_PRIME - 1) | 1
        if is_probable_prime(candidate):
            return candidate


def make_holder(key: IdemixPublicKey = TEST_KEY, *, nonce2: int | None = None) -> Holder:
    """An app's secret and its commitment U = S^v' * R_0^secret, with its nonce n_2."""
    secret, v_prime = secrets.randbits(256), secrets.randbits(LV_PRIME)
    commitment = pow(key.s, v_prime, key.n) * pow(key.bases[0], secret, key.n) % key.n
    return Holder(secret, v_prime, commitment, secrets.randbits(128) if nonce2 is None else nonce2)


def make_holders(count: int) -> list[Holder]:
    """An app's commitments for `count` credentials: a U each, under its one nonce n_2."""
    first = make_holder()
    return [first, *(make_holder(nonce2=first.nonce2) for _ in range(count - 1))]


def sign(holder: Holder, values: Any, *, e: int | None = None) -> dict[str, Any]:
    """An issueSignatureMessage over U and ``values``, as gabi's issuer makes it."""
    key = TEST_KEY
    n, e = key.n, e or random_prime_e()
    v = (1 << (LV - 1)) + secrets.randbits(LV - 1)
    denominator = pow(key.s, v, n) * holder.commitment % n
    for index, value in enumerate(values, start=1):
        denominator = denominator * pow(key.bases[index], attribute_int(value), n) % n
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


def commitment_message(holders: list[Holder]) -> dict[str, Any]:
    """An app's IssueCommitmentMessage for one credential per holder commitment."""
    return {
        "combinedProofs": [
            {"U": b64(h.commitment), "c": b64(1), "v_prime_response": b64(1), "s_response": b64(1)}
            for h in holders
        ],
        "n_2": b64(holders[0].nonce2),
    }
