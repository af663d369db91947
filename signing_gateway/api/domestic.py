"""Domestic routes: static QR codes and the two-step issuance session."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from signing_gateway.api import examples
from signing_gateway.api.bodies import body_doc, read_body
from signing_gateway.api.deps import DomesticIssuerDep, SettingsDep, SignerHeadersDep
from signing_gateway.api.schemas import (
    IssueOut,
    IssueRequest,
    PrepareIssueOut,
    StaticProofOut,
    StaticRequest,
    problem_responses,
)
from signing_gateway.domain.errors import DomainValidationError
from signing_gateway.issuance.commitment import decode_commitment_noting
from signing_gateway.issuance.deadline import request_deadline
from signing_gateway.issuance.domestic import encode_message
from signing_gateway.issuance.session import SESSION_SPENT
from signing_gateway.security.audit import AuditDep
from signing_gateway.security.auth import CallerDep, require_scopes
from signing_gateway.security.settings import SCOPE_DOMESTIC_SIGN

router = APIRouter(
    prefix="/v1/domestic",
    tags=["Domestic"],
    dependencies=[Depends(require_scopes(SCOPE_DOMESTIC_SIGN))],
    responses=problem_responses(400, 401, 403, 408, 413, 415, 500, 503),
)


@router.post(
    "/static",
    response_model=StaticProofOut,
    summary="Sign a static (paper) domestic QR code",
    responses=problem_responses(422, 502, 504),
    openapi_extra=body_doc(
        StaticRequest,
        paper={
            "summary": "Paper proof",
            "value": {"credentialAttributes": examples.DOMESTIC_ATTRIBUTES},
        },
    ),
)
async def issue_static(
    request: Request,
    issuer: DomesticIssuerDep,
    settings: SettingsDep,
    headers: SignerHeadersDep,
    audit: AuditDep,
) -> StaticProofOut:
    """Validate the attributes, have the domestic signer sign them, verify and return the QR."""
    body = await read_body(request, StaticRequest)
    async with audit.attempt():
        audit.domestic("domestic", kind="domestic-static")
        errors = issuer.check_one(body.credential_attributes, loc=("credentialAttributes",))
        if errors:
            raise DomainValidationError(errors)
        async with request_deadline(settings.request_deadline_seconds, parts=("domestic",)):
            proof = await issuer.issue_static(
                body.credential_attributes, part="domestic", headers=headers
            )
        audit.domestic("domestic", kind="domestic-static", proof_identifier=proof.proof_identifier)
    return StaticProofOut(qr=proof.qr, proof_identifier=proof.proof_identifier)


@router.post(
    "/prepare-issue",
    response_model=PrepareIssueOut,
    summary="Open a domestic issuance session",
    # 422: a body sent anyway that is not JSON, or not within the JSON limits (the body limits
    # read every body).
    responses=problem_responses(422, 502, 504),
)
async def prepare_issue(
    issuer: DomesticIssuerDep,
    settings: SettingsDep,
    headers: SignerHeadersDep,
    caller: CallerDep,
    audit: AuditDep,
) -> PrepareIssueOut:
    """Ask the domestic signer for a nonce and hand out a single-use session token.

    The session is the caller's: only a request with the same token subject can use it.
    Takes no body. One sent anyway, as many clients send `{}`, is held to the body limits
    of every request (`application/json`, size, JSON: 415, 413, 422) and otherwise ignored:
    nothing in it changes the session, whose credential amount is the gateway's setting.
    """
    async with audit.attempt():
        audit.domestic("domestic", kind="domestic-session", count=0)
        async with request_deadline(settings.request_deadline_seconds, parts=("domestic",)):
            stoken, message = await issuer.prepare_issue(owner=caller.subject, headers=headers)
    return PrepareIssueOut(stoken=stoken, prepare_issue_message=encode_message(message))


@router.post(
    "/issue",
    response_model=IssueOut,
    summary="Create the domestic credentials of a session",
    responses=problem_responses(401, 422, 502, 504),
    openapi_extra=body_doc(
        IssueRequest,
        session={
            "summary": "One app credential (placeholder session: 401 as it is)",
            "description": examples.SESSION_EXAMPLE_NOTE,
            "value": examples.DOMESTIC_ISSUE,
        },
    ),
)
async def issue(
    request: Request,
    *,
    issuer: DomesticIssuerDep,
    settings: SettingsDep,
    headers: SignerHeadersDep,
    caller: CallerDep,
    audit: AuditDep,
) -> IssueOut:
    """Check the attributes and commitment, take the caller's session, sign, verify, return.

    The commitment is checked for the session before the signer is called (in the idemix
    scheme its proofs, in the simulation its issuerNonce and numbers): one that fails is
    answered 422 `commitment-proof-failed`, and the session stays usable.
    """
    body = await read_body(request, IssueRequest)
    async with audit.attempt():
        count = len(body.credentials_attributes)
        audit.domestic("domestic", kind="domestic-session", count=count)
        errors = issuer.check_many(body.credentials_attributes, loc=("credentialsAttributes",))
        # Checked even when the attributes fail: every error in one 422, as /v1/credentials.
        commitment = await decode_commitment_noting(
            body.issue_commitment_message,
            limits=settings.limits,
            loc=("issueCommitmentMessage",),
            errors=errors,
        )
        if errors or commitment is None:
            raise DomainValidationError(errors)
        # The session is out of the store for the call: put back if the signer never saw it.
        async with (
            issuer.hold_session(body.stoken, owner=caller.subject) as session,
            request_deadline(settings.request_deadline_seconds, parts=("domestic",)),
        ):
            # Before the signer: a failing proof is the app's error (422), not the signer's.
            await issuer.check_commitment(
                session=session, commitment=commitment, count=count, part="domestic"
            )
            items = await issuer.issue(
                session=session,
                commitment=commitment,
                attributes=body.credentials_attributes,
                part="domestic",
                headers=headers,
            )
        audit.advice_if_withheld = SESSION_SPENT  # signed: the session is used up
    return IssueOut(create_credential_messages=encode_message(items))
