"""GET /v1/keys: the public keys that verify what the gateway releases."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from signing_gateway.api.schemas import KeysOut, problem_responses
from signing_gateway.security.auth import require_scopes
from signing_gateway.security.settings import SCOPE_KEYS_READ

router = APIRouter(
    prefix="/v1",
    tags=["Keys"],
    dependencies=[Depends(require_scopes(SCOPE_KEYS_READ))],
    responses=problem_responses(400, 401, 403, 500, 503),
)


@router.get("/keys", response_model=KeysOut, summary="Public keys of the configured signers")
async def keys(request: Request) -> KeysOut:
    """The DSC certificates (EU) and public keys (domestic) the gateway verifies against."""
    return KeysOut.model_validate(
        {
            "eu": request.state.eu_trust.to_public_json(),
            "domestic": request.state.domestic_trust.to_public_json(),
        }
    )
