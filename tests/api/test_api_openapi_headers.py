"""/openapi.json documents the headers callers rely on, and the 400 and 408 they can get."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest
import respx
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.issuance.deadline import REQUEST_TIMEOUT_HEADER
from signing_gateway.observability.context import REQUEST_ID_HEADER, accept_or_generate
from tests.api.assertions import assert_problem
from tests.api.readiness import readyz_when_probed
from tests.support.gateway import SignerKeys, make_settings, running_gateway

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _operations(spec: dict[str, Any], prefix: str = "/") -> dict[str, dict[str, Any]]:
    """Every operation of the document under `prefix`, as "METHOD /path"."""
    return {
        f"{method.upper()} {path}": operation
        for path, item in spec["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
    }


def _header(operation: dict[str, Any], name: str) -> dict[str, Any]:
    (parameter,) = [
        p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == name
    ]
    return parameter


def _header_params(dependant: Dependant) -> list[str]:
    """The headers FastAPI reads for a route: its own parameters' and its dependencies'."""
    own = [field.alias for field in dependant.header_params]
    return own + [name for sub in dependant.dependencies for name in _header_params(sub)]


@pytest.fixture
def spec(test_keys: SignerKeys) -> dict[str, Any]:
    """The document of a gateway whose own deadline is 7.5 s."""
    return create_app(make_settings(test_keys, request_deadline_seconds=7.5)).openapi()


def test_every_v1_operation_declares_both_request_headers(spec: dict[str, Any]):
    """X-Request-Timeout and X-Request-ID are optional header parameters of each /v1 call."""
    operations = _operations(spec, "/v1/")
    assert len(operations) == 7
    for where, operation in operations.items():
        for name in (REQUEST_TIMEOUT_HEADER, REQUEST_ID_HEADER):
            parameter = _header(operation, name)
            assert parameter["required"] is False, where
            assert parameter["description"], where
            assert parameter["schema"]["type"] in {"number", "string"}, where


def test_the_document_asked_for_again_declares_each_header_once(test_keys: SignerKeys):
    """Pin that each fetch of the document leaves it as it was: no parameter added twice.

    FastAPI keeps the document it generated, and the headers are added to it on every fetch.
    """
    app = create_app(make_settings(test_keys))
    first = copy.deepcopy(app.openapi())
    assert app.openapi() == first
    for operation in _operations(app.openapi(), "/v1/").values():
        names = [(p["name"].lower(), p["in"]) for p in operation["parameters"]]
        assert len(names) == len(set(names))


def test_the_probes_declare_no_request_header(spec: dict[str, Any]):
    """/healthz and /readyz read neither header (they ignore X-Request-Timeout): none shown."""
    probes = {k: v for k, v in _operations(spec).items() if not k.split()[1].startswith("/v1/")}
    assert {"GET /healthz", "GET /readyz"} <= probes.keys()
    for where, operation in probes.items():
        assert not operation.get("parameters"), where


def test_the_timeout_header_says_its_format_bounds_and_refusal(spec: dict[str, Any]):
    """X-Request-Timeout: a number above 0, capped at this gateway's deadline, else 400."""
    parameter = _header(spec["paths"]["/v1/dcc"]["post"], REQUEST_TIMEOUT_HEADER)
    assert parameter["schema"] == {"type": "number", "exclusiveMinimum": 0}
    description = parameter["description"]
    for words in ("seconds", "arrival", "7.5 s", "504", "400 problem+json"):
        assert words in description, words


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("a", True),
        ("trace-7:x.y_z", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("two words", False),
        ("é", False),
        ("a/b", False),
    ],
)
def test_the_request_id_pattern_is_the_one_the_gateway_keeps(
    spec: dict[str, Any], value: str, *, kept: bool
):
    """A caller's X-Request-ID matching the documented pattern is kept; any other is replaced.

    Each side against the expected answer, not against each other: the document and the
    gateway read one constant, so a wrong pattern would have agreed with itself.
    """
    pattern = _header(spec["paths"]["/v1/keys"]["get"], REQUEST_ID_HEADER)["schema"]["pattern"]
    assert (re.search(pattern, value) is not None) is kept
    assert (accept_or_generate(value) == value) is kept


def test_a_minted_request_id_fits_the_documented_pattern(spec: dict[str, Any]):
    """Pin that an id the gateway makes up is one a caller could have sent."""
    pattern = _header(spec["paths"]["/v1/keys"]["get"], REQUEST_ID_HEADER)["schema"]["pattern"]
    assert re.search(pattern, accept_or_generate(None))


def test_every_answer_documents_the_request_id_header(spec: dict[str, Any]):
    """Each documented response of each operation, probes included, carries X-Request-ID."""
    missing = [
        f"{where} {status}"
        for where, operation in _operations(spec).items()
        for status, response in operation["responses"].items()
        if not response.get("headers", {}).get(REQUEST_ID_HEADER, {}).get("required")
    ]
    assert missing == []
    header = spec["paths"]["/healthz"]["get"]["responses"]["200"]["headers"][REQUEST_ID_HEADER]
    assert header["schema"]["pattern"]


def test_every_answer_documents_that_it_is_not_stored(spec: dict[str, Any]):
    """Each documented response carries `Cache-Control: no-store`, as every answer does."""
    documented = {
        f"{where} {status}": response.get("headers", {}).get("Cache-Control", {}).get("schema")
        for where, operation in _operations(spec).items()
        for status, response in operation["responses"].items()
    }
    assert documented
    assert set(map(str, documented.values())) == {str({"type": "string", "const": "no-store"})}


def test_400_and_408_are_documented_where_they_can_happen(spec: dict[str, Any]):
    """Every /v1 call documents 400 (bad X-Request-Timeout); every one with a body limit, 408."""
    operations = _operations(spec, "/v1/")
    documented_400 = {where: op["responses"].get("400") for where, op in operations.items()}
    assert {where: (r or {}).get("content") for where, r in documented_400.items()} == (
        dict.fromkeys(operations, PROBLEM)
    )
    with_body = [where for where, op in operations.items() if "requestBody" in op]
    assert len(with_body) == 5
    for where, operation in operations.items():
        responses = operation["responses"]
        # 408 and 413 both come from the body limits: one is documented where the other is.
        assert ("408" in responses) == ("413" in responses), where
        if where in with_body:
            assert responses["408"]["content"] == PROBLEM, where
    assert "408" not in operations["GET /v1/keys"]["responses"]


def test_the_refusals_before_any_route_are_described(spec: dict[str, Any]):
    """The document's description names what is refused before routing: 431, 408 and 400.

    No operation can list them: the request is refused before it is known to be one.
    """
    description = " ".join(spec["info"]["description"].split())
    for words in (
        "refused 431 problem+json",
        "in time 408",
        "not valid HTTP/1.1 400 (`bad-request`)",
        "`instance` is the request's path",
        "`Authorization`, `Content-Type` or `Host` more than once is refused 400",
    ):
        assert words in description, words


async def test_404_and_405_are_described_as_they_are_answered(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """Pin that the description names the 404 and the 405 with `Allow`, OPTIONS included.

    No operation can list them, and the document said nothing of either.
    """
    settings = make_settings(test_keys)
    app = create_app(settings)
    description = " ".join(app.openapi()["info"]["description"].split())
    for words in ("answered 404", "405 with `Allow`", "OPTIONS", "`about:blank`"):
        assert words in description, words
    async with running_gateway(settings, app=app) as client:
        assert_problem(await client.get("/v1/nowhere"), 404)
        options = await client.options("/v1/dcc")
        assert_problem(options, 405)
        assert options.headers["allow"] == "POST"
        assert (await client.options("/v1/keys")).headers["allow"] == "GET, HEAD"


async def test_a_bad_timeout_header_gets_the_documented_400(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """Each /v1 call answers an unreadable X-Request-Timeout with 400, as documented."""
    settings = make_settings(test_keys)
    spec = create_app(settings).openapi()
    async with running_gateway(settings) as client:
        for where in _operations(spec, "/v1/"):
            method, path = where.split()
            response = await client.request(
                method, path, json={} if method == "POST" else None,
                headers={REQUEST_TIMEOUT_HEADER: "soon"},
            )  # fmt: skip
            assert_problem(response, 400)
            assert "400" in spec["paths"][path][method.lower()]["responses"], where


async def test_a_repeated_authorization_field_gets_the_documented_400(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """Each /v1 call answers two Authorization fields with 400, and its 400 says so."""
    settings = make_settings(test_keys)
    spec = create_app(settings).openapi()
    async with running_gateway(settings) as client:
        for where, operation in _operations(spec, "/v1/").items():
            method, path = where.split()
            fields = [("Authorization", "Bearer one"), ("Authorization", "Bearer two")]
            response = await client.request(method, path, headers=fields)
            assert "Authorization" in assert_problem(response, 400, "bad-request")["detail"]
            description = operation["responses"]["400"]["description"]
            assert "Authorization, Content-Type or Host header field is repeated" in description


async def test_the_document_is_served_with_the_headers(gateway: httpx.AsyncClient):
    """/openapi.json as served holds the additions too."""
    spec = (await gateway.get("/openapi.json")).json()
    assert _header(spec["paths"]["/v1/print"]["post"], REQUEST_TIMEOUT_HEADER)


def test_no_route_reads_a_header_through_fastapi(test_keys: SignerKeys):
    """The headers are documented, not declared: no /v1 route has FastAPI solve a header.

    The middlewares read them; a `Header()` parameter would cost dependency solving on every
    request (docs/benchmarks.md).
    """
    app = create_app(make_settings(test_keys))
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/v1/")]
    assert len(routes) == 7
    assert {r.path: _header_params(r.dependant) for r in routes} == {r.path: [] for r in routes}


async def test_every_v1_call_documents_the_503_of_a_draining_gateway(
    test_keys: SignerKeys, signers: respx.MockRouter
):
    """Pin that each /v1 call, /v1/keys too, documents its 503 and the Retry-After it carries.

    The drain and the CPU gate refuse any /v1 request, not only those bound for a signer;
    /v1/keys documented no 503 at all.
    """
    settings = make_settings(test_keys)
    app = create_app(settings)
    spec = app.openapi()
    async with running_gateway(settings, app=app) as client:
        app.state.drain.begin()
        for where in _operations(spec, "/v1/"):
            method, path = where.split()
            response = await client.request(method, path)
            assert_problem(response, 503, "shutting-down")
            assert response.headers["retry-after"] == "1"
            documented = spec["paths"][path][method.lower()]["responses"].get("503", {})
            assert documented.get("content") == PROBLEM, where
            assert documented["headers"]["Retry-After"]["required"] is True, where
            assert "shutting down" in documented["description"], where


def test_every_v1_call_documents_its_500(spec: dict[str, Any]):
    """Pin that a bug's 500 problem+json is documented for each /v1 call, as any can get it."""
    operations = _operations(spec, "/v1/")
    assert {where: op["responses"].get("500", {}).get("content") for where, op in
            operations.items()} == dict.fromkeys(operations, PROBLEM)  # fmt: skip


async def test_the_401_and_403_document_www_authenticate(gateway: httpx.AsyncClient):
    """Pin that every documented 401 and 403 names the WWW-Authenticate header it carries."""
    spec = (await gateway.get("/openapi.json")).json()
    for where, operation in _operations(spec, "/v1/").items():
        for status in ("401", "403"):
            header = operation["responses"][status]["headers"]["WWW-Authenticate"]
            assert header["required"] is True, (where, status)
    # The issuance session is a credential too: its 401 says so in the header.
    response = await gateway.post("/v1/domestic/issue", json=examples.DOMESTIC_ISSUE)
    assert_problem(response, 401, "stoken-invalid")
    assert response.headers["www-authenticate"].startswith("Stoken ")
    described = spec["paths"]["/v1/domestic/issue"]["post"]["responses"]["401"]["headers"]
    assert "`Stoken`" in described["WWW-Authenticate"]["description"]


@pytest.mark.parametrize("draining", [False, True], ids=["ready", "draining"])
async def test_readyz_answers_as_documented(
    test_keys: SignerKeys, signers: respx.MockRouter, *, draining: bool
):
    """Pin that /readyz's 200 and 503 are documented as the JSON snapshot they are.

    The 503 was documented with no content at all, as if it had no body.
    """
    settings = make_settings(test_keys)
    app = create_app(settings)
    spec = app.openapi()
    async with running_gateway(settings, app=app) as client:
        response = await readyz_when_probed(client)
        if draining:
            app.state.drain.begin()
            response = await client.get("/readyz")
    assert response.status_code == (503 if draining else 200)
    documented = spec["paths"]["/readyz"]["get"]["responses"][str(response.status_code)]
    assert response.headers["content-type"] == "application/json"
    Draft202012Validator(documented["content"]["application/json"]["schema"]).validate(
        response.json()
    )
