"""Liveness and readiness probes for the orchestrator; neither touches a signer."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from signing_gateway.api.deps import DomesticIssuerDep, EuIssuerDep, ReadinessDep
from signing_gateway.resilience.breaker import BreakerState

router = APIRouter(tags=["Health"])


@router.get("/healthz", summary="Liveness: the process and its event loop answer")
async def healthz() -> dict[str, str]:
    """Answer at once; touches no dependency, so only a stuck loop can fail it.

    In the served app the outermost middleware answers `GET /healthz` itself with this same
    body (`RequestMetricsMiddleware`); the route stays for the OpenAPI document.
    """
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: required signers answered their last background probe",
    responses={
        503: {
            "description": "Not ready: a required signer is down or its breaker is open, "
            "or draining"
        }
    },
)
async def readyz(readiness: ReadinessDep, eu: EuIssuerDep, domestic: DomesticIssuerDep) -> Response:
    """200 when ready, else 503, from the background prober and the signers' breakers."""
    policies = {"eu-signer": eu.signer_policy, "domestic-signer": domestic.signer_policy}
    # An open breaker on a required signer means calls through this instance fail fast now.
    breaker_open = any(
        policy.breaker.state is BreakerState.OPEN
        for name, policy in policies.items()
        if name not in readiness.states or readiness.states[name].required
    )
    ready = readiness.ready and not breaker_open
    snapshot = readiness.snapshot()
    snapshot["status"] = "ready" if ready else "not-ready"
    return Response(
        orjson.dumps(snapshot),
        status_code=200 if ready else 503,
        media_type="application/json",
    )
