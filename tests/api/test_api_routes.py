"""The app's routes are its own: no included-router wrapper between a request and its route."""

from __future__ import annotations

from fastapi.routing import APIRoute

from signing_gateway.app import create_app
from signing_gateway.security.auth import RequireScopes
from tests.support.gateway import make_settings


def test_every_route_is_matched_on_the_apps_own_router() -> None:
    """FastAPI's `include_router` would add a wrapper matched and awaited on every request.

    Each such wrapper holds four frames per request in flight (see api/routes); the routes
    keep their prefixes, dependencies and documented answers without it.
    """
    app = create_app(make_settings())
    api_routes = {route.path: route for route in app.routes if isinstance(route, APIRoute)}
    assert {"/v1/dcc", "/v1/domestic/static", "/v1/keys", "/readyz", "/metrics"} <= set(api_routes)
    # Everything else is FastAPI's own documentation routes, never an included router.
    others = [type(route).__name__ for route in app.routes if not isinstance(route, APIRoute)]
    assert set(others) == {"Route"}, others
    # The caller's authentication and scopes still guard every /v1 route, declared where the
    # check from the head of a request holding its body back finds them (`authenticate_head`).
    for path, route in api_routes.items():
        if path.startswith("/v1/"):
            calls = [dependency.call for dependency in route.dependant.dependencies]
            assert any(isinstance(call, RequireScopes) for call in calls), path
