"""Setting groups of the security layer: `auth`, `limits` and `audit` on `Settings`.

The groups check their own consistency; whether a mode is allowed in an environment (no
disabled auth in production) is decided by `Settings`, which sees both.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

#: Signature algorithms a caller token may use. Asymmetric only: an HMAC algorithm would let
#: anyone holding the (public) verification key mint tokens, and `none` signs nothing.
AsymmetricAlgorithm = Literal[
    "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"
]


#: The loopback address the gateway listens on unless told otherwise, and the demo's signers.
LOOPBACK = "127.0.0.1"


def ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` (no brackets) as an IP address, None for a name.

    An IPv4 address written as IPv6 (``::ffff:127.0.0.2``) is given as the IPv4 one.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a URL's host as httpx reads it: no brackets) is this machine's loopback.

    `localhost`, or an address on the loopback interface: all of 127.0.0.0/8 (not only
    127.0.0.1), ::1, and an IPv4 loopback address written as IPv6 (``::ffff:127.0.0.2``).
    """
    if host.lower() == "localhost":
        return True
    address = ip_of(host)
    return address is not None and address.is_loopback


def absolute_http_url(text: str) -> httpx.URL | None:
    """`text` as the HTTP client reads it, when that is an absolute http(s) URL; else None.

    Not `urlsplit`: it takes a port that is not a number, or `[::1].idp.test` as the host ::1,
    both of which httpx then refuses when the gateway starts.
    """
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        return None
    return url if url.scheme in {"http", "https"} and url.host else None


def plain_http_off_host(url: httpx.URL) -> bool:
    """Whether a call to `url` would leave the host unencrypted (http, not to loopback)."""
    return url.scheme == "http" and not is_loopback_host(url.host)


def _no_white_space_around(value: str) -> str:
    """`value`, refused when it begins or ends with white space.

    A name compared as given (a token's `aud` or `iss`, a claim, a path) never matches with a
    space or a line break a template left around it: every caller, or every probe, would be
    refused while the gateway looked healthy.
    """
    if value != value.strip():
        raise ValueError("must not begin or end with white space")
    return value


#: A setting naming something compared as given: white space around it is refused.
NameSetting = Annotated[str, AfterValidator(_no_white_space_around)]


def _names_a_file(value: object) -> object:
    """`value`, refused when it is empty or blank text.

    As a path that is `.`, the directory the gateway runs in, and the refusal would then
    speak of a directory nobody named.
    """
    if isinstance(value, str) and not value.strip():
        raise ValueError("must name a file; leave the setting unset for none")
    return value


def _token_type(value: str) -> str:
    """`value`, refused unless it can be a media type as a token header's `typ` gives it.

    An empty value would match no token, and one holding white space, a character outside
    ASCII or a stray `/` no media type (RFC 6838 section 4.2): a template's mistake would
    refuse every caller while the gateway looked healthy.
    """
    if not value:
        raise ValueError("must not be empty; leave auth.token_types empty for no check")
    kind, slash, subtype = value.partition("/")
    if (
        not value.isascii()
        or not value.isprintable()
        or " " in value
        or (slash and not (kind and subtype))
        or "/" in subtype
    ):
        raise ValueError(
            "must be a media type such as at+jwt: ASCII without white space, "
            "at most one '/' and a name on each side of it"
        )
    return value


#: An accepted token type: a media type, its `application/` prefix optional (RFC 7515 4.1.9).
TokenType = Annotated[str, AfterValidator(_token_type)]


#: A setting naming a file: an empty value (`SIGNING_GATEWAY_AUDIT__FILE=`) is refused as such.
FileSetting = Annotated[Path, BeforeValidator(_names_a_file)]


#: Every group of settings takes finite numbers only. pydantic's float takes "inf" and "nan"
#: otherwise: an infinite timeout never ends (an infinite cancel grace ended `serve` in an
#: OverflowError), and NaN compares false with every bound.
FINITE_NUMBERS = ConfigDict(allow_inf_nan=False)

#: Scopes the routes ask for (see docs/security.md).
SCOPE_DCC_SIGN = "dcc:sign"
SCOPE_DOMESTIC_SIGN = "domestic:sign"
SCOPE_KEYS_READ = "keys:read"
ALL_SCOPES = (SCOPE_DCC_SIGN, SCOPE_DOMESTIC_SIGN, SCOPE_KEYS_READ)


def _default_algorithms() -> list[AsymmetricAlgorithm]:
    return ["ES256", "PS256", "RS256", "EdDSA"]


class AuthSettings(BaseModel):
    """How callers of `/v1/*` prove who they are: bearer JWTs checked against a JWKS."""

    model_config = FINITE_NUMBERS

    mode: Literal["jwt", "disabled"] = Field(
        "jwt", description="jwt: every /v1 call needs a valid token; disabled: local use only"
    )
    jwks_file: FileSetting | None = Field(None, description="JWKS file with the token-signing keys")
    jwks_url: str | None = Field(
        None, description="https URL of the identity provider's JWKS, fetched and refreshed"
    )
    jwks_ca_bundle: FileSetting | None = Field(
        None, description="PEM CA bundle to verify the JWKS URL's TLS (system CAs if unset)"
    )
    audience: NameSetting | None = Field(None, description="Required `aud` of caller tokens")
    issuer: NameSetting | None = Field(None, description="Required `iss` of caller tokens")
    algorithms: list[AsymmetricAlgorithm] = Field(
        default_factory=_default_algorithms,
        min_length=1,
        description="Token signature algorithms accepted (asymmetric only)",
    )
    token_types: list[TokenType] = Field(
        default_factory=list,
        description="Token types (the header's `typ`) accepted, as media types: case "
        "insensitive, `application/` optional (`at+jwt`, RFC 9068's access tokens). A token "
        "without one of them is refused (`wrong-type`); empty: the type is not checked",
    )
    leeway_seconds: NonNegativeInt = Field(
        30, le=300, description="Clock skew tolerated on exp, nbf and iat"
    )
    scope_claim: NameSetting = Field(
        "scope",
        min_length=1,
        description="Claim holding permissions: space-separated string or list",
    )
    max_token_bytes: PositiveInt = Field(8192, description="Longer bearer tokens are refused")
    token_cache_size: NonNegativeInt = Field(
        1024,
        description="Verified tokens remembered (least recently used dropped first): a token "
        "seen again skips its signature check, never its exp/nbf/iat or key-set check; "
        "0 checks every token in full",
    )
    jwks_refresh_interval_seconds: PositiveFloat = Field(
        300.0, description="How often a JWKS URL is fetched again in the background"
    )
    jwks_min_refresh_interval_seconds: PositiveFloat = Field(
        30.0, description="At most one extra fetch per this interval, for an unknown kid"
    )
    jwks_fetch_timeout_seconds: PositiveFloat = Field(
        5.0, description="Budget of one JWKS fetch; a request waits at most this long"
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> AuthSettings:
        if self.jwks_file is not None and self.jwks_url is not None:
            raise ValueError("give auth.jwks_file or auth.jwks_url, not both")
        if self.jwks_url is not None:
            url = absolute_http_url(self.jwks_url)
            if url is None:
                raise ValueError("auth.jwks_url must be an absolute https URL")
            if plain_http_off_host(url):
                raise ValueError("auth.jwks_url must use https (plain http only on loopback)")
        return self

    def missing_for_jwt(self) -> list[str]:
        """The settings `mode="jwt"` needs but lacks (empty when complete)."""
        missing = []
        if self.jwks_file is None and self.jwks_url is None:
            missing.append("auth.jwks_file or auth.jwks_url")
        if not self.audience:
            missing.append("auth.audience")
        if not self.issuer:
            missing.append("auth.issuer")
        return missing


class LimitsSettings(BaseModel):
    """Bounds on what a caller may send and how long it may take, before anything parses it."""

    model_config = FINITE_NUMBERS

    max_header_bytes: PositiveInt = Field(
        32 * 1024,
        ge=4096,
        description="Largest request head, request line and header fields together (431 beyond; "
        "nginx's default total): room for an 8 KiB bearer token and a proxy's headers",
    )
    max_header_fields: PositiveInt = Field(
        100,
        ge=32,
        description="Most header fields in a request head (431 beyond; Apache's default): each "
        "is kept as objects of its own, and 32 KiB of tiny fields held ~0.5 MB per request",
    )
    header_timeout_seconds: PositiveFloat = Field(
        10.0,
        description="A request head must be complete this many seconds after its first byte "
        "(after the connection opened, for the first): else 408 and the connection is closed, "
        "or just closed if nothing was sent. Between requests `keep_alive_seconds` applies",
    )
    keep_alive_seconds: PositiveFloat = Field(
        5.0,
        description="An idle connection is closed this many seconds after its last answer "
        "(uvicorn's keep-alive). Keep it longer than the idle timeout of whatever pools "
        "connections to the gateway (a load balancer, the caller's HTTP client): when both "
        "close an idle connection at about the same time, a request sent on it meets a "
        "closed connection and fails without an answer",
    )
    max_body_bytes: PositiveInt = Field(
        192 * 1024,
        description="Largest request body (413 beyond); the largest valid request is ~150 KiB",
    )
    max_json_depth: PositiveInt = Field(
        16, le=256, description="Deepest nesting of JSON arrays and objects (valid bodies: 6)"
    )
    max_json_string_chars: PositiveInt = Field(
        96 * 1024, description="Longest JSON string or key (issueCommitmentMessage: 90,000)"
    )
    body_read_timeout_seconds: PositiveFloat = Field(
        15.0,
        description="A request body must have arrived whole this many seconds after the gateway "
        "starts reading it; else 408 problem+json, the connection is closed and nothing "
        "reaches a signer",
    )


class AuditSettings(BaseModel):
    """Where the audit trail of issuance attempts goes and what happens when it cannot."""

    model_config = FINITE_NUMBERS

    file: FileSetting | None = Field(
        None, description="JSON-lines file the audit records are appended to"
    )
    fail_closed: bool = Field(
        default=True,
        description="Refuse to release a credential (503) when its audit record cannot be written",
    )
    max_pending_writes: PositiveInt = Field(
        1024, description="Audit writes queued at most; more fail (and fail closed) at once"
    )
    write_timeout_seconds: PositiveFloat = Field(
        2.0,
        description="Longest a request waits for its audit record to be written (without a "
        "CPU permit); a record not written by then counts as a failed write (and fails closed), "
        "and stays queued. Shutdown waits as long at most for the records still queued",
    )
