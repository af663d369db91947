"""The domestic endpoints under `--domestic-scheme idemix`: answers as the Idemix server gives them.

- `/prepare_issue` → `{"issuerPkId": "VWS-TEST-0", "issuerNonce": b64, "credentialAmount": n}`,
  the nonce a random number of Lstatzk (128) bits, as gabi's ``common.GenerateNonce``;
- `/issue` reads the app's `n_2` and, for attribute set `i`, its `U` and the proof of it
  (``combinedProofs[i]``: ``U``, ``c``, ``v_prime_response``, ``s_response``) from its
  commitment; checks the proofs against the prepareIssueMessage's nonce, as the Idemix server
  does before it signs (refused as it refuses them: `PROOF_REFUSAL`); and answers per
  attribute set `{"issueSignatureMessage": {"proof": {"c", "e_response"},
  "signature": {"A", "e", "v", "KeyshareP": null}}, "attributes": [b64 metadata, b64 ...]}`;
- `/issue_static` → `{"qr": "NL2:...", "proofIdentifier": b64(SHA-256(C)[:16])}`.

gabi big integers are JSON strings: base64 of their big-endian bytes. Each CL signature costs
~15-20 ms of modular arithmetic (GMP, `fake_signer.idemix`), which holds the GIL: it runs in a pool
of worker processes, handed over from a thread so that the event loop neither computes nor
blocks on the pool's pipes. The check of the app's proofs (a few ms per credential) runs there
too. `bad-signature` flips the low bit of `A`; `wrong-kid` signs a metadata attribute naming an
issuerPkId nobody publishes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import multiprocessing
import os
import secrets
import signal
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from fake_signer import idemix
from fake_signer.errors import WireInputError
from fake_signer.hcert import proof_identifier

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from fake_signer.behaviour import FaultSpec
    from fake_signer.domestic import IssueRequest, NonceStore

_T = TypeVar("_T")

#: What `wrong-kid` appends to the issuerPkId in the metadata attribute it signs.
WRONG_KID_SUFFIX = "-UNPUBLISHED"
#: The most decimal digits a big integer written as a JSON number may have (n has 617).
MAX_NUMBER_DIGITS = 1300
#: Worker processes: one per core, at most two (the fake shares its machine with a gateway).
MAX_WORKERS = 2
#: Status and text of the Idemix server's answer to proofs of U that do not verify against the
#: issuer nonce: ``issuer/issuer.go`` ``Issue`` fails with the message after the colon (its
#: words, doubled "did" included) and ``issuer/server/server.go`` ``handleIssue`` answers any
#: failure of it with ``http.Error``: ``500``, plain text, prefixed "Could not issue
#: credentials" (minvws/nl-covid19-coronacheck-idemix).
PROOF_REFUSAL = (
    500,
    "Could not issue credentials: Holder commitments did did not verify against nonce",
)
#: The members of gabi's ``ProofU`` besides ``U``, as its JSON names them (``proofs.go``).
PROOF_MEMBERS = ("c", "v_prime_response", "s_response")


def _b64(value: int) -> str:
    return base64.b64encode(idemix.minimal_bytes(value)).decode("ascii")


def _big(parent: Mapping[str, Any], name: str, where: str) -> int:
    """A gabi big integer: base64 of big-endian bytes, or (as gabi also reads) a JSON integer."""
    value = parent.get(name)
    if isinstance(value, Decimal):
        # Digits first: turning a megabyte of them into an int would hold the loop for seconds.
        digits = len(value.as_tuple().digits)
        if digits <= MAX_NUMBER_DIGITS and value == value.to_integral_value() and value >= 0:
            return int(value)
        raise WireInputError(f"{where}.{name} must be a big integer of at most 1300 digits")
    if not isinstance(value, str):
        raise WireInputError(f"{where}.{name} must be a base64 big integer")
    try:
        return int.from_bytes(base64.b64decode(value, validate=True), "big")
    except (binascii.Error, ValueError):
        raise WireInputError(f"{where}.{name} must be a base64 big integer") from None


def commitment_proofs(
    commitment: Mapping[str, Any], n: int, credentials: int
) -> tuple[tuple[idemix.CommitmentProof, ...], int]:
    """Each credential's proof of `U` (its `combinedProofs` entry) and `n_2`.

    As gabi's multi-credential commitment, `combinedProofs` holds one proof per credential,
    in the order of the attribute sets: credential `i` is signed over `combinedProofs[i].U`.

    Raises:
        WireInputError: the proofs are not `credentials` objects, a `U`, `c`,
            `v_prime_response`, `s_response` or `n_2` is missing or not a big integer, or a
            `U` is outside (1, n).
    """
    proofs = commitment.get("combinedProofs")
    if not isinstance(proofs, list) or not all(isinstance(proof, dict) for proof in proofs):
        raise WireInputError("issueCommitmentMessage.combinedProofs must be a list of objects")
    if len(proofs) != credentials:
        raise WireInputError(
            f"issueCommitmentMessage holds {len(proofs)} proofs for {credentials} credentials"
        )
    read = [
        idemix.CommitmentProof(
            *(
                _big(proof, name, f"issueCommitmentMessage.combinedProofs[{index}]")
                for name in ("U", *PROOF_MEMBERS)
            )
        )
        for index, proof in enumerate(proofs)
    ]
    if not all(1 < proof.u < n for proof in read):
        raise WireInputError("issueCommitmentMessage U must lie strictly between 1 and n")
    return tuple(read), _big(commitment, "n_2", "issueCommitmentMessage")


def _issuer_pk_id(key: idemix.IdemixIssuerKey, fault: FaultSpec | None) -> str:
    if fault is not None and fault.kind == "wrong-kid":
        return key.issuer_pk_id + WRONG_KID_SUFFIX
    return key.issuer_pk_id


def _bad_signature(fault: FaultSpec | None) -> bool:
    return fault is not None and fault.kind == "bad-signature"


def _ignore_interrupts() -> None:
    """Worker start: a Ctrl-C reaches the whole process group; the fake itself handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call(pool: ProcessPoolExecutor, call: Callable[[], _T]) -> _T:
    """Run `call` in `pool` and wait for it (in a thread: waiting blocks)."""
    return pool.submit(call).result()


class IdemixSigner:
    """The Idemix issuer key and the worker processes that sign with it."""

    def __init__(self) -> None:
        """Sign with the published test key VWS-TEST-0."""
        self.key = idemix.test_issuer_key()
        self._pool: ProcessPoolExecutor | None = None

    @staticmethod
    def _start_pool() -> ProcessPoolExecutor:
        """A started pool: every worker spawned now, none later on the event loop's behalf."""
        workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
        pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_ignore_interrupts
        )
        for future in [pool.submit(os.getpid) for _ in range(workers)]:
            future.result()
        return pool

    async def start(self) -> None:
        """Start the worker processes (off the loop: spawning blocks).

        A stop during the start lets the workers come up, then stops them, so that none
        outlives the fake.
        """
        starting = asyncio.ensure_future(asyncio.to_thread(self._start_pool))
        try:
            self._pool = await asyncio.shield(starting)
        except asyncio.CancelledError:
            pool = await starting
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            raise

    async def close(self) -> None:
        """Stop the workers once the signings they run are done; drop those not begun."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def _run(self, call: Callable[[], _T]) -> _T:
        """`call` (a picklable partial) in a worker process."""
        if self._pool is None:
            raise RuntimeError("the Idemix workers start with the application")
        return await asyncio.to_thread(_call, self._pool, call)

    def check_commitment(self, request: IssueRequest) -> None:
        """Refuse an `/issue` without a usable proof of `U` per set and `n_2` (`WireInputError`)."""
        commitment_proofs(request.commitment, self.key.n, len(request.attributes))

    async def verify_commitment(self, request: IssueRequest) -> None:
        """Refuse an `/issue` whose proofs of `U` do not hold for its issuer nonce.

        Off the loop: the check exponentiates modulo `n` per credential.

        Raises:
            WireInputError: with `PROOF_REFUSAL`'s status and text, as the Idemix server
                answers; also as `check_commitment`.
        """
        proofs, _ = commitment_proofs(request.commitment, self.key.n, len(request.attributes))
        # The nonce is one this fake handed out (checked first): base64 of a big integer.
        nonce1 = int.from_bytes(base64.b64decode(request.nonce), "big")
        verified = await self._run(
            functools.partial(idemix.commitment_proofs_verify, self.key, proofs, nonce1)
        )
        if not verified:
            status, text = PROOF_REFUSAL
            raise WireInputError(text, status=status)

    def prepare_issue_response(self, nonces: NonceStore, amount: int) -> bytes:
        """A fresh single-use nonce of Lstatzk bits for an issuance of `amount` credentials."""
        nonce = _b64(secrets.randbits(idemix.LSTATZK))
        nonces.remember(nonce, amount)
        return orjson.dumps(
            {"issuerPkId": self.key.issuer_pk_id, "issuerNonce": nonce, "credentialAmount": amount}
        )

    async def issue_response(
        self, request: IssueRequest, nonces: NonceStore, fault: FaultSpec | None
    ) -> bytes:
        """Use the nonce up, then CL-sign every attribute set with the app's commitment.

        The sets are signed in parallel, one task each in the worker pool.

        Raises:
            WireInputError: the commitment holds no usable proof of `U` per set or `n_2`, or
                the nonce was used meanwhile.
        """
        proofs, nonce2 = commitment_proofs(request.commitment, self.key.n, len(request.attributes))
        nonces.consume(request.nonce, wanted=len(request.attributes))
        pk_id = _issuer_pk_id(self.key, fault)
        values = [idemix.attribute_values(attrs, pk_id) for attrs in request.attributes]
        signatures = await asyncio.gather(
            *(
                self._run(
                    functools.partial(
                        idemix.sign_commitment,
                        self.key,
                        proof.u,
                        nonce2,
                        [idemix.attribute_int(v) for v in attribute_values],
                    )
                )
                for proof, attribute_values in zip(proofs, values, strict=True)
            )
        )
        flip = _bad_signature(fault)
        return orjson.dumps(
            [
                {
                    "issueSignatureMessage": {
                        "proof": {"c": _b64(s.c), "e_response": _b64(s.e_response)},
                        "signature": {
                            "A": _b64(s.a ^ 1 if flip else s.a),
                            "e": _b64(s.e),
                            "v": _b64(s.v),
                            "KeyshareP": None,
                        },
                    },
                    "attributes": [base64.b64encode(v).decode("ascii") for v in attribute_values],
                }
                for s, attribute_values in zip(signatures, values, strict=True)
            ]
        )

    async def issue_static_response(
        self, attributes: dict[str, str], fault: FaultSpec | None
    ) -> bytes:
        """An "NL2:" QR disclosing `attributes` at time 0, and its proof identifier."""
        key = self.key
        if fault is not None and fault.kind == "wrong-kid":
            key = key.renamed(_issuer_pk_id(key, fault))
        flip = _bad_signature(fault)
        proof = await self._run(
            functools.partial(idemix.issue_static, key, attributes, flip_a=flip)
        )
        identifier = proof_identifier(idemix.minimal_bytes(proof.challenge))
        return orjson.dumps({"qr": proof.qr, "proofIdentifier": identifier})
