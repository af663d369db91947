"""Worker processes for the idemix scheme's checks, off the event loop and outside the GIL.

One check costs ~4 ms (an app's proof of U), ~7 ms (a static QR) or ~13 ms (an issued
signature) of CPU, nearly all of it in GMP's modular exponentiation (gmpy2), which holds the
GIL: on the loop, or in a thread, it would stall every other request for that long, and a
session's 28 credentials ~0.48 s with their proofs.
So the checks run in a `ProcessPoolExecutor` whose workers are started by ``forkserver``
(never ``fork``: the gateway runs threads, and a forked child inherits their locks in whatever
state they were), each handed the issuer keys once by its initializer.

- At most ``max_in_flight`` checks are queued or running at once; more wait for a slot, inside
  their request's deadline. Waiting, a request gives its CPU permit back (`cpu_gate.io_wait`).
- A cancelled request cancels its check if no worker has taken it yet.
- A worker that dies (killed, out of memory) breaks the whole executor: every check in it
  fails. Those requests are answered 503 ``verification-unavailable`` (`VerificationUnavailable`)
  and a new executor replaces the broken one in the background; until it is up, checks are
  answered the same at once and the ``idemix-checks`` readiness probe fails.
- Shutdown cancels the checks still queued and stops the workers.

Submitting runs in a thread: the executor starts a worker process, and wakes its manager
thread through a pipe, in the submitting thread, both blocking calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from signing_gateway.errors import VerificationUnavailable
from signing_gateway.runtime.cpu_gate import io_wait
from signing_gateway.verification.idemix_answers import (
    check_issued_credential,
    check_static_answer,
    issue_commitments,
    read_app_commitment,
    session_key,
)
from signing_gateway.verification.idemix_commitment import (
    CommitmentProof,
    check_challenge,
    check_proof_list,
    commitment_contribution,
    read_commitment_proofs,
)
from signing_gateway.verification.idemix_issuance import gabi_big_int

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

    from signing_gateway.verification.idemix_keys import IdemixPublicKey

__all__ = ["IdemixCheckPool"]

logger = logging.getLogger(__name__)

#: Commitments up to this size are read on the event loop (well under a millisecond); longer
#: ones in a thread, as `issuance.commitment` checks them.
_INLINE_COMMITMENT_BYTES = 12 * 1024

P = ParamSpec("P")
T = TypeVar("T")

#: The issuer keys of a worker process, set once by its initializer.
_worker_keys: Mapping[str, IdemixPublicKey] = {}


def _install_keys(keys: Mapping[str, IdemixPublicKey]) -> None:
    """Worker initializer: keep the issuer keys for every check the worker runs."""
    global _worker_keys  # noqa: PLW0603 - the worker's one piece of state
    _worker_keys = keys


def _worker_pid() -> int:
    """A worker's process id (start-up runs it once per worker, starting them all)."""
    return os.getpid()


def _static_check(qr: str, proof_identifier: str, expected: dict[str, str]) -> None:
    check_static_answer(qr, proof_identifier, keys=_worker_keys, expected_attributes=expected)


def _issued_credential_check(
    item: dict[str, Any], commitment: int, nonce2: int, issuer_pk_id: str, expected: dict[str, str]
) -> None:
    check_issued_credential(
        item,
        key=session_key(_worker_keys, issuer_pk_id),
        commitment=commitment,
        nonce2=nonce2,
        issuer_pk_id=issuer_pk_id,
        expected=expected,
    )


def _commitment_contribution(proof: CommitmentProof, issuer_pk_id: str) -> int:
    return commitment_contribution(proof, _worker_keys[issuer_pk_id])


class IdemixCheckPool:
    """The check workers: `start` and `close` them with the app; `verify_*` run one check."""

    def __init__(
        self,
        keys: Mapping[str, IdemixPublicKey],
        *,
        workers: int,
        max_in_flight: int,
    ) -> None:
        """Check against `keys` in `workers` processes, `max_in_flight` checks at once."""
        self._keys = dict(keys)
        self._workers = workers
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._executor: ProcessPoolExecutor | None = None
        self._replacing: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.replacements = 0
        self._pids: tuple[int, ...] = ()

    def _started_executor(self) -> tuple[ProcessPoolExecutor, tuple[int, ...]]:
        """A new executor with every worker started and its keys installed (blocking)."""
        executor = ProcessPoolExecutor(
            self._workers,
            mp_context=get_context("forkserver"),
            initializer=_install_keys,
            initargs=(self._keys,),
        )
        try:
            # Each submit starts a worker while none is idle: these start all of them.
            futures = [executor.submit(_worker_pid) for _ in range(self._workers)]
            pids = tuple(future.result() for future in futures)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        return executor, pids

    async def start(self) -> None:
        """Start the workers (in a thread: starting processes blocks)."""
        self._executor, self._pids = await asyncio.to_thread(self._started_executor)

    async def close(self) -> None:
        """Cancel the checks still queued and stop the workers."""
        if self._replacing is not None:
            # Waited for, not cancelled: the thread starting the new workers would go on, and
            # its executor would be left running with nothing to stop it.
            await asyncio.gather(self._replacing, return_exceptions=True)
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    @property
    def up(self) -> bool:
        """Whether checks can run now (False while broken workers are being replaced)."""
        return self._executor is not None

    def worker_pids(self) -> tuple[int, ...]:
        """The process ids of the workers started last."""
        return self._pids

    async def probe(self) -> None:
        """Readiness: fails while the workers are being replaced."""
        if not self.up:
            raise VerificationUnavailable("the Idemix check workers are being replaced")

    def snapshot(self) -> dict[str, Any]:
        """The /readyz view."""
        return {
            "up": self.up,
            "workers": self._workers,
            "maxInFlight": self._max_in_flight,
            "inFlight": self._in_flight,
            "replacements": self.replacements,
        }

    def _broken(self, executor: ProcessPoolExecutor) -> None:
        """`executor` lost a worker: put a new one in its place, in the background."""
        if self._executor is not executor:
            return  # already being replaced
        self._executor = None
        self._replacing = asyncio.get_running_loop().create_task(self._replace(executor))

    async def _replace(self, broken: ProcessPoolExecutor) -> None:
        logger.error("an Idemix check worker died; replacing the workers")
        try:
            await asyncio.to_thread(broken.shutdown, wait=True, cancel_futures=True)
            self._executor, self._pids = await asyncio.to_thread(self._started_executor)
        except Exception:
            # Left down: every check is answered 503 and readiness fails, so the instance
            # is taken out of service and restarted rather than serving without checks.
            logger.exception("the Idemix check workers could not be replaced")
            return
        finally:
            self._replacing = None
        self.replacements += 1

    async def _run(self, part: str, check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`check`'s result, run in a worker; VerificationUnavailable if the workers are gone."""
        async with io_wait(), self._slots:
            executor = self._executor
            if executor is None:
                raise _unavailable(part)
            self._in_flight += 1
            try:
                future = await asyncio.to_thread(executor.submit, check, *args, **kwargs)
                return await asyncio.wrap_future(future)
            except BrokenProcessPool as exc:
                self._broken(executor)
                raise _unavailable(part) from exc
            finally:
                self._in_flight -= 1

    async def verify_static(
        self, qr: str, proof_identifier: str, *, expected: Mapping[str, str], part: str
    ) -> None:
        """`check_static_answer` in a worker.

        Raises:
            CredentialVerificationError: the QR does not verify.
            VerificationUnavailable: the workers are gone (being replaced).
        """
        await self._run(part, _static_check, qr, proof_identifier, dict(expected))

    async def verify_issue(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        commitment: bytes,
        issuer_pk_id: str,
        expected: Sequence[Mapping[str, str]],
        part: str,
    ) -> None:
        """`check_issue_answer`, each item's check in a worker of its own, all at once.

        The first refusal cancels the checks no worker has taken yet.

        Raises:
            CredentialVerificationError: an item does not verify.
            VerificationUnavailable: the workers are gone (being replaced).
        """
        app = await _read(read_app_commitment, commitment)
        commitments = issue_commitments(items, app, expected)
        session_key(self._keys, issuer_pk_id)
        await _all_at_once(
            self._run(
                part,
                _issued_credential_check,
                dict(item),
                u,
                app.nonce2,
                issuer_pk_id,
                dict(attributes),
            )
            for item, attributes, u in zip(items, expected, commitments, strict=True)
        )

    async def verify_commitment_proofs(
        self,
        commitment: bytes,
        *,
        issuer_pk_id: str,
        issuer_nonce: str,
        count: int,
        part: str,
    ) -> None:
        """Verify the app's proofs of its commitments U (`idemix_commitment`) for a session.

        ``issuer_pk_id`` and ``issuer_nonce`` are the session's prepare message's: the Idemix
        server verifies the proofs with the key that issuerPkId names and that nonce. The
        sizes are checked here; each proof's exponentiations run in a worker of its own, all
        at once, and the challenge over their results is hashed here.

        Raises:
            CommitmentProofError: the proofs fail (the app's input).
            CredentialVerificationError: ``unknown-kid`` (no key configured for the session's
                issuerPkId) or ``decode-failed`` (its issuerNonce is not a gabi big integer):
                the signer's session, not the app, is at fault.
            VerificationUnavailable: the workers are gone (being replaced).
        """
        key = session_key(self._keys, issuer_pk_id)
        nonce1 = gabi_big_int(issuer_nonce, "issuerNonce")
        proofs = await _read(read_commitment_proofs, commitment)
        check_proof_list(proofs, key, count=count)
        contributions = await _all_at_once(
            self._run(part, _commitment_contribution, proof, issuer_pk_id) for proof in proofs
        )
        check_challenge(proofs, contributions, nonce1)


async def _read(reader: Callable[[bytes], T], commitment: bytes) -> T:
    """`reader`'s result for the app's commitment: in a thread when it is long."""
    if len(commitment) <= _INLINE_COMMITMENT_BYTES:
        return reader(commitment)
    # Parsing grows with the input (up to 64 KiB).
    return await asyncio.to_thread(reader, commitment)


async def _all_at_once(runs: Iterable[Awaitable[T]]) -> list[T]:
    """The results of `runs`, run concurrently; the first failure cancels the others."""
    tasks = [asyncio.ensure_future(run) for run in runs]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _unavailable(part: str) -> VerificationUnavailable:
    return VerificationUnavailable(
        f"{part}: the credential could not be verified now and was not released; retry",
        part=part,
    )
