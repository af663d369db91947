"""POST /v1/dcc: one validated, signed and verified EU DCC."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from signing_gateway.api import examples
from signing_gateway.api.bodies import body_doc, read_body
from signing_gateway.api.deps import EuRouteDep
from signing_gateway.api.schemas import EuCredentialOut, problem_responses
from signing_gateway.domain.dcc import EuRequest
from signing_gateway.issuance.deadline import request_deadline
from signing_gateway.issuance.eu import IssuedEuCredential
from signing_gateway.security.auth import require_scopes
from signing_gateway.security.settings import SCOPE_DCC_SIGN

router = APIRouter(
    prefix="/v1",
    tags=["EU DCC"],
    dependencies=[Depends(require_scopes(SCOPE_DCC_SIGN))],
    responses=problem_responses(400, 401, 403, 408, 413, 415, 500, 503),
)


def credential_out(issued: IssuedEuCredential) -> EuCredentialOut:
    """The public form of a verified EU credential."""
    return EuCredentialOut(
        credential=issued.credential,
        proof_identifier=issued.proof_identifier,
        kid=issued.kid,
        key_usage=issued.key_usage.value,
        expiration_time=issued.expiration_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


@router.post(
    "/dcc",
    response_model=EuCredentialOut,
    summary="Sign one EU Digital COVID Certificate",
    responses=problem_responses(422, 502, 504),
    openapi_extra=body_doc(
        EuRequest,
        vaccination={"summary": "Vaccination, 2 of 2", "value": examples.EU_VACCINATION},
        test={"summary": "NAA test, negative", "value": examples.EU_TEST},
    ),
)
async def issue_dcc(request: Request, route: EuRouteDep) -> EuCredentialOut:
    """Validate the DCC, have the EU signer sign it, verify the result and return it."""
    issuer, settings, audit = route.issuer, route.settings, route.audit
    body = await read_body(request, EuRequest)
    async with audit.attempt():
        audit.eu_request("european", body)
        prepared = issuer.prepare(body)
        # The signer wait needs only `prepared`: the request model goes (see api/bodies).
        del body
        async with request_deadline(settings.request_deadline_seconds, parts=("european",)):
            issued = await issuer.issue(prepared, part="european", headers=route.headers)
        audit.eu_issued("european", issued)
    return credential_out(issued)
