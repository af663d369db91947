"""Multi-part routes: /v1/print and /v1/credentials, concurrent and all-or-nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request

from signing_gateway.api import examples
from signing_gateway.api.bodies import body_doc, read_body
from signing_gateway.api.deps import (
    DomesticIssuerDep,
    EuIssuerDep,
    SettingsDep,
    SignerHeadersDep,
)
from signing_gateway.api.eu import credential_out
from signing_gateway.api.schemas import (
    CredentialsOut,
    CredentialsRequest,
    IssueOut,
    PrintOut,
    PrintRequest,
    StaticProofOut,
    problem_responses,
)
from signing_gateway.domain.dcc import EuRequest
from signing_gateway.domain.errors import DomainValidationError, FieldError
from signing_gateway.errors import SignerUnavailable
from signing_gateway.issuance.commitment import decode_commitment_noting
from signing_gateway.issuance.deadline import all_or_nothing, request_deadline
from signing_gateway.issuance.domestic import DomesticIssuer, IssuedStaticProof, encode_message
from signing_gateway.issuance.eu import EuIssuer, IssuedEuCredential, PreparedEuRequest
from signing_gateway.issuance.session import SESSION_SPENT
from signing_gateway.security.audit import AuditDep
from signing_gateway.security.auth import ScopeCheckDep, require_scopes
from signing_gateway.security.settings import SCOPE_DCC_SIGN, SCOPE_DOMESTIC_SIGN
from signing_gateway.settings import Settings

T = TypeVar("T")

# Which scopes a request needs depends on the parts it holds, which show only in its body:
# each route checks them itself once it has the body. A caller who may sign nothing is refused
# before that (and, for a request holding its body back, from its head: `authenticate_head`).
router = APIRouter(
    prefix="/v1",
    tags=["Combined"],
    dependencies=[Depends(require_scopes(SCOPE_DOMESTIC_SIGN, SCOPE_DCC_SIGN, any_of=True))],
    responses=problem_responses(400, 401, 403, 408, 413, 415, 500, 503),
)


def _prepare_all(
    issuer: EuIssuer, requests: Sequence[tuple[tuple[str | int, ...], EuRequest]]
) -> tuple[list[PreparedEuRequest], list[FieldError], SignerUnavailable | None]:
    """Prepare every EU part: the prepared ones, the errors of all, the refusal to answer.

    A part whose key usage has no DSC valid now does not stop the others being checked: the
    caller can fix their errors and cannot fix that, so a request with both is answered 422,
    not with a 503 whose `Retry-After` would only lead to the 422. Of several parts without
    a DSC, the one with the longest wait answers (the first of those): a retry after a
    shorter `Retry-After` would only meet the other part's 503.
    """
    prepared: list[PreparedEuRequest] = []
    errors: list[FieldError] = []
    unavailable: SignerUnavailable | None = None
    for loc, request in requests:
        try:
            prepared.append(issuer.prepare(request, loc=loc))
        except DomainValidationError as exc:
            errors.extend(exc.errors)
        except SignerUnavailable as exc:
            if unavailable is None or exc.retry_after > unavailable.retry_after:
                unavailable = exc
    return prepared, errors, unavailable


@router.post(
    "/print",
    response_model=PrintOut,
    summary="Sign a paper proof: domestic and/or EU, concurrently",
    responses=problem_responses(422, 502, 504),
    openapi_extra=body_doc(
        PrintRequest, both={"summary": "Domestic and EU", "value": examples.PRINT}
    ),
)
async def print_proof(
    request: Request,
    *,
    eu: EuIssuerDep,
    domestic: DomesticIssuerDep,
    settings: SettingsDep,
    headers: SignerHeadersDep,
    access: ScopeCheckDep,
    audit: AuditDep,
) -> PrintOut:
    """Validate every part, then sign them concurrently; one failure fails (and cancels) all."""
    body = await read_body(request, PrintRequest)
    access.require(*_scopes_for(domestic=body.domestic is not None, european=body.european))
    async with audit.attempt():
        if body.domestic is not None:
            audit.domestic("domestic", kind="domestic-static")
        if body.european is not None:
            audit.eu_request("european", body.european)
        errors = (
            [] if body.domestic is None else domestic.check_one(body.domestic, loc=("domestic",))
        )
        eu_parts = [] if body.european is None else [(("european",), body.european)]
        prepared, eu_errors, unavailable = _prepare_all(eu, eu_parts)
        if errors or eu_errors:
            raise DomainValidationError(errors + eu_errors)
        if unavailable is not None:
            raise unavailable

        calls: dict[str, Callable[[], Awaitable[Any]]] = {}
        if body.domestic is not None:
            calls["domestic"] = partial(
                domestic.issue_static, body.domestic, part="domestic", headers=headers
            )
        if body.european is not None:
            (prepared_eu,) = prepared  # the one European part, checked above
            calls["european"] = partial(eu.issue, prepared_eu, part="european", headers=headers)
        # The EU part first: refused at once, it fails before a static proof is signed.
        results = await all_or_nothing(
            calls, seconds=settings.request_deadline_seconds, held_back=("domestic",)
        )

        static: IssuedStaticProof | None = results.pop(0) if body.domestic is not None else None
        european: IssuedEuCredential | None = results[0] if results else None
        if static is not None:
            audit.domestic(
                "domestic", kind="domestic-static", proof_identifier=static.proof_identifier
            )
        if european is not None:
            audit.eu_issued("european", european)
    return PrintOut(
        domestic=None
        if static is None
        else StaticProofOut(qr=static.qr, proof_identifier=static.proof_identifier),
        european=None if european is None else credential_out(european),
    )


def _scopes_for(*, domestic: bool, european: object) -> list[str]:
    """The scopes a combined request needs: one per kind of credential it asks for."""
    return [SCOPE_DOMESTIC_SIGN] * domestic + [SCOPE_DCC_SIGN] * bool(european)


async def _issue_credentials(
    body: CredentialsRequest,
    eu: EuIssuer,
    domestic: DomesticIssuer,
    settings: Settings,
    headers: dict[str, str],
    *,
    owner: str,
) -> list[Any]:
    """Validate everything, take `owner`'s session, sign concurrently; domestic result first."""
    errors = domestic.check_many(body.domestic, loc=("domestic",))
    prepared, eu_errors, unavailable = _prepare_all(
        eu, [(("european", i), request) for i, request in enumerate(body.european)]
    )
    errors.extend(eu_errors)
    commitment: bytes | None = None
    if body.domestic and body.issue_commitment_message is not None:
        commitment = await decode_commitment_noting(
            body.issue_commitment_message,
            limits=settings.limits,
            loc=("issueCommitmentMessage",),
            errors=errors,
        )
    if errors:
        raise DomainValidationError(errors)

    calls: dict[str, Callable[[], Awaitable[Any]]] = {}
    proof_check: Callable[[], Awaitable[None]] | None = None
    async with AsyncExitStack() as session_scope:
        if body.domestic and body.stoken is not None and commitment is not None:
            # Out of the store until the request ends; put back if the signer never saw it,
            # even when an EU part failed and cancelled the domestic call before it was sent.
            session = await session_scope.enter_async_context(
                domestic.hold_session(body.stoken, owner=owner)
            )
            proof_check = partial(
                domestic.check_commitment,
                session=session,
                commitment=commitment,
                count=len(body.domestic),
                part="domestic",
            )
            calls["domestic"] = partial(
                domestic.issue,
                session=session,
                commitment=commitment,
                attributes=body.domestic,
                part="domestic",
                headers=headers,
            )
        if unavailable is not None:
            # An EU part without a DSC fails the request before any call. Raised with the
            # session held, so that the answer says whether to retry with it: not when its
            # Retry-After ends after the session does.
            raise unavailable
        # At most as many EU parts at the signer at once as its bulkhead lets in: the others
        # wait here for a sibling to finish, not in the bulkhead's queue, whose wait (0.5 s by
        # default) is shorter than a signing. There a request with more EU parts than slots
        # was refused "at capacity" by its own parts, however idle the signer.
        lanes = asyncio.Semaphore(eu.signer_policy.settings.max_in_flight)
        for i, p in enumerate(prepared):
            part = f"european[{i}]"
            calls[part] = partial(_in_lane, lanes, partial(eu.issue, p, part=part, headers=headers))
        seconds = settings.request_deadline_seconds
        if proof_check is not None:
            # Before any signer (EU ones too): a failing proof is the app's error (422), not
            # the signer's. Its time comes out of the request's deadline.
            started = asyncio.get_running_loop().time()
            async with request_deadline(seconds, parts=("domestic",)):
                await proof_check()
            seconds -= asyncio.get_running_loop().time() - started
        # The EU parts first: one refused at once fails before /issue is sent, and the
        # session goes back to the store.
        return await all_or_nothing(calls, seconds=seconds, held_back=("domestic",))


async def _in_lane(lanes: asyncio.Semaphore, call: Callable[[], Awaitable[T]]) -> T:
    """`call`'s result, started once one of `lanes` is free and holding it until it ends."""
    async with lanes:
        return await call()


@router.post(
    "/credentials",
    response_model=CredentialsOut,
    summary="Create an app's domestic and EU credentials, concurrently",
    responses=problem_responses(401, 422, 502, 504),
    openapi_extra=body_doc(
        CredentialsRequest,
        app={
            "summary": "Domestic session and two EU (placeholder session: 401 as it is)",
            "description": examples.SESSION_EXAMPLE_NOTE,
            "value": examples.CREDENTIALS,
        },
    ),
)
async def issue_credentials(
    request: Request,
    *,
    eu: EuIssuerDep,
    domestic: DomesticIssuerDep,
    settings: SettingsDep,
    headers: SignerHeadersDep,
    access: ScopeCheckDep,
    audit: AuditDep,
) -> CredentialsOut:
    """Validate everything, take the session, then sign all parts concurrently."""
    body = await read_body(request, CredentialsRequest)
    access.require(*_scopes_for(domestic=bool(body.domestic), european=body.european))
    async with audit.attempt():
        if body.domestic:
            audit.domestic("domestic", kind="domestic-session", count=len(body.domestic))
        for i, part in enumerate(body.european):
            audit.eu_request(f"european[{i}]", part)
        results = await _issue_credentials(
            body, eu, domestic, settings, headers, owner=access.caller.subject
        )
        if body.domestic:
            audit.advice_if_withheld = SESSION_SPENT  # signed: the session is used up
        for i, issued in enumerate(results[1:] if body.domestic else results):
            audit.eu_issued(f"european[{i}]", issued)

    greencard = (
        IssueOut(create_credential_messages=encode_message(results.pop(0)))
        if body.domestic
        else None
    )
    return CredentialsOut(
        domestic_greencard=greencard, eu_greencards=[credential_out(r) for r in results]
    )
