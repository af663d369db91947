"""GET /metrics: the app's registry in the Prometheus text format.

Unauthenticated (scrapers sit inside the cluster; the metrics carry no personal data, only
route templates, signer names and outcome slugs) and meant to be exempt from load shedding,
so an overloaded gateway can still be seen. Rendering is bounded by the label cardinality,
which the metrics module keeps small, so it runs on the loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from signing_gateway.observability.metrics import METRICS_CONTENT_TYPE, GatewayMetrics

router = APIRouter(tags=["Health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    response_class=Response,
    responses={200: {"content": {METRICS_CONTENT_TYPE: {}}, "description": "Text exposition"}},
)
async def metrics(request: Request) -> Response:
    """Render every metric of this app in the Prometheus text format."""
    registry: GatewayMetrics = request.state.metrics
    return Response(registry.render(), media_type=METRICS_CONTENT_TYPE)
