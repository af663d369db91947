"""Client for the EU signer (the CoronaCheck "hcert" issuance server, CONTRACT §2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from signing_gateway.signers.errors import SignerMalformedResponseError
from signing_gateway.signers.http import exact_json, malformed, probe_signer, request_json
from signing_gateway.verification.trust import KeySet, TrustConfigError

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

    import httpx

__all__ = [
    "MAX_CREDENTIAL_LENGTH",
    "MAX_CREDENTIAL_REQUEST_BYTES",
    "EuCredentialRequest",
    "EuSignerClient",
    "EuSignerResult",
    "credential_request",
]


#: The longest credential taken from the signer, in characters of its ``HC1:`` text.
MAX_CREDENTIAL_LENGTH = 32 * 1024
#: The largest ``get_credential`` body sent, so that a correct signer's answer always fits
#: `MAX_CREDENTIAL_LENGTH`. The signer signs the DCC as CBOR, never longer than its JSON here
#: (no quotes, shorter length prefixes and integers); around it go the CWT claims and the COSE
#: header and signature (well under 1 KiB, a 4096-bit RSA signature included), then zlib (at
#: worst a few bytes more than its input) and Base45 (3 characters per 2 bytes). 8 KiB of request
#: thus gives at most about 14 K characters: under half the limit. The largest DCC the domain
#: models accept (every text field at 80 four-byte characters) encodes to about 2.1 KiB.
MAX_CREDENTIAL_REQUEST_BYTES = 8 * 1024


class _CredentialResponse(BaseModel):
    """The 200 body of ``POST /get_credential``; nothing more, nothing less."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    credential: Annotated[
        str, StringConstraints(pattern=r"^HC1:", max_length=MAX_CREDENTIAL_LENGTH)
    ]
    proof_identifier: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        alias="proofIdentifier"
    )


@dataclass(frozen=True)
class EuSignerResult:
    """What the EU signer returned: the credential and its proof identifier (unverified)."""

    credential: str
    proof_identifier: str


def _credential_result(data: object) -> EuSignerResult:
    parsed = _CredentialResponse.model_validate(data)
    return EuSignerResult(parsed.credential, parsed.proof_identifier)


def rfc3339(moment: datetime) -> str:
    """Whole-second UTC RFC 3339 (``...Z``); the signer floors to seconds anyway."""
    if moment.tzinfo is None:
        raise ValueError("expiration_time must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class EuCredentialRequest:
    """The JSON body of one ``POST /get_credential``, encoded once.

    A request waiting at the signer holds these bytes and nothing else of its DCC: they are
    what is sent, and `dcc()` reads back from them what the answer must carry.
    """

    content: bytes

    def dcc(self) -> dict[str, Any]:
        """The DCC payload exactly as it was sent to be signed."""
        dcc: dict[str, Any] = orjson.loads(self.content)["dcc"]
        return dcc


def credential_request(
    *, key_usage: str, expiration_time: datetime, dcc: Mapping[str, Any]
) -> EuCredentialRequest:
    """Encode a ``POST /get_credential`` body (CONTRACT §2)."""
    body = {
        "keyUsage": str(key_usage),
        "expirationTime": rfc3339(expiration_time),
        # orjson encodes dicts only; the payload usually is one already (no copy made).
        "dcc": dcc if isinstance(dcc, dict) else dict(dcc),
    }
    return EuCredentialRequest(exact_json(body))


class EuSignerClient:
    """Calls one EU signer over a shared ``httpx.AsyncClient`` (owned by the caller)."""

    def __init__(
        self, http: httpx.AsyncClient, *, name: str = "eu", health_path: str = "/healthz"
    ) -> None:
        """Use ``http`` (with the signer's base URL); ``name`` labels errors and metrics."""
        self._http = http
        self.name = name
        self._health_path = health_path

    async def get_credential(
        self,
        *,
        key_usage: str,
        expiration_time: datetime,
        dcc: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> EuSignerResult:
        """Ask the signer to sign ``dcc``; the result still has to be verified.

        Raises:
            SignerError: any failure, see ``signing_gateway.signers.errors``.
        """
        request = credential_request(key_usage=key_usage, expiration_time=expiration_time, dcc=dcc)
        return await self.sign(request, headers=headers)

    def sign(
        self, request: EuCredentialRequest, *, headers: Mapping[str, str] | None = None
    ) -> Coroutine[Any, Any, EuSignerResult]:
        """Send an encoded ``get_credential`` request; the result still has to be verified.

        Returns `request_json`'s own coroutine (no frame of this method waits on the signer).

        Raises:
            SignerError: any failure, see ``signing_gateway.signers.errors``.
        """
        return request_json(
            self._http,
            "POST",
            "/get_credential",
            signer=self.name,
            endpoint="get_credential",
            content=request.content,
            headers=headers,
            decode=_credential_result,
        )

    async def fetch_keys(self) -> KeySet:
        """Read ``GET /keys`` (fake signers only) into trust stores.

        Raises:
            SignerError: transport or status failure, or a document that does not parse.
        """
        return await fetch_key_set(self._http, signer=self.name)

    async def probe(self) -> None:
        """Cheap liveness check; raises ``SignerError`` when the signer is down."""
        await probe_signer(self._http, self._health_path, signer=self.name)


async def fetch_key_set(http: httpx.AsyncClient, *, signer: str) -> KeySet:
    """``GET /keys`` parsed into a ``KeySet`` (shared by both clients)."""
    data: object = await request_json(http, "GET", "/keys", signer=signer, endpoint="keys")
    if not isinstance(data, dict):
        raise SignerMalformedResponseError(
            "keys document is not an object", signer=signer, endpoint="keys", status_code=200
        )
    try:
        return KeySet.from_keys_json(data)
    except TrustConfigError as exc:
        raise malformed(exc, signer=signer, endpoint="keys") from exc
