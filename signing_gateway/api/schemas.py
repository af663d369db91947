"""Request and response bodies of the public API (camelCase on the wire)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from signing_gateway.api.bodies import schema_ref
from signing_gateway.domain.dcc import EuRequest, raw_uvci
from signing_gateway.domain.domestic import DomesticAttributes
from signing_gateway.domain.errors import object_rule
from signing_gateway.domain.uvci import repeated_uvcis
from signing_gateway.errors import ABOUT_BLANK, PROBLEM_BASE, PROBLEM_TYPES

if TYPE_CHECKING:
    from pydantic.config import JsonDict, JsonValue

    from signing_gateway.domain.errors import Loc

MAX_EU_PER_REQUEST = 10
MAX_DOMESTIC_PER_REQUEST = 100

Base64Text = Annotated[str, Field(min_length=1, max_length=90_000)]


def _stoken_case(stoken: str) -> str:
    """The stoken with its ASCII letters in lower case, as the gateway hands stokens out.

    A stoken is a UUID, whose hex digits RFC 9562 reads in either case on input. Only ASCII
    text is folded: `str.lower` maps some other letters to ASCII ones (the Kelvin sign to k).
    """
    return stoken.lower() if stoken.isascii() else stoken


Stoken = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_stoken_case)]


class ApiModel(BaseModel):
    """Base of the API's own answers: camelCase aliases, built by their Python names."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")


class ApiRequest(BaseModel):
    """Base of the API's own request bodies: camelCase only, unknown fields refused.

    Not by name: the snake_case Python names are not part of the API (CONTRACT.md), and a
    caller that sent them would depend on an accident of the implementation. The aliases are
    spelled out, so that type checkers know the names a body is built with.
    """

    model_config = ConfigDict(validate_by_name=False, extra="forbid")


class EuCredentialOut(ApiModel):
    """A verified EU DCC as released to the caller."""

    credential: str = Field(description="The HC1: string for the QR code")
    proof_identifier: str
    kid: str = Field(description="Base64 key identifier of the DSC that signed it")
    key_usage: Literal["vaccination", "test", "recovery"]
    expiration_time: str = Field(description="RFC 3339, UTC")


class StaticProofOut(ApiModel):
    """A verified static (paper) domestic QR code."""

    qr: str = Field(description="The NL2: string for the QR code")
    proof_identifier: str


class StaticRequest(ApiRequest):
    """Body of POST /v1/domestic/static."""

    credential_attributes: DomesticAttributes = Field(alias="credentialAttributes")


class PrepareIssueOut(ApiModel):
    """Answer of POST /v1/domestic/prepare-issue."""

    stoken: str = Field(description="Single-use issuance session token (UUID)")
    prepare_issue_message: str = Field(description="Base64 of the signer's JSON message")


class IssueRequest(ApiRequest):
    """Body of POST /v1/domestic/issue."""

    stoken: Stoken
    issue_commitment_message: Base64Text = Field(alias="issueCommitmentMessage")
    credentials_attributes: Annotated[
        list[DomesticAttributes], Field(min_length=1, max_length=MAX_DOMESTIC_PER_REQUEST)
    ] = Field(alias="credentialsAttributes")


class IssueOut(ApiModel):
    """Answer of POST /v1/domestic/issue."""

    create_credential_messages: str = Field(description="Base64 of the signer's JSON answer")


def _one_present(*names: str, part: JsonDict) -> list[JsonValue]:
    """JSON schema: at least one of `names` is there and matches `part`."""
    return [{"required": [name], "properties": {name: part}} for name in names]


#: The print rule as the JSON schema says it: one part at least, not null.
_A_PRINT_PART_SHOWN: Final[JsonDict] = {
    "anyOf": _one_present("domestic", "european", part={"not": {"type": "null"}})
}

_SOME_CREDENTIALS: Final[JsonDict] = {"type": "array", "minItems": 1}

#: The credentials rule as the JSON schema says it: one credential at least, and domestic ones
#: with their session (`stoken` and `issueCommitmentMessage`, not null).
_CREDENTIALS_SHOWN: Final[JsonDict] = {
    "anyOf": _one_present("domestic", "european", part=_SOME_CREDENTIALS),
    "if": {"required": ["domestic"], "properties": {"domestic": _SOME_CREDENTIALS}},
    "then": {
        "required": ["stoken", "issueCommitmentMessage"],
        "properties": {"stoken": {"type": "string"}, "issueCommitmentMessage": {"type": "string"}},
    },
}


class PrintRequest(ApiRequest):
    """Body of POST /v1/print: a domestic part, a European part, or both."""

    model_config = ConfigDict(**ApiRequest.model_config, json_schema_extra=_A_PRINT_PART_SHOWN)

    domestic: DomesticAttributes | None = None
    european: EuRequest | None = None

    # No part at all is named with the other errors of the body, not after them.
    _parts_rule_beside_field_errors = object_rule(
        lambda raw: _refusal(_no_print_part(raw.get("domestic"), raw.get("european")))
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> PrintRequest:
        if message := _no_print_part(self.domestic, self.european):
            raise ValueError(message)
        return self


def _no_print_part(domestic: object, european: object) -> str | None:
    if domestic is None and european is None:
        return "give at least one of domestic and european"
    return None


def _refusal(message: str | None) -> list[tuple[Loc, ValueError]]:
    """A body rule's refusal as `validate_with_object_rule` takes it: at the body itself."""
    return [] if message is None else [((), ValueError(message))]


class PrintOut(ApiModel):
    """Answer of POST /v1/print."""

    domestic: StaticProofOut | None
    european: EuCredentialOut | None


class CredentialsRequest(ApiRequest):
    """Body of POST /v1/credentials: a domestic session part and/or European parts."""

    model_config = ConfigDict(**ApiRequest.model_config, json_schema_extra=_CREDENTIALS_SHOWN)

    stoken: Stoken | None = Field(
        default=None,
        description="The session of the domestic credentials; needed with them. Without "
        "domestic credentials it may be left out and is not used: the session stays open "
        "until it expires",
    )
    issue_commitment_message: Base64Text | None = Field(
        default=None,
        alias="issueCommitmentMessage",
        description="Needed with domestic credentials; without them it may be left out, "
        "and is not read",
    )
    domestic: Annotated[list[DomesticAttributes], Field(max_length=MAX_DOMESTIC_PER_REQUEST)] = []
    european: Annotated[list[EuRequest], Field(max_length=MAX_EU_PER_REQUEST)] = Field(
        default=[],
        description="No two may carry one UVCI (`ci`), which identifies one certificate: "
        "the second is refused 422 at its `ci`. Compared as given, without the check "
        "character (`#` and the one after it)",
    )

    # One certificate per UVCI: a second request with a `ci` of an earlier one is refused at it,
    # beside the other errors or on its own.
    _uvci_rule = object_rule(lambda raw: _repeated_uvcis(raw.get("european")), when_valid=True)

    # No part at all, or no session for the domestic part, is named with the other errors.
    _parts_rule_beside_field_errors = object_rule(
        lambda raw: _refusal(
            _inconsistent_credentials(
                raw.get("domestic"),
                raw.get("european"),
                raw.get("stoken"),
                raw.get("issueCommitmentMessage"),
            )
        )
    )

    @model_validator(mode="after")
    def _consistent(self) -> CredentialsRequest:
        message = _inconsistent_credentials(
            self.domestic, self.european, self.stoken, self.issue_commitment_message
        )
        if message:
            raise ValueError(message)
        return self


def _inconsistent_credentials(
    domestic: object, european: object, stoken: object, commitment: object
) -> str | None:
    """The body's rule, on its validated parts or on the raw ones (`object_rule`).

    A raw part of another type than a list is there, to be corrected: it neither counts as
    no part (`{}`, `0`, `""` were taken for none) nor, as it may become an empty list, as one
    needing a session. Null is no part, as it is refused at its place.
    """
    if domestic in (None, []) and european in (None, []):
        return "give at least one domestic or european credential"
    if isinstance(domestic, list) and domestic and (stoken is None or commitment is None):
        return "domestic credentials need stoken and issueCommitmentMessage"
    return None


def _repeated_uvcis(european: object) -> list[tuple[Loc, PydanticCustomError]]:
    """An error at the `ci` of each EU request repeating the UVCI of an earlier one.

    A UVCI identifies one certificate (revocation lists are keyed by it): two signed under one
    in a request is a caller's mistake, not two certificates.
    """
    if not isinstance(european, list):
        return []
    found = [raw_uvci(request) for request in european]
    repeats = repeated_uvcis(None if where is None else where[1] for where in found)
    return [
        (("european", index, *where[0]), _uvci_repeated(first))
        for index, first in repeats.items()
        if (where := found[index]) is not None
    ]


def _uvci_repeated(first: int) -> PydanticCustomError:
    return PydanticCustomError(
        "uvci_repeated",
        "UVCI names the certificate of european[{first}] (check character aside): "
        "give each certificate its own",
        {"first": first},
    )


class CredentialsOut(ApiModel):
    """Answer of POST /v1/credentials."""

    domestic_greencard: IssueOut | None
    eu_greencards: list[EuCredentialOut]


class EuKeyOut(ApiModel):
    """A DSC certificate that verifies EU credentials."""

    kid: str
    alg: Literal["ES256", "PS256"]
    key_usage: list[str]
    certificate: str = Field(description="Base64 of the DER certificate")


class DomesticKeyOut(ApiModel):
    """A public key that verifies domestic credentials."""

    kid: str
    alg: str
    public_key: str


class KeysOut(ApiModel):
    """Answer of GET /v1/keys."""

    eu: list[EuKeyOut]
    domestic: list[DomesticKeyOut]


class ProblemFieldOut(BaseModel):
    """One located validation failure."""

    loc: list[str | int]
    msg: str


def _problem_type_uri(name: str) -> str:
    return name if name == ABOUT_BLANK else PROBLEM_BASE + name


#: What `Problem.type` says: every type the gateway answers with, its statuses, and when.
_PROBLEM_TYPES_DOC = "One of these, with the statuses it comes with:\n\n" + "\n".join(
    f"- `{_problem_type_uri(name)}` ({', '.join(map(str, statuses))}): {when}"
    for name, (statuses, when) in PROBLEM_TYPES.items()
)


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description=_PROBLEM_TYPES_DOC)
    title: str
    status: int
    detail: str
    instance: str = Field(
        description="The request's path; empty (a reference to the request's own URI) only "
        "when a request head was refused before its request line was read whole",
    )
    request_id: str = Field(alias="requestId")
    part: str | None = None
    unfinished_parts: list[str] | None = Field(default=None, alias="unfinishedParts")
    errors: list[ProblemFieldOut] | None = Field(
        default=None,
        description="Each located error of a 422, the first 50 at most; `detail` counts them, "
        "and says `at least` from 50 on: the rules over several fields are then not all checked",
    )


#: The header fields a problem answer of a status always carries, as OpenAPI documents them.
_PROBLEM_HEADERS: dict[int, dict[str, str]] = {
    401: {
        "WWW-Authenticate": "How to authenticate: `Bearer` (RFC 6750: `invalid_token` with a "
        "token that was refused) for the bearer token, `Stoken` for an issuance session",
    },
    403: {"WWW-Authenticate": "`Bearer` with `insufficient_scope` and the scopes needed"},
    503: {"Retry-After": "Whole seconds, at least 1, before the request is worth sending again"},
}


def _problem_headers(status: int) -> dict[str, object]:
    """The `headers` of a documented problem answer of `status` (made anew for each)."""
    return {
        name: {"description": description, "required": True, "schema": {"type": "string"}}
        for name, description in _PROBLEM_HEADERS.get(status, {}).items()
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses` entries documenting problem+json answers.

    The schema is given under `application/problem+json` itself: with `model`, FastAPI would
    put it under the route's own media type, `application/json`, which no error is sent as.
    The header fields every answer of a status carries (`Retry-After` on a 503,
    `WWW-Authenticate` on a 401 or 403) are documented with it.
    """
    descriptions = {
        400: "X-Request-Timeout is not a positive number of seconds, or it, the Authorization, "
        "Content-Type or Host header field is repeated; nothing reached a signer",
        401: "No valid bearer token (see WWW-Authenticate), or issuance session unknown, "
        "expired or used, or opened by another caller",
        403: "The bearer token lacks the scope this request needs",
        408: "The request body did not all arrive in time (limits.body_read_timeout_seconds "
        "from its first read); the connection is closed and nothing reached a signer",
        413: "Request body over the size limit",
        415: "Request body is not application/json (UTF-8), or is content-coded",
        422: "Validation failed; or (commitment-proof-failed, domestic issuance) the app's "
        "commitment fails the session's checks: in the idemix scheme its proofs of U, in the "
        "simulation scheme its issuerNonce or number range; nothing reached a signer",
        500: "The gateway failed unexpectedly (a bug): the answer names no cause, and its "
        "requestId finds it in the gateway's logs",
        502: "A signer answered outside its contract, or its credential failed verification",
        503: "Not served now; see Retry-After. The gateway is overloaded (no CPU permit in "
        "time) or shutting down (`Connection: close`: send it to another instance); for a "
        "signing request also: a signer is unavailable or at capacity, no EU signing "
        "certificate is valid now, the audit trail cannot be written, the Idemix verification "
        "workers are being replaced, or (domestic issuance) the Redis session store failed",
        504: "A signer or the request deadline timed out",
    }
    responses: dict[int | str, dict[str, object]] = {}
    for status in statuses:
        response: dict[str, object] = {
            "description": descriptions.get(status, "Error"),
            "content": {"application/problem+json": {"schema": schema_ref(Problem)}},
        }
        if headers := _problem_headers(status):
            response["headers"] = headers
        responses[status] = response
    return responses
