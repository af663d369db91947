"""Gateway errors and their RFC 9457 problem+json rendering.

Every expected failure is a `GatewayError` with a real status; a 500 means a bug::

    GatewayError
    ├── RequestInvalid               422  the request breaks a validation rule
    │   └── CommitmentProofFailed    422  the app's proofs of its commitments do not verify
    ├── StokenInvalid                401  issuance session unknown, expired, used or another's
    ├── SessionStoreUnavailable      503  the shared session store failed or was slow (Retry-After)
    ├── SignerProblem                     a downstream signer failed (names the part)
    │   ├── SignerUnavailable        503  connect refused, throttled, breaker open (Retry-After)
    │   ├── SignerTimedOut           504  the signer did not answer in time
    │   └── SignerBadResponse        502  the signer answered outside its contract
    ├── CredentialRejected           502  a signer's credential failed verification
    └── DeadlineExceeded             504  the request's overall budget ran out (names the parts cut)

`security/errors.py` adds `AuthenticationFailed` (401), `PermissionDenied` (403) and
`AuditUnavailable` (503). What is refused before routing (body limits, the drain, the CPU
gate; a request head, in `runtime/http_protocol`) raises nothing: the layer answers it itself
(`send_problem`, `problem_body`), naming its type there. Every type answered either way is
listed in `PROBLEM_TYPES`.

Bodies never carry a stack trace, a downstream URL or a signer's own error text.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar, Literal, NamedTuple, get_args

import orjson

from signing_gateway.domain.errors import MAX_ERRORS_LISTED, FieldError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://signing-gateway.dev/problems/"
#: The `type` of a 404 or 405: no more than its status says (RFC 9457 4.2.1).
ABOUT_BLANK = "about:blank"


def about_blank_title(status: int) -> str:
    """The `title` of an `ABOUT_BLANK` problem: the status's reason phrase ("Not Found").

    RFC 9457 4.2.1 asks for that phrase, so that the problem says no more than its status.
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status no reason phrase is registered for
        return "HTTP error"


class ProblemType(NamedTuple):
    """A problem `type` the gateway answers with: the statuses it comes with, and when."""

    statuses: tuple[int, ...]
    when: str


#: Every problem `type` the gateway answers with, by its name under `PROBLEM_BASE`
#: (`ABOUT_BLANK` as it is). The OpenAPI document's `Problem` and docs/architecture.md list
#: them all; a test holds the list to the types the code can answer.
PROBLEM_TYPES: dict[str, ProblemType] = {
    "bad-request": ProblemType(
        (400,),
        "not a request the gateway takes as sent: not valid HTTP/1.1, an `Authorization`, "
        "`Content-Type` or `Host` repeated, no `Host`, an encoded slash in the path, a "
        "transfer coding other than chunked, an invalid `Content-Length`, an "
        "`X-Request-Timeout` that is not a positive number or is repeated; or the client went away",
    ),
    "unauthenticated": ProblemType((401,), "no valid bearer token (see `WWW-Authenticate`)"),
    "stoken-invalid": ProblemType(
        (401,), "the issuance session is unknown, expired or used, or another caller opened it"
    ),
    "forbidden": ProblemType((403,), "the bearer token lacks a scope the request needs"),
    "body-timeout": ProblemType((408,), "the request body did not all arrive in time"),
    "header-timeout": ProblemType(
        (408,), "the request line and header fields did not arrive in time"
    ),
    "body-too-large": ProblemType((413,), "the request body is over the size limit"),
    "unsupported-media-type": ProblemType(
        (415,), "the request body is not `application/json` (UTF-8), or is content-coded"
    ),
    "validation-failed": ProblemType(
        (422,),
        "the body is not JSON, breaks the JSON limits or a validation rule (`errors`); "
        "nothing reached a signer",
    ),
    "commitment-proof-failed": ProblemType(
        (422,),
        "in the idemix scheme, the app's proofs of knowledge of its commitments U "
        "(`issueCommitmentMessage`) do not verify for the session's issuer nonce (`errors`); "
        "in the simulation scheme, the commitment names another `issuerNonce` than the "
        "session's or holds a number past a double's range; nothing reached a signer and the "
        "session stays usable",
    ),
    "header-too-large": ProblemType(
        (431,), "the request line and header fields are over the size limit"
    ),
    "internal": ProblemType((500,), "a bug: the `requestId` finds it in the gateway's logs"),
    "signer-bad-response": ProblemType((502,), "a signer answered outside its contract (`part`)"),
    "credential-verification-failed": ProblemType(
        (502,), "a signer's credential failed verification and was withheld (`part`)"
    ),
    "signer-unavailable": ProblemType(
        (503,),
        "a signer is down, throttling, at capacity or behind an open breaker, or no EU DSC "
        "is valid now (`part`, `Retry-After`)",
    ),
    "verification-unavailable": ProblemType(
        (503,),
        "the workers that verify Idemix credentials are being replaced; no credential was "
        "released (`part`, `Retry-After`)",
    ),
    "audit-unavailable": ProblemType(
        (503,), "the issuance's audit record cannot be written (`Retry-After`)"
    ),
    "overloaded": ProblemType(
        (503,),
        "no CPU permit in time, or too many requests already waiting for one; nothing reached "
        "a signer (`Retry-After`)",
    ),
    "shutting-down": ProblemType(
        (503,),
        "the instance is shutting down: send the request to another (`Retry-After`, "
        "`Connection: close`)",
    ),
    "session-store-unavailable": ProblemType(
        (503,),
        "with `session_store.kind=redis`: the Redis session store did not open or take the "
        "issuance session in time, or refused; nothing was signed, and the `detail` says "
        "whether to retry with the same stoken or start again with prepare-issue (`Retry-After`)",
    ),
    "signer-timeout": ProblemType((504,), "a signer did not answer in time (`part`)"),
    "deadline-exceeded": ProblemType(
        (504,),
        "the request's deadline ran out (`part`, `unfinishedParts`; neither when it ran out "
        "while the request waited for a CPU permit)",
    ),
    ABOUT_BLANK: ProblemType(
        (404, 405),
        "404: no route has the path; 405: the path takes other methods, which `Allow` names",
    ),
}


class GatewayError(Exception):
    """Base of every failure the gateway answers on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    #: What the audit record says of the failure beyond its answer (`cause`), for failures
    #: answered alike that an operator must tell apart. Never part of the answer.
    cause: str | None = None

    def __init__(self, detail: str, *, part: str | None = None) -> None:
        """Keep a caller-safe `detail` and, for multi-part requests, the failing `part`."""
        super().__init__(detail)
        self.detail = detail
        self.part = part

    @property
    def type(self) -> str:
        """The problem type URI."""
        return PROBLEM_BASE + self.slug

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}

    def add_advice(self, advice: str) -> None:
        """Append to `detail` what the caller should do next, when code above the raise knows."""
        self.detail = f"{self.detail}; {advice}"

    def extensions(self) -> dict[str, Any]:
        """Members added to the problem body beyond the standard ones."""
        return {"part": self.part} if self.part is not None else {}


#: The most fields a validation failure's `detail` names.
DETAIL_FIELDS_NAMED = 5


def _naming_the_fields(errors: Sequence[FieldError], total: int, *, at_least: bool) -> str:
    """A 422's detail: the one error where it is, or where each is (the first few).

    `body.dcc.v.0.dn: Input should be a valid integer`, or `3 validation errors, at
    body.dcc.ver, body.dcc.nam and body.dcc.dob`: a caller reading the detail alone (a log
    line, a client that shows it) learns which field to fix. The messages are the ones
    `errors` carries, personal data already withheld from them. `total` counts every error,
    the ones `errors` leaves out too (it then says how many it lists); `at_least` when some
    rules were not checked, so that there may be more: "at least 50 validation errors, ...".
    """
    locations = [".".join(map(str, error.loc)) or "the request" for error in errors]
    if not errors:
        return "the request failed validation"
    if total == 1:
        return f"{locations[0]}: {errors[0].msg}"
    named = locations[:DETAIL_FIELDS_NAMED]
    if total > len(named):
        named.append(f"{total - len(named)} more")
    listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    counted = f"at least {total}" if at_least else str(total)
    detail = f"{counted} validation errors, at {listed}"
    if at_least or total > len(errors):
        detail += f"; errors lists the first {len(errors)}"
    return detail


class RequestInvalid(GatewayError):
    """Raised when a request breaks a validation rule; nothing reached a signer."""

    status = 422
    slug = "validation-failed"
    title = "Request validation failed"

    def __init__(
        self,
        errors: Sequence[FieldError],
        detail: str | None = None,
        *,
        total: int | None = None,
        at_least: bool = False,
    ) -> None:
        """Carry the located errors, the first `MAX_ERRORS_LISTED` of them.

        `total` is how many there were in all, when `errors` holds only the first ones (a
        body's validation lists no more: `api.bodies.read_body`); `at_least` when that count
        may miss some, because rules were not checked. The detail names where they are and
        counts them, unless one is given.
        """
        listed = list(errors[:MAX_ERRORS_LISTED])
        total = len(errors) if total is None else max(total, len(errors))
        super().__init__(detail or _naming_the_fields(listed, total, at_least=at_least))
        self.errors = listed
        self.total = total

    def extensions(self) -> dict[str, Any]:
        """Add the located errors."""
        return {
            **super().extensions(),
            "errors": [{"loc": list(e.loc), "msg": e.msg} for e in self.errors],
        }


class CommitmentProofFailed(RequestInvalid):
    """Raised when the app's commitment does not hold for its session; nothing reached a signer.

    In the idemix scheme, its proofs of its commitments U fail, which the signer would refuse
    with a 5xx; `errors` says which proof, or that the proof list as a whole does not hold
    for the session's issuer nonce. In the simulation scheme, it names another issuer nonce
    or holds a number the signer cannot read, which the signer would refuse with a 4xx
    (`issuance.domestic.DomesticIssuer.check_commitment`).
    """

    status = 422
    slug = "commitment-proof-failed"
    title = "Commitment proof failed"


#: Why a stoken was refused, for the audit record: it names no live session (unknown,
#: expired or used), or a live session that another caller opened.
StokenRefusal = Literal["stoken-unknown", "stoken-not-owned"]
#: Every `StokenRefusal`, as `gateway_stoken_refusals_total` starts its series with them.
STOKEN_REFUSALS: tuple[StokenRefusal, ...] = get_args(StokenRefusal)


class StokenInvalid(GatewayError):
    """Raised when a stoken names no session its caller can take: one answer for every cause.

    Unknown, expired, already used, or opened by another caller: the answer is the same, so
    that it never tells a caller that another's session exists. `cause` tells them apart in
    the audit record.
    """

    status = 401
    slug = "stoken-invalid"
    title = "Issuance session invalid"

    def __init__(self, detail: str, *, cause: StokenRefusal) -> None:
        """Keep the caller-safe `detail`, and for the audit record why the stoken was refused."""
        super().__init__(detail)
        self.cause: StokenRefusal = cause

    def headers(self) -> dict[str, str]:
        """401 must say how to authenticate; the session token is the credential here."""
        return {"WWW-Authenticate": 'Stoken realm="domestic-issuance"'}


class SessionStoreUnavailable(GatewayError):
    """Raised when the shared issuance-session store cannot open, take or keep a session now.

    Nothing was signed on its account: a session is opened after prepare-issue's signer call
    (whose nonce the signer then expires unused) and taken before issue's.
    """

    status = 503
    slug = "session-store-unavailable"
    title = "Issuance session store unavailable"

    def headers(self) -> dict[str, str]:
        """Come back in a second: a store that fails over or reconnects takes about that."""
        return {"Retry-After": "1"}


class SignerProblem(GatewayError):
    """Base of failures of a downstream signer."""

    status = 502
    slug = "signer-failed"
    title = "Signer failed"


class SignerUnavailable(SignerProblem):
    """Raised when a signer cannot take the work now: refused, throttled or shed."""

    status = 503
    slug = "signer-unavailable"
    title = "Signer unavailable"

    def __init__(self, detail: str, *, part: str | None = None, retry_after: float = 1.0) -> None:
        """Keep the advised wait for `Retry-After`."""
        super().__init__(detail, part=part)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """Tell the caller when to come back (whole seconds, at least 1; 1 if not a number).

        Rounded up: a breaker open for 2.4 s more must not send callers back after 2 s, into
        another refusal.
        """
        seconds = self.retry_after if math.isfinite(self.retry_after) else 1.0
        return {"Retry-After": str(max(1, math.ceil(seconds)))}


class SignerTimedOut(SignerProblem):
    """Raised when a signer did not answer within its timeout."""

    status = 504
    slug = "signer-timeout"
    title = "Signer timed out"


class SignerBadResponse(SignerProblem):
    """Raised when a signer answered outside its contract (4xx, 5xx, malformed body)."""

    status = 502
    slug = "signer-bad-response"
    title = "Signer answered outside its contract"


class CredentialRejected(GatewayError):
    """Raised when a signer's credential fails verification; it is never released."""

    status = 502
    slug = "credential-verification-failed"
    title = "Signed credential failed verification"


class VerificationUnavailable(GatewayError):
    """Raised when a signer's credential cannot be verified now: its check workers are gone.

    The credential is withheld, as one that failed verification is; unlike that one, the
    signer did nothing wrong, and asking again soon may succeed.
    """

    status = 503
    slug = "verification-unavailable"
    title = "Credential verification unavailable"

    def headers(self) -> dict[str, str]:
        """Come back in a second: the workers are replaced in about that."""
        return {"Retry-After": "1"}


class DeadlineExceeded(GatewayError):
    """Raised when the request's overall deadline runs out before the signers finished.

    It names the parts of the request it cut: `part` is the first of them in request order,
    as every other failure names its one part, and `unfinished_parts` all of them (a
    multi-part request may have several still running when its deadline runs out).
    """

    status = 504
    slug = "deadline-exceeded"
    title = "Request deadline exceeded"

    def __init__(self, detail: str, *, parts: Sequence[str] = ()) -> None:
        """Keep the parts the deadline cut (none when it cut no named part)."""
        super().__init__(detail, part=parts[0] if parts else None)
        self.unfinished_parts = tuple(parts)

    def extensions(self) -> dict[str, Any]:
        """Add every part the deadline cut as `unfinishedParts`."""
        extensions = super().extensions()
        if self.unfinished_parts:
            extensions["unfinishedParts"] = list(self.unfinished_parts)
        return extensions


def problem_body(
    *,
    type_: str,
    title: str,
    status: int,
    detail: str,
    instance: str,
    request_id: str,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble an RFC 9457 problem document with the gateway's extension members."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        "requestId": request_id,
    }
    if extensions:
        body.update(extensions)
    return body


async def send_problem(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    scope: Mapping[str, Any],
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    extensions: dict[str, Any] | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a raw ASGI request with a problem+json body, from a middleware.

    For answers given before routing (bad headers, body limits, draining, overload), where no
    exception handler runs. `headers` follow the content type and length.
    """
    body = orjson.dumps(
        problem_body(
            type_=type_,
            title=title,
            status=status,
            detail=detail,
            instance=scope.get("path", ""),
            request_id=scope.get("state", {}).get("request_id", "-"),
            extensions=extensions,
        )
    )
    start_headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


async def send_problem_503(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    scope: Mapping[str, Any],
    *,
    slug: str,
    title: str,
    detail: str,
    close: bool = False,
) -> None:
    """Answer a raw ASGI request 503 problem+json with `Retry-After: 1` (draining, overload).

    Nothing of the request is released: it was refused, or cancelled by the drain. `close`
    adds `Connection: close`, so the caller's next request opens a new connection.
    """
    headers = [(b"retry-after", b"1")]
    if close:
        headers.append((b"connection", b"close"))
    await send_problem(
        send,
        scope,
        status=503,
        type_=PROBLEM_BASE + slug,
        title=title,
        detail=detail,
        headers=headers,
    )
