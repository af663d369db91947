"""A listening socket of its own for the orchestrator's probes (`serve --probe-port`).

An orchestrator's HTTP probe opens a new connection every time (Kubernetes does). On the main
port that connection waits in the kernel's accept queue behind every client that connected
just before it, and the loop accepts `--accept-batch` of them per pass: when 1,000 clients
connected at once (bench S1) a fresh `/healthz` waited up to ~230 ms, and a bigger burst
makes it longer. A second listening socket is ready in the event loop on its own, so a probe
is accepted in the next pass whatever is queued on the main port. The same app answers, with
the same state; this port answers only the probe paths (`/healthz`, `/readyz`, `/metrics`),
so client traffic sent there by mistake does not queue with the probes. It is refused 404
without reaching the app, and counted and access-logged as every request is (`unmatched`):
a client pointed at the wrong port shows in `/metrics` and the logs.
"""

from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING

from signing_gateway.errors import ABOUT_BLANK, about_blank_title, send_problem
from signing_gateway.observability.context import NO_STORE, REQUEST_ID_KEY, request_id_of
from signing_gateway.observability.request_metrics import RequestMetricsMiddleware

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    import uvicorn
    from starlette.types import ASGIApp, Receive, Scope, Send

    from signing_gateway.observability.metrics import GatewayMetrics


def probes_only(
    app: ASGIApp,
    paths: AbstractSet[str],
    *,
    metrics: GatewayMetrics | None = None,
    access_log: bool = True,
) -> ASGIApp:
    """`app` for `paths`; every other HTTP path is refused 404 without reaching it.

    With `metrics` (the app's), a refusal is counted, timed and access-logged (`access_log`)
    by the app's own request-metrics layer, as a request no route matched.
    """
    listed = ", ".join(sorted(paths))

    async def refuse(scope: Scope, _receive: Receive, send: Send) -> None:
        # Before the app's middlewares: the request id (every answer carries one) is the
        # request-metrics layer's when it counts the refusal, else settled here the same way.
        state = scope.get("state", {})
        request_id = state.get("request_id") or request_id_of(scope.get("headers", ()))
        await send_problem(
            send,
            {**scope, "state": {**state, "request_id": request_id}},
            status=404,
            type_=ABOUT_BLANK,
            title=about_blank_title(404),
            detail=f"the probe port answers only {listed}; send requests to the main port",
            headers=[(REQUEST_ID_KEY, request_id.encode("latin-1")), NO_STORE],
        )

    refusal: ASGIApp = refuse
    if metrics is not None:
        refusal = RequestMetricsMiddleware(refuse, metrics=metrics, access_log_enabled=access_log)

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in paths:
            await refusal(scope, receive, send)
            return
        await app(scope, receive, send)

    return serve


async def start_probe_listener(
    server: uvicorn.Server, port: int, paths: AbstractSet[str]
) -> asyncio.Server:
    """Listen on `port` (the server's host) with the server's own app for `paths` only.

    The app's state and uvicorn's settings are the server's own, its HTTP protocol too (with
    `serve`, `runtime.http_protocol`'s bounds on request heads), and so are its metrics: a
    refused path is counted in them (when the state holds them, as the gateway's does).
    Call once the server has started (its app is loaded and its lifespan has run). The
    connections count with the main port's (uvicorn's limits and shutdown cover them), and
    the listener closes with the server's own when it is appended to `server.servers`.

    Raises:
        OSError: the port could not be bound (in use, not permitted).
    """
    config = copy.copy(server.config)
    state = server.lifespan.state
    metrics = state.get("metrics")
    access_log = metrics is not None and state["settings"].observability.access_log
    config.loaded_app = probes_only(
        server.config.loaded_app, paths, metrics=metrics, access_log=access_log
    )

    def protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config,
            server_state=server.server_state,
            app_state=server.lifespan.state,
            _loop=_loop,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(protocol, host=config.host, port=port, backlog=config.backlog)
