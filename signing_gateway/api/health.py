"""Liveness and readiness probes for the orchestrator; neither touches a signer."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from signing_gateway.api.deps import ReadinessDep

router = APIRouter(tags=["Health"])


@router.get("/healthz", summary="Liveness: the process and its event loop answer")
async def healthz() -> dict[str, str]:
    """Answer at once; touches no dependency, so only a stuck loop can fail it."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: required signers answered their last background probe",
    responses={503: {"description": "Not ready: a required signer is down, or draining"}},
)
async def readyz(readiness: ReadinessDep) -> Response:
    """200 when ready, else 503, with per-signer state from the background prober."""
    return Response(
        orjson.dumps(readiness.snapshot()),
        status_code=200 if readiness.ready else 503,
        media_type="application/json",
    )
