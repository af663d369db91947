"""HEAD on every GET endpoint: the GET's status and headers, one operation documented.

The body itself is the server's to drop (uvicorn sends none for a HEAD, as the ASGI client
here keeps none): tests/contract/gateway/test_gateway_probe_port.py reads the bytes sent.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from signing_gateway.app import create_app
from tests.api.observability.scrape import scrape
from tests.support.gateway import SignerKeys, make_settings, running_gateway

GET_PATHS = ["/healthz", "/readyz", "/metrics", "/v1/keys", "/openapi.json"]
#: The answers whose body is the same on every call: their HEAD's Content-Length is exact.
STABLE_PATHS = {"/healthz", "/v1/keys", "/openapi.json"}


def _same_headers(response: httpx.Response) -> dict[str, str]:
    """The headers a HEAD must repeat (the request id and length are checked apart)."""
    return {
        name: value
        for name, value in response.headers.items()
        if name not in {"x-request-id", "content-length"}
    }


@pytest.mark.parametrize("path", GET_PATHS)
async def test_head_answers_as_get_without_a_body(gateway: httpx.AsyncClient, path: str):
    """HEAD gets the GET's status, headers and Content-Length, and the caller's request id."""
    get = await gateway.get(path)
    head = await gateway.head(path, headers={"X-Request-ID": "head-1"})
    assert head.status_code == get.status_code == 200, get.text
    assert _same_headers(head) == _same_headers(get)
    assert head.headers["x-request-id"] == "head-1"
    length = int(head.headers["content-length"])
    if path in STABLE_PATHS:
        assert length == len(get.content)
    else:  # readiness and metrics change between two calls; the length is the GET's own
        assert length > 0


async def test_head_is_answered_while_draining(test_keys: SignerKeys, signers: respx.MockRouter):
    """Draining, probes still answer HEAD (readiness 503) and /v1 is refused as GET is."""
    app = create_app(make_settings(test_keys))
    async with running_gateway(make_settings(test_keys), app=app) as client:
        app.state.drain.begin()
        answers = {path: await client.head(path) for path in ("/healthz", "/readyz", "/metrics")}
        keys_get, keys_head = await client.get("/v1/keys"), await client.head("/v1/keys")
        readyz_get = await client.get("/readyz")
    assert {path: r.status_code for path, r in answers.items()} == {
        "/healthz": 200,
        "/readyz": 503,
        "/metrics": 200,
    }
    assert answers["/readyz"].headers["content-type"] == readyz_get.headers["content-type"]
    assert keys_get.status_code == keys_head.status_code == 503
    assert keys_head.headers["retry-after"] == keys_get.headers["retry-after"]
    assert int(keys_head.headers["content-length"]) == len(keys_get.content)


@pytest.mark.parametrize("path", GET_PATHS)
async def test_405_on_a_get_path_allows_get_and_head(gateway: httpx.AsyncClient, path: str):
    """Another method on a GET path is 405 with `Allow: GET, HEAD`."""
    response = await gateway.delete(path)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


async def test_head_on_a_post_route_is_refused(gateway: httpx.AsyncClient):
    """HEAD on a POST-only route is 405 naming POST alone: only a GET implies a HEAD."""
    response = await gateway.head("/v1/dcc")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_head_is_counted_once_under_its_route_and_logged_as_head(
    gateway: httpx.AsyncClient, json_log
):
    """A HEAD counts as one response of its route template; its access record says HEAD."""
    assert (await gateway.head("/v1/keys")).status_code == 200
    assert (await gateway.head("/healthz")).status_code == 200
    result = await scrape(gateway)
    assert result.value("gateway_responses_total", route="/v1/keys", status="200") == 1
    assert result.value("gateway_responses_total", route="/healthz", status="200") == 1
    assert result.value("gateway_requests_received_total") == 3  # the scrape included
    access = [r for r in json_log() if r.get("logger") == "signing_gateway.access"]
    heads = [(r["method"], r["route"], r["status"]) for r in access if r["method"] == "HEAD"]
    assert heads == [("HEAD", "/v1/keys", 200)]  # liveness probes are never access-logged


async def test_head_adds_no_operation_to_the_openapi_document(gateway: httpx.AsyncClient):
    """HEAD is implied by GET: the document lists each GET path with its GET operation only."""
    spec = (await gateway.get("/openapi.json")).json()
    methods = {path: sorted(item) for path, item in spec["paths"].items()}
    assert {path: methods[path] for path in ("/healthz", "/readyz", "/metrics", "/v1/keys")} == {
        "/healthz": ["get"],
        "/readyz": ["get"],
        "/metrics": ["get"],
        "/v1/keys": ["get"],
    }
    assert not any("head" in item for item in spec["paths"].values())
