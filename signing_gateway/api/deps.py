"""FastAPI dependencies: typed access to what the lifespan built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import Depends, Request

from signing_gateway.issuance.domestic import DomesticIssuer
from signing_gateway.issuance.eu import EuIssuer
from signing_gateway.observability.context import REQUEST_ID_HEADER
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.observability.readiness import ReadinessMonitor
from signing_gateway.runtime.cpu_gate import checkpoint
from signing_gateway.security.audit import IssuanceAudit, issuance_audit
from signing_gateway.security.audit_trail import AuditTrail
from signing_gateway.security.auth import CallerDep, TokenVerifier
from signing_gateway.settings import Settings
from signing_gateway.verification.trust import DomesticTrustStore, EuTrustStore


class GatewayState(TypedDict):
    """What the lifespan yields; FastAPI exposes each key on `request.state`.

    Each request gets a copy of this dict, and the gateway adds one key to it: `request_id`.
    Ten keys fit the copy's table; an eleventh doubles it, ~200 B more for every request in
    flight. So a new per-request fact goes in a scope key of its own (as the CPU gate's
    arrival time does), and a new key here wants a measurement (`bench.memory_sites`).
    """

    settings: Settings
    eu_issuer: EuIssuer
    domestic_issuer: DomesticIssuer
    eu_trust: EuTrustStore
    domestic_trust: DomesticTrustStore
    readiness: ReadinessMonitor
    metrics: GatewayMetrics
    token_verifier: TokenVerifier | None  # None: auth.mode = "disabled"
    audit: AuditTrail


# Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency in
# a worker thread, a thread hop per dependency per request (measured on /v1/dcc: ~15 % of the
# gateway's CPU went to thread hand-offs). Keep new dependencies async unless they block.


async def _eu_issuer(request: Request) -> EuIssuer:
    issuer: EuIssuer = request.state.eu_issuer
    return issuer


async def _domestic_issuer(request: Request) -> DomesticIssuer:
    issuer: DomesticIssuer = request.state.domestic_issuer
    return issuer


async def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def _readiness(request: Request) -> ReadinessMonitor:
    monitor: ReadinessMonitor = request.state.readiness
    return monitor


async def _eu_trust(request: Request) -> EuTrustStore:
    trust: EuTrustStore = request.state.eu_trust
    return trust


async def _signer_headers(request: Request) -> dict[str, str]:
    return {REQUEST_ID_HEADER: request.state.request_id}


EuIssuerDep = Annotated[EuIssuer, Depends(_eu_issuer)]
DomesticIssuerDep = Annotated[DomesticIssuer, Depends(_domestic_issuer)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ReadinessDep = Annotated[ReadinessMonitor, Depends(_readiness)]
EuTrustDep = Annotated[EuTrustStore, Depends(_eu_trust)]
SignerHeadersDep = Annotated[dict[str, str], Depends(_signer_headers)]


@dataclass(frozen=True, slots=True)
class EuRoute:
    """What an EU issuance route needs, solved as one dependency."""

    issuer: EuIssuer
    settings: Settings
    headers: dict[str, str]
    audit: IssuanceAudit


async def _eu_route(request: Request, caller: CallerDep) -> EuRoute:
    # One dependency instead of four (issuer, settings, signer headers, audit): FastAPI's
    # dependency solving per sub-dependency was ~8 % of /v1/dcc CPU in the S3 profile.
    await checkpoint()  # one step per stretch of CPU work: see runtime/cpu_gate.checkpoint
    state = request.state
    return EuRoute(
        issuer=state.eu_issuer,
        settings=state.settings,
        headers={REQUEST_ID_HEADER: state.request_id},
        audit=issuance_audit(request, caller),
    )


EuRouteDep = Annotated[EuRoute, Depends(_eu_route)]
