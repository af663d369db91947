"""Client for the domestic signer (the CoronaCheck Idemix server, CONTRACT §2).

All calls are POST with ``Content-Type: application/json`` exactly. The signer's own
messages (prepare, signatures) are passed through as JSON objects; only their outer shape is
checked here, the signatures are checked by ``verification.domestic``. The app's commitment
is passed through as the JSON bytes the app sent (big integers and all), never re-encoded.

Each call encodes its body when it is made, before the returned coroutine runs: a body that
cannot be encoded fails before anything is sent (``issuance.session`` relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)

from signing_gateway.signers.eu import fetch_key_set
from signing_gateway.signers.http import exact_json, probe_signer, request_json

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping, Sequence

    import httpx

    from signing_gateway.verification.trust import KeySet

__all__ = ["MAX_CREDENTIAL_AMOUNT", "DomesticSignerClient", "DomesticStaticResult"]

T = TypeVar("T")

#: The signer's limit on credentials per issuance session.
MAX_CREDENTIAL_AMOUNT = 100

_Text = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class _PrepareIssueResponse(BaseModel):
    """The 200 body of ``POST /prepare_issue``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    issuer_pk_id: _Text = Field(alias="issuerPkId")
    issuer_nonce: _Text = Field(alias="issuerNonce")
    credential_amount: int = Field(alias="credentialAmount", ge=1, le=MAX_CREDENTIAL_AMOUNT)

    @field_validator("credential_amount")
    @classmethod
    def _as_asked(cls, amount: int, info: ValidationInfo) -> int:
        """The amount asked for (the context's `asked`): the app commits to the one it sees."""
        asked = (info.context or {}).get("asked")
        if asked is not None and amount != asked:
            raise ValueError(f"asked for {asked} credentials, not {amount}")
        return amount


class _IssueItem(BaseModel):
    """One element of the 200 body of ``POST /issue``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    issue_signature_message: dict[str, Any] = Field(alias="issueSignatureMessage")
    attributes: dict[str, str]


class _IdemixIssueItem(BaseModel):
    """One element of the 200 body of ``POST /issue`` from an Idemix signer.

    ``attributes`` are base64 byte values, the metadata attribute first (at most a dozen).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    issue_signature_message: dict[str, Any] = Field(alias="issueSignatureMessage")
    attributes: Annotated[list[_Text], Field(min_length=1, max_length=32)]


_IssueResponse = TypeAdapter(
    Annotated[list[_IssueItem], Field(min_length=1, max_length=MAX_CREDENTIAL_AMOUNT)]
)
_IdemixIssueResponse = TypeAdapter(
    Annotated[list[_IdemixIssueItem], Field(min_length=1, max_length=MAX_CREDENTIAL_AMOUNT)]
)


class _StaticResponse(BaseModel):
    """The 200 body of ``POST /issue_static``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    qr: Annotated[str, StringConstraints(pattern=r"^NL2:", max_length=8 * 1024)]
    proof_identifier: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        alias="proofIdentifier"
    )


@dataclass(frozen=True)
class DomesticStaticResult:
    """A static (paper) proof as the signer returned it (unverified)."""

    qr: str
    proof_identifier: str


# The answers' decoders, run by `request_json` (a ValidationError is a malformed answer).
# The prepare message and the issue items go back to the signer or the caller verbatim, so
# they are checked against their wire models and kept as received.


def _prepare_message(asked: int, data: Any) -> dict[str, Any]:  # noqa: ANN401 - parsed JSON
    _PrepareIssueResponse.model_validate(data, context={"asked": asked})
    message: dict[str, Any] = data
    return message


def _issue_items(data: Any) -> list[dict[str, Any]]:  # noqa: ANN401 - parsed JSON
    _IssueResponse.validate_python(data)
    items: list[dict[str, Any]] = data
    return items


def _idemix_issue_items(data: Any) -> list[dict[str, Any]]:  # noqa: ANN401 - parsed JSON
    _IdemixIssueResponse.validate_python(data)
    items: list[dict[str, Any]] = data
    return items


def _static_result(data: Any) -> DomesticStaticResult:  # noqa: ANN401 - parsed JSON
    parsed = _StaticResponse.model_validate(data)
    return DomesticStaticResult(parsed.qr, parsed.proof_identifier)


class DomesticSignerClient:
    """Calls one domestic signer over a shared ``httpx.AsyncClient`` (owned by the caller)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        name: str = "domestic",
        health_path: str = "/healthz",
        scheme: Literal["simulation", "idemix"] = "simulation",
    ) -> None:
        """Use ``http`` (with the signer's base URL); ``name`` labels errors and metrics.

        ``scheme`` picks the shape of the ``/issue`` items read: the simulation's attributes
        object, or the Idemix server's list of base64 attribute values.
        """
        self._http = http
        self._issue_items = _idemix_issue_items if scheme == "idemix" else _issue_items
        self.name = name
        self._health_path = health_path

    def _post(
        self,
        path: str,
        body: object,
        headers: Mapping[str, str] | None,
        decode: Callable[[Any], T],
    ) -> Coroutine[Any, Any, T]:
        # `request_json`'s own coroutine, decoding the answer itself: no frame of this client
        # waits on the signer (each would be held for the whole call). The body is encoded
        # now, so an unencodable one fails before the coroutine (and its send) starts.
        return request_json(
            self._http,
            "POST",
            path,
            signer=self.name,
            endpoint=path.strip("/"),
            content=exact_json(body),
            headers=headers,
            decode=decode,
        )

    def prepare_issue(
        self, credential_amount: int, *, headers: Mapping[str, str] | None = None
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        """Open an issuance session; returns the signer's prepare message as received.

        The message must grant ``credential_amount`` credentials, no other number: the app
        commits to the amount in it, and the gateway holds ``/issue`` to the one it asked for.

        Raises:
            ValueError: ``credential_amount`` outside 1..100 (nothing is sent).
            SignerError: any failure, see ``signing_gateway.signers.errors``; an answer for
                another amount is a ``SignerMalformedResponseError``.
        """
        if not 1 <= credential_amount <= MAX_CREDENTIAL_AMOUNT:
            raise ValueError(f"credential_amount must be 1..{MAX_CREDENTIAL_AMOUNT}")
        return self._post(
            "/prepare_issue",
            {"credentialAmount": credential_amount},
            headers,
            partial(_prepare_message, credential_amount),
        )

    def issue(
        self,
        *,
        prepare_issue_message: Mapping[str, Any],
        issue_commitment_message: bytes,
        credentials_attributes: Sequence[Mapping[str, str]],
        headers: Mapping[str, str] | None = None,
    ) -> Coroutine[Any, Any, list[dict[str, Any]]]:
        """Create the session's credentials; returns the signer's items as received.

        ``issue_commitment_message`` is the JSON text of the app's commitment (one object),
        sent as it is.

        Raises:
            SignerError: any failure, see ``signing_gateway.signers.errors``.
        """
        body = {
            "prepareIssueMessage": dict(prepare_issue_message),
            "issueCommitmentMessage": orjson.Fragment(issue_commitment_message),
            "credentialsAttributes": [dict(a) for a in credentials_attributes],
        }
        return self._post("/issue", body, headers, self._issue_items)

    def issue_static(
        self, credential_attributes: Mapping[str, str], *, headers: Mapping[str, str] | None = None
    ) -> Coroutine[Any, Any, DomesticStaticResult]:
        """Create a static (paper) proof for one attribute set.

        Raises:
            SignerError: any failure, see ``signing_gateway.signers.errors``.
        """
        body = {"credentialAttributes": dict(credential_attributes)}
        return self._post("/issue_static", body, headers, _static_result)

    async def fetch_keys(self) -> KeySet:
        """Read ``GET /keys`` (fake signers only) into trust stores."""
        return await fetch_key_set(self._http, signer=self.name)

    async def probe(self) -> None:
        """Cheap liveness check; raises ``SignerError`` when the signer is down."""
        await probe_signer(self._http, self._health_path, signer=self.name)
