"""A 404 or 405 of the routing says which path and, for a 405, which methods it takes."""

from __future__ import annotations

import httpx
import pytest

from signing_gateway.api import problems
from tests.api.assertions import assert_problem
from tests.api.signer_mocks import MockedSigners


def _routing_problem(response: httpx.Response, status: int, title: str) -> str:
    """Assert a routing refusal, `about:blank` with its title; return its detail."""
    body = assert_problem(response, status)
    assert (body["type"], body["title"]) == ("about:blank", title)
    return str(body["detail"])


async def test_a_404_names_the_path_and_where_the_operations_are(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """A path no operation has: 404 whose detail names it and points at /openapi.json.

    The detail was "Not Found", the title again.
    """
    detail = _routing_problem(await gateway.post("/v1/dccs", json={}), 404, "Not Found")
    assert detail == "no operation at /v1/dccs; see /openapi.json"
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/dcc", "POST"),
        ("PUT", "/v1/keys", "GET, HEAD"),
        ("OPTIONS", "/v1/dcc", "POST"),
    ],
)
async def test_a_405_names_the_method_the_path_and_what_it_allows(
    gateway: httpx.AsyncClient, mocked: MockedSigners, method: str, path: str, allow: str
):
    """A method the path does not take: 405 whose detail says so and repeats `Allow`."""
    response = await gateway.request(method, path)
    detail = _routing_problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == allow
    assert detail == f"{method} is not allowed on {path}; allowed: {allow}"
    assert mocked.signing_calls() == 0


async def test_a_404_quotes_a_hostile_path_encoded_and_cut(gateway: httpx.AsyncClient):
    """An 8 KB path of control characters is quoted percent-encoded, at most 100 characters.

    It is quoted as the server decoded it: an encoded "?" does not end it, an encoded line
    break is not dropped.
    """
    path = "/a%0D%0Ab%1B[31m%3Fq\u00e9" + "x" * 8_000
    response = await gateway.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    shown = detail.removeprefix("no operation at ").removesuffix("; see /openapi.json")
    assert shown.startswith("/a%0D%0Ab%1B%5B31m%3Fq%C3%A9xxx")
    assert shown.endswith("x...")
    assert len(shown) == problems.PATH_QUOTED_MAX
    assert detail.isascii()
    assert detail.isprintable()
