r"""CL signatures and disclosure proofs as CoronaCheck's Idemix server makes them, by GMP (gmpy2).

Sources: ``privacybydesign/gabi`` (``issuer.go`` ``signMessageBlockAndCommitment`` and
``proveSignature``, ``clsignature.go`` ``Randomize``, ``credential.go``
``CreateDisclosureProof``, ``internal/common`` ``HashCommit``; ``proofs.go`` ``ProofU``,
``prooflist.go`` ``ProofList.Verify``, ``gabikeys/sysparams.go`` for the app's proof of ``U``)
and ``minvws/nl-covid19-coronacheck-idemix`` (``issuer`` ``Issue`` and ``IssueStatic``,
``common``: the metadata attribute, attribute encoding, ``ProofSerializationV2``,
``CalculateProofIdentifier``).

Before signing, the Idemix server checks the app's proofs of knowledge of the secrets in its
commitments (``issuer.go`` ``Issue``: ``ProofList.Verify`` with context 1, the prepare
message's issuer nonce ``n_1``, no keyshare server), as `commitment_proofs_verify` does::

    U_commit_i = U_i^(-c_i) * S^(v'_response_i) * R_0^(s_response_i)  (mod n)
    c_i = HashCommit([1, U_1, U_commit_1, .., U_k, U_commit_k, n_1])   for every proof i
    0 <= v'_response_i <= 2^(LvPrimeCommit+1) - 1,  s_response_i the same in every proof

Issuing over an app's commitment ``U = S^v' * R_0^secret`` with attributes ``m_1 .. m_k``
(the metadata first)::

    e  a random prime in [2^(Le-1), 2^(Le-1) + 2^(LePrime-1)],  v'' random of Lv bits
    A  = (Z / (S^v'' * U * prod R_i^m_i))^(1/e mod p'q')  (mod n)
    ProofS: Q = A^e, c = HashCommit([1, Q, A, n_2, Q^r]), e_response = r - c/e  (mod p'q')

A static (paper) credential is issued the same way to a holder secret made here, then shown
in a disclosure proof (gabi ``ProofD``) disclosing every attribute but the secret, at
disclosure time 0; the QR is ``"NL2:"`` and minvws/base45-go's Base45 (the DER as one number)
of ``SEQUENCE { INTEGER time, INTEGER C, INTEGER A, INTEGER EResponse, INTEGER VResponse,
INTEGER AResponse, SEQUENCE OF INTEGER ADisclosed }``.

The fake holds the private primes, so every exponentiation modulo ``n`` is done by CRT modulo
``p`` and ``q`` (about four times faster, the same numbers), each by GMP (`_powmod`, gmpy2:
several times faster than ``pow``); the numbers stay Python ints outside it. This code is
CPU-bound (milliseconds per credential) and runs in worker processes
(`fake_signer.idemix_signer`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gmpy2

from fake_signer import idemix_test_key
from fake_signer.base45 import ALPHABET
from fake_signer.domestic import ATTRIBUTE_NAMES

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

#: gabi ``DefaultSystemParameters[2048]`` (Lh 256, Lstatzk 128): the sizes an issuer and a
#: disclosing holder draw their numbers with.
LE, LE_PRIME, LM, LV, LV_PRIME, LSTATZK = 645, 120, 256, 2820, 2176, 128
LE_COMMIT, LM_COMMIT, LV_COMMIT, LRA = 504, 640, 3204, 2176
#: gabi's ``LvPrimeCommit`` (Ln + 2 Lstatzk + Lh): a proof of ``U``'s ``v_prime_response`` is at
#: most ``2^(LvPrimeCommit+1) - 1`` (``ProofU.correctResponseSizes``).
LV_PRIME_COMMIT = 2560
#: The bits of a challenge: SHA-256's.
LCHALLENGE = 256
#: gabi's context for CoronaCheck proofs (``common.BigOne``).
CONTEXT = 1
STATIC_DISCLOSURE_TIME = 0
QR_PREFIX = "NL2:"
#: The named attributes of each credential version, in gabi order from attribute 2.
NAMES_V2 = ATTRIBUTE_NAMES
NAMES_V3 = (*NAMES_V2, "category")
_PRIME_ROUNDS = 40
_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def _powmod(base: int, exponent: int, modulus: int) -> int:
    """``pow(base, exponent, modulus)`` by GMP, as a Python int (``ValueError`` as ``pow``)."""
    return int(gmpy2.powmod(base, exponent, modulus))


@dataclass(frozen=True, slots=True)
class IdemixIssuerKey:
    """An Idemix issuer key pair: public ``n, Z, S, R_0..`` and the safe primes ``p, q``."""

    issuer_pk_id: str
    n: int
    z: int
    s: int
    bases: tuple[int, ...]
    p: int
    q: int

    def renamed(self, issuer_pk_id: str) -> IdemixIssuerKey:
        """The same key under another issuerPkId (what `wrong-kid` signs with)."""
        return dataclasses.replace(self, issuer_pk_id=issuer_pk_id)

    @property
    def order(self) -> int:
        """``p'q'``, the order of the group of quadratic residues modulo ``n``."""
        return (self.p - 1) // 2 * ((self.q - 1) // 2)

    def pow(self, base: int, exponent: int) -> int:
        """``base^exponent mod n`` by CRT; ``exponent`` may be negative (base invertible)."""
        if exponent < 0:
            base, exponent = _powmod(base, -1, self.n), -exponent
        p, q = self.p, self.q
        mp = _powmod(base % p, exponent % (p - 1), p)
        mq = _powmod(base % q, exponent % (q - 1), q)
        return (mq + q * ((mp - mq) * _powmod(q, -1, p) % p)) % self.n


def test_issuer_key() -> IdemixIssuerKey:
    """The published CoronaCheck test key VWS-TEST-0 (`fake_signer.idemix_test_key`)."""
    k = idemix_test_key
    return IdemixIssuerKey(k.ISSUER_PK_ID, k.N, k.Z, k.S, k.BASES, k.P, k.Q)


@dataclass(frozen=True, slots=True)
class IssuedSignature:
    """One ``issueSignatureMessage``'s numbers (``v`` the issuer's part only)."""

    a: int
    e: int
    v: int
    c: int
    e_response: int


@dataclass(frozen=True, slots=True)
class CommitmentProof:
    """An app's commitment ``U`` and its proof of knowledge (gabi ``ProofU``)."""

    u: int
    c: int
    v_prime_response: int
    s_response: int


@dataclass(frozen=True, slots=True)
class StaticProof:
    """A static QR and its proof identifier (base64 comes later)."""

    qr: str
    challenge: int


# -- encodings ---------------------------------------------------------------------------------


def minimal_bytes(value: int) -> bytes:
    """Go's ``big.Int.Bytes``: big-endian, no leading zero byte (empty for 0)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:  # noqa: PLR2004 - DER short form
        return bytes((tag, length)) + content
    octets = minimal_bytes(length)
    return bytes((tag, 0x80 | len(octets))) + octets + content


def der_integer(value: int) -> bytes:
    """A DER INTEGER, two's complement in the fewest bytes (as Go's asn1 writes a big.Int)."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    return _der(0x02, value.to_bytes(size, "big", signed=True))


def der_sequence(items: Iterable[bytes]) -> bytes:
    """A DER SEQUENCE of already encoded items."""
    return _der(0x30, b"".join(items))


def hash_commit(values: Sequence[int]) -> int:
    """SHA-256 of DER ``SEQUENCE { INTEGER count, INTEGER value.. }``: gabi's ``HashCommit``."""
    encoded = der_sequence([der_integer(len(values)), *map(der_integer, values)])
    return int.from_bytes(hashlib.sha256(encoded).digest(), "big")


def qr_base45(payload: bytes) -> str:
    """minvws/base45-go: the payload as one base-45 number, most significant digit first."""
    value = int.from_bytes(payload, "big")
    digits = []
    while value:
        value, digit = divmod(value, 45)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def credential_version(attributes: Mapping[str, str]) -> int:
    """2, or 3 when the attributes hold a category (as the Idemix server picks it)."""
    return 3 if "category" in attributes else 2


def attribute_values(attributes: Mapping[str, str], issuer_pk_id: str) -> list[bytes]:
    """The bytes a credential signs: the metadata attribute, then each named attribute.

    Metadata: DER ``SEQUENCE { OCTET STRING credentialVersion, PrintableString issuerPkId }``.
    """
    version = credential_version(attributes)
    metadata = der_sequence([_der(0x04, bytes((version,))), _der(0x13, issuer_pk_id.encode())])
    names = NAMES_V3 if version == 3 else NAMES_V2  # noqa: PLR2004 - the category version
    return [metadata, *(attributes[name].encode("utf-8") for name in names)]


def attribute_int(value: bytes) -> int:
    """An attribute's bytes as gabi signs them: ``(int(value) << 1) + 1`` (present)."""
    return (int.from_bytes(value, "big") << 1) + 1


def _exponent(value: int) -> int:
    """An attribute as gabi raises a base to it: SHA-256 of it when longer than Lm bits."""
    if value.bit_length() <= LM:
        return value
    return int.from_bytes(hashlib.sha256(minimal_bytes(value)).digest(), "big")


# -- the app's proof of U ----------------------------------------------------------------------


def _commitment_contribution(key: IdemixIssuerKey, proof: CommitmentProof) -> int:
    """``U^(-c) * S^v'_response * R_0^s_response``: the ``U_commit`` a valid proof was made with."""
    n = key.n
    u_commit = key.pow(proof.u, -proof.c) * key.pow(key.s, proof.v_prime_response) % n
    return u_commit * key.pow(key.bases[0], proof.s_response) % n


def commitment_proofs_verify(
    key: IdemixIssuerKey, proofs: Sequence[CommitmentProof], nonce1: int
) -> bool:
    """Whether the app's proofs of its commitments hold for the issuer nonce ``nonce1``.

    As gabi's ``ProofList.Verify`` for ``ProofU`` proofs (see the module docstring): one
    challenge over every proof's ``U`` and reconstructed ``U_commit``, which each proof's ``c``
    must be; each ``v_prime_response`` in its range, and one ``s_response`` for all (one holder
    secret). An empty list does not verify. The cheap conditions are looked at first: a proof
    failing one of them cannot verify, so the answer is gabi's without the exponentiations.
    """
    limit = (1 << (LV_PRIME_COMMIT + 1)) - 1
    if (
        not proofs
        or len({proof.c for proof in proofs}) != 1
        or len({proof.s_response for proof in proofs}) != 1
        or proofs[0].c >> LCHALLENGE
        or any(not 0 <= proof.v_prime_response <= limit for proof in proofs)
    ):
        return False
    contributions: list[int] = []
    try:
        for proof in proofs:
            contributions += (proof.u, _commitment_contribution(key, proof))
    except ValueError:  # a U sharing a factor with n has no inverse: no proof holds for it
        return False
    return hash_commit([CONTEXT, *contributions, nonce1]) == proofs[0].c


# -- issuing -----------------------------------------------------------------------------------


def _is_probable_prime(candidate: int) -> bool:
    """Miller-Rabin with random bases."""
    for small in _SMALL_PRIMES:
        if candidate % small == 0:
            return False
    odd, twos = candidate - 1, 0
    while odd % 2 == 0:
        odd, twos = odd // 2, twos + 1
    for _ in range(_PRIME_ROUNDS):
        x = _powmod(2 + secrets.randbelow(candidate - 3), odd, candidate)
        if x in (1, candidate - 1):
            continue
        for _ in range(twos - 1):
            x = x * x % candidate
            if x == candidate - 1:
                break
        else:
            return False
    return True


def random_prime_e() -> int:
    """A prime as gabi's ``randomPrimeInRange(2^(Le-1), LePrime-1)`` draws it for ``e``."""
    while True:
        candidate = (1 << (LE - 1)) + secrets.randbits(LE_PRIME - 1) | 1
        if _is_probable_prime(candidate):
            return candidate


def sign_commitment(
    key: IdemixIssuerKey, commitment: int, nonce2: int, values: Sequence[int]
) -> IssuedSignature:
    """CL-sign ``values`` (attribute ints, metadata first) with the app's commitment ``U``."""
    n, e = key.n, random_prime_e()
    v = (1 << (LV - 1)) + secrets.randbits(LV - 1)
    denominator = key.pow(key.s, v) * commitment % n
    for index, value in enumerate(values, start=1):
        denominator = denominator * key.pow(key.bases[index], _exponent(value)) % n
    q = key.z * _powmod(denominator, -1, n) % n
    d = _powmod(e, -1, key.order)
    a = key.pow(q, d)
    # ProofS: Q = A^e is the message signed above, so Q is the q computed there.
    e_commit = secrets.randbelow(key.order - 1) + 1
    c = hash_commit([CONTEXT, q, a, nonce2, key.pow(q, e_commit)])
    e_response = (e_commit - c * d) % key.order
    return IssuedSignature(a=a, e=e, v=v, c=c, e_response=e_response)


def issue_static(
    key: IdemixIssuerKey, attributes: Mapping[str, str], *, flip_a: bool = False
) -> StaticProof:
    """A static QR over ``attributes``: IssueStatic's holder, credential and disclosure proof.

    ``flip_a`` flips the low bit of the disclosed ``A'`` after the proof is made (the fake's
    ``bad-signature``), so the QR no longer verifies.
    """
    n = key.n
    secret = secrets.randbits(LM)
    v_prime = secrets.randbits(LV_PRIME)
    commitment = key.pow(key.s, v_prime) * key.pow(key.bases[0], secret) % n
    values = [attribute_int(value) for value in attribute_values(attributes, key.issuer_pk_id)]
    signature = sign_commitment(key, commitment, secrets.randbits(LSTATZK), values)
    v = signature.v + v_prime
    # Randomize: A' = A * S^r, v' = v - e*r.
    r = secrets.randbits(LRA)
    a = signature.a * key.pow(key.s, r) % n
    v -= signature.e * r
    e_commit, v_commit = secrets.randbits(LE_COMMIT), secrets.randbits(LV_COMMIT)
    secret_commit = secrets.randbits(LM_COMMIT)
    z = key.pow(a, e_commit) * key.pow(key.s, v_commit) % n
    z = z * key.pow(key.bases[0], secret_commit) % n
    time_digest = hashlib.sha256(str(STATIC_DISCLOSURE_TIME).encode("ascii")).digest()
    nonce = int.from_bytes(time_digest[: LSTATZK // 8], "big")
    c = hash_commit([CONTEXT, a, z, nonce])
    e_response = e_commit + c * (signature.e - (1 << (LE - 1)))
    v_response = v_commit + c * v
    secret_response = secret_commit + c * secret
    proof = der_sequence(
        [
            der_integer(STATIC_DISCLOSURE_TIME),
            der_integer(c),
            der_integer(a ^ 1 if flip_a else a),
            der_integer(e_response),
            der_integer(v_response),
            der_integer(secret_response),
            der_sequence(map(der_integer, values)),
        ]
    )
    return StaticProof(qr=QR_PREFIX + qr_base45(proof), challenge=c)
