"""Adding a module's routes to the app as the app's own routes, not as an included router.

FastAPI 0.165's `include_router` keeps the included router behind a wrapper that every request
is matched and dispatched through: four more coroutine frames held for each request's whole
signer wait (~600 B per request in flight, `python -m bench.memory_sites`), and a walk of the
routers' versions on every match. So each route module's `APIRouter` carries its own prefix,
tags, dependencies (the caller's authentication and scopes) and documented answers, and
`add_routes` puts its routes on the app's router as they are. Matching, the dependencies that
run and the OpenAPI document are the same as with `include_router`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

__all__ = ["add_routes"]


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """Append the routes of `routers`, in order, to `app`'s own router."""
    for router in routers:
        app.router.routes.extend(router.routes)
