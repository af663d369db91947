"""Every answer says `Cache-Control: no-store`: none may be kept by a browser or a proxy.

A credential and the problem answers name a person's request; `/readyz` and `/metrics` are this
instance's state of the moment. RFC 9111 lets a shared cache store a GET's 200 (and a 404 or
405) without being told, and a POST's answer once it carries freshness.
"""

from __future__ import annotations

import httpx
import pytest

from tests.api.bodies import eu_vaccination
from tests.api.signer_mocks import MockedSigners


def _no_store(response: httpx.Response) -> None:
    assert response.headers.get_list("cache-control") == ["no-store"], response.headers


async def test_an_issued_credential_is_not_stored(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """The 200 holding a signed DCC."""
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 200
    _no_store(response)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("HEAD", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("GET", "/v1/keys", 200),
        ("HEAD", "/v1/keys", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/nowhere", 404),
        ("DELETE", "/v1/dcc", 405),
    ],
)
async def test_every_route_and_refusal_is_not_stored(
    gateway: httpx.AsyncClient, method: str, path: str, status: int
):
    """The probes, the metrics, the keys and the document, and what no route answers."""
    response = await gateway.request(method, path)
    assert response.status_code == status
    _no_store(response)


async def test_a_refused_body_is_not_stored(gateway: httpx.AsyncClient, mocked: MockedSigners):
    """A 422 (checked by `assert_problem` for every problem in the suite too) and a 415."""
    invalid = await gateway.post("/v1/dcc", json={"dcc": {}})
    assert invalid.status_code == 422
    _no_store(invalid)
    not_json = await gateway.post("/v1/dcc", content=b"x", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415
    _no_store(not_json)
