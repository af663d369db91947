"""Domestic issuance: static QR codes and the two-step (prepare, issue) session flow."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from signing_gateway.domain.domestic import (
    DomesticAttributes,
    DomesticPolicy,
    check_domestic_policy,
)
from signing_gateway.domain.errors import FieldError
from signing_gateway.errors import CommitmentProofFailed
from signing_gateway.issuance.commitment import simulation_commitment_problem
from signing_gateway.issuance.deadline import SignerAttempt
from signing_gateway.issuance.faults import call_signer, rejected_credential
from signing_gateway.issuance.session import HeldSession
from signing_gateway.issuance.stoken import StokenStore
from signing_gateway.observability.telemetry import record_commitment_proof_verdict
from signing_gateway.resilience.policy import SignerPolicy
from signing_gateway.signers.domestic import DomesticSignerClient
from signing_gateway.verification.domestic import verify_issue_signatures, verify_static_qr
from signing_gateway.verification.errors import CommitmentProofError, CredentialVerificationError
from signing_gateway.verification.trust import DomesticTrustStore

if TYPE_CHECKING:
    # Imported in the idemix scheme only, with the Idemix checks and gmpy2 (see `app`).
    from signing_gateway.runtime.idemix_pool import IdemixCheckPool

#: The domestic signer's endpoints issuance calls (the `endpoint` label of its retries).
SIGNER_ENDPOINTS = ("issue_static", "prepare_issue", "issue")


@dataclass(frozen=True, slots=True)
class IssuedStaticProof:
    """A verified static (printable) domestic QR code."""

    qr: str
    proof_identifier: str


def _now() -> datetime:
    """The time the attribute policy is checked at."""
    return datetime.now(UTC)


def encode_message(message: object) -> str:
    """Base64 of the compact JSON of a signer message, as the public API carries them."""
    return base64.b64encode(orjson.dumps(message)).decode("ascii")


class DomesticIssuer:
    """Issues domestic credentials through one domestic signer and verifies them."""

    def __init__(
        self,
        *,
        client: DomesticSignerClient,
        signer_policy: SignerPolicy,
        trust: DomesticTrustStore,
        policy: DomesticPolicy,
        stokens: StokenStore,
        credential_amount: int,
        idemix: IdemixCheckPool | None = None,
    ) -> None:
        """Wire the signer client and its call policy, keys, attribute policy and sessions.

        With `idemix` (the idemix scheme), credentials are checked as Idemix ones in its
        workers, against its issuer keys; `trust` is not used then.
        """
        self._client = client
        self._idemix = idemix
        self.signer_policy = signer_policy
        self._trust = trust
        self._policy = policy
        self._stokens = stokens
        self._amount = credential_amount

    @property
    def credential_amount(self) -> int:
        """How many credentials one issuance session may create."""
        return self._amount

    def check_one(
        self, attributes: DomesticAttributes, *, loc: tuple[str | int, ...]
    ) -> list[FieldError]:
        """Policy errors of one attribute set, located under `loc` (no I/O)."""
        return check_domestic_policy(attributes, self._policy, now=_now(), loc=loc)

    def check_many(
        self, attributes: Sequence[DomesticAttributes], *, loc: tuple[str | int, ...]
    ) -> list[FieldError]:
        """Policy errors of a session's attribute sets, each located under `loc` + index."""
        errors = [
            error
            for index, attrs in enumerate(attributes)
            for error in self.check_one(attrs, loc=(*loc, index))
        ]
        if len(attributes) > self._amount:
            errors.append(
                FieldError(loc=loc, msg=f"at most {self._amount} credentials per session")
            )
        return errors

    async def issue_static(
        self, attributes: DomesticAttributes, *, part: str, headers: Mapping[str, str]
    ) -> IssuedStaticProof:
        """Have the signer create a static QR code and verify it before release."""
        wire = attributes.wire()
        result = await call_signer(
            part,
            SignerAttempt(self._client.issue_static, wire, headers=headers),
            policy=self.signer_policy,
            endpoint="issue_static",
            # No signer-side state: a replay signs the same attributes again, harmlessly.
            replay_safe=True,
        )
        try:
            if self._idemix is not None:
                await self._idemix.verify_static(
                    result.qr, result.proof_identifier, expected=wire, part=part
                )
            else:
                verify_static_qr(
                    result.qr,
                    trust=self._trust,
                    expected_attributes=wire,
                    proof_identifier=result.proof_identifier,
                )
        except CredentialVerificationError as exc:
            raise rejected_credential(exc, part=part, signer="domestic") from exc
        return IssuedStaticProof(result.qr, result.proof_identifier)

    async def prepare_issue(
        self, *, owner: str, headers: Mapping[str, str]
    ) -> tuple[str, dict[str, Any]]:
        """Open an issuance session at the signer for the caller `owner` (its subject).

        Returns the stoken and the signer message; only `owner` can use the stoken.
        """
        message = await call_signer(
            "domestic",
            SignerAttempt(self._client.prepare_issue, self._amount, headers=headers),
            policy=self.signer_policy,
            endpoint="prepare_issue",
            # A replay only leaves an unused nonce behind, which the signer expires.
            replay_safe=True,
        )
        stoken = await self._stokens.open(message, owner=owner)
        return stoken, message

    def hold_session(self, stoken: str, *, owner: str) -> HeldSession:
        """``async with``: take `owner`'s session of `stoken` for one issue (see session.py)."""
        return HeldSession(self._stokens, stoken, owner=owner)

    async def check_commitment(
        self, *, session: HeldSession, commitment: bytes, count: int, part: str
    ) -> None:
        """Check the app's commitment for `session` before any signer call.

        In the idemix scheme, verify the app's proofs of its commitments U: the Idemix server
        verifies them too, but answers a failing proof 500, which the gateway would answer
        502 and count against the signer's breaker. Verified with the session's issuer nonce
        and the configured key its issuerPkId names, as the server does; `count` is the number
        of credentials asked for, one proof each. A check that reaches a verdict, passed or
        refused, is counted as checked; one that cannot run, or a session the gateway cannot
        check against, is not.

        The simulation scheme's commitments are not Idemix: there the commitment must name the
        session's issuerNonce and hold no number past a double's range, as the simulation
        signer demands (`issuance.commitment.simulation_commitment_problem`); its refusal
        would reach the caller as a 502 with the session used up, and log an error.

        Raises:
            CommitmentProofFailed: (422, at ``issueCommitmentMessage``) the proofs fail, or
                the simulation signer would refuse the commitment.
            CredentialRejected: (502) the session names a key the gateway does not have, or
                its nonce cannot be read: what the signer would sign could not be verified.
            VerificationUnavailable: (503) the check workers are being replaced.
        """
        message = session.prepare_issue_message
        if self._idemix is None:
            problem = await simulation_commitment_problem(
                commitment, issuer_nonce=str(message.get("issuerNonce", ""))
            )
            if problem is not None:
                loc, msg = problem
                raise CommitmentProofFailed(
                    [FieldError(loc=("issueCommitmentMessage", *loc), msg=msg)]
                )
            return
        try:
            await self._idemix.verify_commitment_proofs(
                commitment,
                issuer_pk_id=str(message.get("issuerPkId", "")),
                issuer_nonce=str(message.get("issuerNonce", "")),
                count=count,
                part=part,
            )
        except CommitmentProofError as exc:
            record_commitment_proof_verdict(refused=True)
            loc = ("issueCommitmentMessage", *exc.loc)
            raise CommitmentProofFailed([FieldError(loc=loc, msg=exc.msg)]) from exc
        except CredentialVerificationError as exc:
            # The session's key or nonce, not the app's proofs: no verdict on them.
            raise rejected_credential(exc, part=part, signer="domestic", signed=False) from exc
        record_commitment_proof_verdict(refused=False)

    async def issue(
        self,
        *,
        session: HeldSession,
        commitment: bytes,
        attributes: Sequence[DomesticAttributes],
        part: str,
        headers: Mapping[str, str],
    ) -> list[dict[str, Any]]:
        """Have the signer create the session's credentials and verify every signature.

        `commitment` is the app's, as `issuance.commitment.decode_commitment` checked it,
        and its proofs as `check_commitment` verified them.
        """
        wires = [a.wire() for a in attributes]
        prepare_issue_message = session.prepare_issue_message
        attempt = SignerAttempt(
            self._client.issue,
            prepare_issue_message=prepare_issue_message,
            issue_commitment_message=commitment,
            credentials_attributes=wires,
            headers=headers,
        )
        items = await call_signer(
            part,
            # Each attempt tells the session whether the signer may have seen it.
            partial(session.attempt, attempt),
            policy=self.signer_policy,
            endpoint="issue",
            # Bound to a single-use nonce: once the request may have reached the signer it
            # may have consumed the nonce, so only never-sent or throttled calls are retried.
            replay_safe=False,
        )
        issuer_pk_id = str(prepare_issue_message.get("issuerPkId", ""))
        try:
            if self._idemix is not None:
                await self._idemix.verify_issue(
                    items,
                    commitment=commitment,
                    issuer_pk_id=issuer_pk_id,
                    expected=wires,
                    part=part,
                )
            else:
                verify_issue_signatures(
                    items,
                    trust=self._trust,
                    issuer_nonce=str(prepare_issue_message.get("issuerNonce", "")),
                    issuer_pk_id=issuer_pk_id,
                    expected_attributes=wires,
                )
        except CredentialVerificationError as exc:
            raise rejected_credential(exc, part=part, signer="domestic") from exc
        return items
