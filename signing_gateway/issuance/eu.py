"""EU DCC issuance: resolve the expiry, have the EU signer sign, verify before release."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from signing_gateway.domain.dcc import EuRequest, KeyUsage, resolve_expiration
from signing_gateway.domain.errors import DomainValidationError, FieldError
from signing_gateway.errors import SignerUnavailable
from signing_gateway.issuance.deadline import SignerAttempt
from signing_gateway.issuance.faults import call_signer, rejected_credential
from signing_gateway.resilience.policy import SignerPolicy
from signing_gateway.signers.eu import (
    MAX_CREDENTIAL_REQUEST_BYTES,
    EuCredentialRequest,
    EuSignerClient,
    credential_request,
)
from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.hcert import verify_eu_credential
from signing_gateway.verification.trust import EuTrustStore, SigningStatus

#: The EU signer's endpoints issuance calls (the `endpoint` label of its retries).
SIGNER_ENDPOINTS = ("get_credential",)


@dataclass(frozen=True, slots=True)
class PreparedEuRequest:
    """A validated EU request with its expiry fixed, ready to send.

    It keeps only what signing and verification need, not the request model: a request
    waiting at the signer holds this, so the parsed request can be freed meanwhile. Its DCC
    is held only as the encoded signer request, which verification reads back.
    """

    signer_request: EuCredentialRequest
    uvci: str
    key_usage: KeyUsage
    expiration_time: datetime


@dataclass(frozen=True, slots=True)
class IssuedEuCredential:
    """A credential the gateway has verified and may release."""

    credential: str
    proof_identifier: str
    kid: str  # base64
    key_usage: KeyUsage
    expiration_time: datetime
    uvci: str


#: The longest `Retry-After` of a 503 for a key usage without a DSC valid now, and the one given
#: when none of its DSCs will become valid: the trust is read at start-up, so only a restart with
#: a new DSC (a rollout: minutes) ends that. A caller that honours it asks again every few
#: minutes, not every second, and comes back within minutes of a fix.
NO_SIGNING_CERTIFICATE_RETRY_AFTER = 300.0


def _signing_certificate_wait(trust: EuTrustStore, key_usage: KeyUsage, now: datetime) -> float:
    """Seconds until a DSC of `key_usage` becomes valid, at most (and if none will) the limit."""
    starts = trust.next_signing_start(key_usage, now=now)
    if starts is None:
        return NO_SIGNING_CERTIFICATE_RETRY_AFTER
    return min((starts - now).total_seconds(), NO_SIGNING_CERTIFICATE_RETRY_AFTER)


def _no_signing_certificate(status: SigningStatus, key_usage: KeyUsage) -> str:
    """The 503 detail when ``key_usage`` has no DSC valid now (no URL, no certificate data)."""
    if status is SigningStatus.MISSING:
        return f"no signing certificate is configured for key usage {key_usage.value}"
    state = "is not yet valid" if status is SigningStatus.NOT_YET_VALID else "has expired"
    return f"the EU signer's certificate for key usage {key_usage.value} {state}"


def part_name(loc: tuple[str | int, ...]) -> str:
    """The problem's ``part`` for the EU request at body location ``loc``.

    ``()`` (the whole body of ``/v1/dcc``) and ``("european",)`` give ``european``;
    ``("european", 2)`` gives ``european[2]``, as the signer failures of that request say.
    """
    name = "european"
    for step in loc[1:]:
        name += f"[{step}]"
    return name


def _too_big_to_sign(signer_request: EuCredentialRequest, loc: tuple[str | int, ...]) -> FieldError:
    """The error for a DCC whose signer request is over `MAX_CREDENTIAL_REQUEST_BYTES`."""
    return FieldError(
        loc=(*loc, "dcc"),
        msg=(
            f"the DCC encodes to {len(signer_request.content)} bytes to sign, over the "
            f"{MAX_CREDENTIAL_REQUEST_BYTES} whose credential is sure to fit what the signer "
            "may answer"
        ),
    )


class EuIssuer:
    """Issues EU DCCs through one EU signer and verifies every one before release."""

    def __init__(
        self,
        *,
        client: EuSignerClient,
        signer_policy: SignerPolicy,
        trust: EuTrustStore,
        default_validity: Mapping[KeyUsage, timedelta],
        max_clock_skew: timedelta,
    ) -> None:
        """Wire the signer client and its call policy, the DSC trust store and the expiry policy."""
        self._client = client
        self.signer_policy = signer_policy
        self._trust = trust
        self._default_validity = dict(default_validity)
        self._skew = max_clock_skew

    def prepare(self, request: EuRequest, *, loc: tuple[str | int, ...] = ()) -> PreparedEuRequest:
        """Check the parts of a request that need policy and the DSC (no I/O).

        Raises DomainValidationError with locations under `loc` (at its ``dcc`` too when the
        encoded request is over `MAX_CREDENTIAL_REQUEST_BYTES`: the signer's answer could
        outgrow what the gateway takes, and the breaker would count a caller's request as a
        signer failure), and SignerUnavailable (its part named after `loc`) when no DSC for
        the key usage is valid now.
        """
        now = datetime.now(UTC)
        key_usage = request.effective_key_usage()
        dsc = self._trust.signing_certificate(key_usage, now=now)
        if dsc is None:
            # Nothing the caller can fix: the operator has to give the signer a DSC valid now,
            # unless one of its DSCs starts soon. Retrying at once changes nothing.
            raise SignerUnavailable(
                _no_signing_certificate(self._trust.signing_status(key_usage, now=now), key_usage),
                part=part_name(loc),
                retry_after=_signing_certificate_wait(self._trust, key_usage, now),
            )
        try:
            expiration = resolve_expiration(
                request, now=now, default_validity=self._default_validity, not_after=dsc.not_after
            )
        except DomainValidationError as exc:
            raise DomainValidationError(
                [FieldError(loc=(*loc, *e.loc), msg=e.msg) for e in exc.errors]
            ) from exc
        signer_request = credential_request(
            key_usage=key_usage.value, expiration_time=expiration, dcc=request.dcc.signing_payload()
        )
        if len(signer_request.content) > MAX_CREDENTIAL_REQUEST_BYTES:
            raise DomainValidationError([_too_big_to_sign(signer_request, loc)])
        return PreparedEuRequest(
            signer_request=signer_request,
            uvci=request.dcc.uvci(),
            key_usage=key_usage,
            expiration_time=expiration,
        )

    async def issue(
        self, prepared: PreparedEuRequest, *, part: str, headers: Mapping[str, str]
    ) -> IssuedEuCredential:
        """Sign through the EU signer and verify the result; raise a GatewayError on failure."""
        result = await call_signer(
            part,
            SignerAttempt(self._client.sign, prepared.signer_request, headers=headers),
            policy=self.signer_policy,
            endpoint="get_credential",
            # The EU signer keeps no state per request: a replay at worst signs twice, and
            # only the verified answer we receive is ever released.
            replay_safe=True,
        )
        try:
            verified = verify_eu_credential(
                result.credential,
                trust=self._trust,
                key_usage=prepared.key_usage,
                expected_dcc=prepared.signer_request.dcc(),
                expected_exp=int(prepared.expiration_time.timestamp()),
                proof_identifier=result.proof_identifier,
                now=datetime.now(UTC),
                max_clock_skew=self._skew,
            )
        except CredentialVerificationError as exc:
            raise rejected_credential(exc, part=part, signer="eu") from exc
        return IssuedEuCredential(
            credential=result.credential,
            proof_identifier=result.proof_identifier,
            kid=verified.kid,
            key_usage=prepared.key_usage,
            expiration_time=prepared.expiration_time,
            uvci=prepared.uvci,
        )
