"""Liveness and readiness probes for the orchestrator; neither touches a signer."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from signing_gateway.api.deps import DomesticIssuerDep, EuIssuerDep, EuTrustDep, ReadinessDep
from signing_gateway.observability.signing_certificates import (
    certificates_health,
    usage_certificates,
)
from signing_gateway.resilience.breaker import BreakerState

router = APIRouter(tags=["Health"])

#: The /readyz body, ready or not: its status, draining, each probed dependency, the details.
_READINESS_SCHEMA = {
    "type": "object",
    "required": ["status", "draining", "dependencies", "euSigningCertificates"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "degraded", "not-ready"]},
        "draining": {"type": "boolean"},
        "dependencies": {
            "type": "object",
            "description": "Each probed dependency's last probe: the signers, and the audit "
            "file when one is set",
        },
        "euSigningCertificates": {
            "type": "object",
            "description": "Each EU key usage's signing DSC as of now",
        },
    },
}


def _readiness(description: str) -> dict[str, object]:
    """A documented /readyz answer: JSON, ready or not."""
    return {
        "description": description,
        "content": {"application/json": {"schema": dict(_READINESS_SCHEMA)}},
    }


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
        200: _readiness("Ready, or degraded: some EU key usage has no DSC valid now"),
        503: _readiness(
            "Not ready: a required signer is down or its breaker is open, "
            "the required EU signer has no DSC valid now for any key usage, the audit file "
            "cannot take records (failing closed), the Redis session store does not answer "
            "(when required), the Idemix check workers are down (idemix scheme), or draining"
        ),
    },
)
async def readyz(
    readiness: ReadinessDep, eu: EuIssuerDep, domestic: DomesticIssuerDep, eu_trust: EuTrustDep
) -> Response:
    """200 when ready (or degraded), else 503: prober, breakers and the EU DSCs' validity."""
    policies = {"eu-signer": eu.signer_policy, "domestic-signer": domestic.signer_policy}

    def required(name: str) -> bool:
        return name not in readiness.states or readiness.states[name].required

    # An open breaker on a required signer means calls through this instance fail fast now.
    breaker_open = any(
        policy.breaker.state is BreakerState.OPEN
        for name, policy in policies.items()
        if required(name)
    )
    usages = usage_certificates(eu_trust, now=datetime.now(UTC))
    certificates = certificates_health(usages)
    # No key usage signable is the EU signer being down in effect; only some is degraded:
    # the other usages and the domestic signer still work, and every replica shares the
    # same DSCs, so taking this one out of service would help no caller.
    eu_unusable = certificates == "unusable" and required("eu-signer")
    ready = readiness.ready and not breaker_open and not eu_unusable
    snapshot = readiness.snapshot()
    snapshot["status"] = (
        "not-ready" if not ready else "degraded" if certificates != "ok" else "ready"
    )
    snapshot["euSigningCertificates"] = {usage: c.to_json() for usage, c in usages.items()}
    return Response(
        orjson.dumps(snapshot),
        status_code=200 if ready else 503,
        media_type="application/json",
    )
