"""Checks every problem+json answer of the gateway must pass."""

from __future__ import annotations

from typing import Any

import httpx

from signing_gateway.errors import PROBLEM_BASE


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    """Assert an RFC 9457 answer with `status` (and problem type `slug`); return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "instance", "requestId"} <= body.keys()
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert body["requestId"] == response.headers["x-request-id"]
    assert response.headers.get_list("cache-control") == ["no-store"]
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug
    return body


def error_locs(body: dict[str, Any]) -> list[list[str | int]]:
    """The `loc` of every located error in a 422 body."""
    return [error["loc"] for error in body["errors"]]
