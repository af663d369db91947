r"""Verification of one CL signature the Idemix server issues (``issueSignatureMessage``).

Sources: ``privacybydesign/gabi`` ``clsignature.go`` (``CLSignature.Verify``), ``proofs.go``
(``ProofS.Verify``), ``issuer.go`` (how the issuer signs), ``builder.go`` (what the app checks
on receipt) and ``big/int.go`` (a JSON big integer is the base64 of its big-endian bytes).

The issuer signs the app's commitment ``U = S^v' * R_0^secret`` (from the app's
``IssueCommitmentMessage``) together with the attributes ``m_1 .. m_k`` (the metadata first,
bases ``R_1 ..``)::

    A^e * S^v * U * prod_{i>=1} R_i^m_i == Z  (mod n)

with ``v`` the issuer's part of the signature's ``v`` (the app adds ``v'``), and ``e`` a prime
in ``[2^(Le-1), 2^(Le-1) + 2^(LePrime-1)]``. Because ``U`` already carries the app's secret, the
gateway checks the signature exactly as the app will, without knowing the secret. The
message's proof ``(c, e_response)`` shows the issuer knew ``1/e``: with ``Q = A^e``, it holds
when ``c == HashCommit([1, Q, A, n_2, A^(c + e_response * e)])``, ``n_2`` the app's nonce from
its commitment message.

The message is ``{"proof": {"c", "e_response"}, "signature": {"A", "e", "v", "KeyshareP"}}``;
gabi may add ``"nonrev"`` and ``"missuer"``/``"m_issuer"`` (revocation, blind attributes),
which CoronaCheck does not use: they are taken only when null or empty, ``KeyshareP`` only when
null (a keyshare server's part would change the equation), and any other member is refused,
since the message reaches the app as it came.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import TYPE_CHECKING, Any

from signing_gateway.verification.idemix import (
    attribute_exponent,
    attribute_int,
    hash_commit,
    idemix_failure,
    powmod,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from signing_gateway.verification.idemix_keys import IdemixPublicKey

__all__ = ["gabi_big_int", "is_probable_prime", "verify_issue_signature"]

_MESSAGE_MEMBERS = {"proof", "signature"}
#: Members gabi may add that CoronaCheck leaves empty: taken only when null or empty.
_EMPTY_MEMBERS = {"nonrev", "missuer", "m_issuer"}
_PROOF_MEMBERS = {"c", "e_response"}
_SIGNATURE_MEMBERS = {"A", "e", "v"}
_CONTEXT = 1
_CHALLENGE_BITS = 256
#: Miller-Rabin rounds with random bases: an error chance below 4^-40 for a composite.
_PRIME_ROUNDS = 40
_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def is_probable_prime(candidate: int) -> bool:
    """Miller-Rabin with random bases (the signer picks ``e``: fixed bases could be gamed).

    Only the exponentiation is GMP's: not ``gmpy2.is_prime``, whose Miller-Rabin bases come
    from a generator with a fixed seed, the same in every process.
    """
    if candidate < 2:  # noqa: PLR2004 - the first prime
        return False
    for small in (2, *_SMALL_PRIMES):
        if candidate % small == 0:
            return candidate == small
    odd, twos = candidate - 1, 0
    while odd % 2 == 0:
        odd, twos = odd // 2, twos + 1
    for _ in range(_PRIME_ROUNDS):
        x = powmod(2 + secrets.randbelow(candidate - 3), odd, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(twos - 1):
            x = x * x % candidate
            if x == candidate - 1:
                break
        else:
            return False
    return True


def gabi_big_int(text: str, name: str) -> int:
    """A gabi JSON big integer's string: base64 (standard alphabet, padded) of big-endian bytes.

    Raises:
        CredentialVerificationError: ``decode-failed``, naming `name`.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise idemix_failure("decode-failed", f"{name} must be base64") from exc
    return int.from_bytes(raw, "big")


def _big(parent: Mapping[str, Any], name: str) -> int:
    """The gabi big integer `name` of a signer's message: a base64 string, nothing else."""
    text = parent.get(name)
    if not isinstance(text, str):
        raise idemix_failure("decode-failed", f"{name} must be a base64 string")
    return gabi_big_int(text, name)


def _members(value: object, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise idemix_failure("decode-failed", f"{what} must be an object")
    if not required <= value.keys() <= required | optional:
        raise idemix_failure("decode-failed", f"{what} must hold {sorted(required)}")
    if any(value[name] not in (None, {}) for name in optional & value.keys()):
        raise idemix_failure("decode-failed", f"{what}: {sorted(optional)} must be null")
    return value


def verify_issue_signature(
    message: Mapping[str, Any],
    *,
    key: IdemixPublicKey,
    commitment: int,
    nonce2: int,
    attributes: Sequence[bytes],
) -> None:
    """Check one ``issueSignatureMessage`` against what the gateway asked for.

    ``commitment`` (U) and ``nonce2`` (n_2) are the app's, from the IssueCommitmentMessage the
    gateway forwarded; ``attributes`` the byte values asked for, metadata first
    (`credential_attribute_values`); ``key`` the issuer key the session named.

    Raises:
        CredentialVerificationError: ``decode-failed`` (shape, members, encodings, more
            attributes than the key has bases) or ``bad-signature`` (``e`` out of range or
            not prime, the signature equation, the proof of ``1/e``).
    """
    body = _members(message, _MESSAGE_MEMBERS, _EMPTY_MEMBERS, "issueSignatureMessage")
    signature = _members(body["signature"], _SIGNATURE_MEMBERS, {"KeyshareP"}, "signature")
    proof = _members(body["proof"], _PROOF_MEMBERS, set(), "proof")
    a, e, v = _big(signature, "A"), _big(signature, "e"), _big(signature, "v")
    c, e_response = _big(proof, "c"), _big(proof, "e_response")
    if len(attributes) >= len(key.bases):
        raise idemix_failure("decode-failed", "more attributes than the key has bases")
    n, params = key.n, key.params
    if not 1 < a < n or not 1 < commitment < n:
        raise idemix_failure("bad-signature", "A or U outside (1, n)")
    # Bounds before any exponent is used: v is drawn below 2^Lv, c is a SHA-256 output and
    # e_response is reduced mod p'q' < n; nothing larger can come from gabi's issuer.
    if v.bit_length() > params.lv or c.bit_length() > _CHALLENGE_BITS or e_response >= n:
        raise idemix_failure("bad-signature", "v, c or e_response out of range")
    low = 1 << (params.le - 1)
    if not low <= e <= low + (1 << (params.le_prime - 1)) or not is_probable_prime(e):
        raise idemix_failure("bad-signature", "e is not a prime in its range")
    # CLSignature.Verify, with the app's commitment in place of S^v' * R_0^secret.
    q = powmod(a, e, n)
    product = q * powmod(key.s, v, n) % n * commitment % n
    for index, value in enumerate(attributes, start=1):
        exponent = attribute_exponent(attribute_int(value), params.lm)
        product = product * powmod(key.bases[index], exponent, n) % n
    if product != key.z:
        raise idemix_failure("bad-signature", "signature does not verify")
    # ProofS.Verify, Q = A^e.
    a_commit = powmod(a, c + e_response * e, n)
    if hash_commit([_CONTEXT, q, a, nonce2, a_commit]) != c:
        raise idemix_failure("bad-signature", "proof of the signature does not verify")
