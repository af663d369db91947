"""Bodies the endpoints read themselves: freed during the signer wait, failing as before."""

from __future__ import annotations

import gc
from typing import Any

import httpx
import orjson
import pytest
import respx
from jsonschema import Draft202012Validator

from signing_gateway.api.schemas import CredentialsRequest, PrintRequest
from signing_gateway.app import create_app
from signing_gateway.domain.dcc import EuRequest
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.signer_mocks import MockedSigners, eu_signing
from tests.support.gateway import EU_SIGNER_URL, SignerKeys, frozen_test_heap, make_settings

REF_PREFIX = "#/components/schemas/"


def _request_forms_alive(content: bytes) -> list[str]:
    """What is alive of the request `content` parsed: models, the JSON object, its DCC."""
    parsed = orjson.loads(content)
    alive = []
    for item in gc.get_objects():
        if isinstance(item, EuRequest | PrintRequest | CredentialsRequest):
            alive.append(type(item).__name__)
        elif item is parsed or item is parsed["dcc"] or not isinstance(item, dict):
            continue
        elif item == parsed:
            alive.append("parsed JSON body")
        elif item == parsed["dcc"]:
            alive.append("DCC payload")
    return alive


async def test_signer_wait_holds_no_parsed_request(
    gateway: httpx.AsyncClient, signers: respx.MockRouter, test_keys: SignerKeys
):
    """While /v1/dcc awaits the signer, no parsed form of its request is alive, not even the DCC.

    The encoded signer request is all it holds of the DCC (verification reads it back).
    """
    sign = eu_signing(test_keys)
    content = orjson.dumps(eu_vaccination())  # no dict of the body stays in this test either
    seen: list[list[str]] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        gc.collect()
        seen.append(_request_forms_alive(content))
        return sign(request)

    signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=answer)
    response = await gateway.post(
        "/v1/dcc", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert seen == [[]]


async def test_empty_body_is_a_missing_field(gateway: httpx.AsyncClient, mocked: MockedSigners):
    """An empty body is answered as FastAPI would: 422, the body is a required field."""
    response = await gateway.post("/v1/dcc", headers={"Content-Type": "application/json"})
    body = assert_problem(response, 422)
    assert body["errors"] == [{"loc": ["body"], "msg": "Field required"}]
    assert mocked.signing_calls() == 0


async def test_errors_are_located_under_body(gateway: httpx.AsyncClient, mocked: MockedSigners):
    """A validation error names its field from the body down, as FastAPI's own do."""
    request = eu_vaccination()
    request["dcc"]["v"][0]["dn"] = "2"  # strict: a string is not a dose number
    response = await gateway.post("/v1/dcc", json=request)
    body = assert_problem(response, 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "dcc", "v", 0, "dn"]]
    assert mocked.signing_calls() == 0


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


async def test_every_schema_reference_resolves(gateway: httpx.AsyncClient):
    """Every $ref in /openapi.json names a schema the document holds."""
    document = (await gateway.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    refs = _refs(document)
    assert f"{REF_PREFIX}EuRequest" in refs
    assert {ref.removeprefix(REF_PREFIX) for ref in refs} <= schemas.keys()


async def test_body_schema_is_the_models(gateway: httpx.AsyncClient):
    """/v1/dcc documents a required JSON body whose schema has the request model's fields."""
    document = (await gateway.get("/openapi.json")).json()
    body = document["paths"]["/v1/dcc"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": f"{REF_PREFIX}EuRequest"}
    fields = {field.alias or name for name, field in EuRequest.model_fields.items()}
    assert set(document["components"]["schemas"]["EuRequest"]["properties"]) == fields


def _null_paths(node: Any, path: str = "") -> list[str]:
    """Where `node` holds a JSON null, as paths like `/Dcc/properties/ver`."""
    if node is None:
        return [path]
    if isinstance(node, list):
        node = dict(enumerate(node))
    if not isinstance(node, dict):
        return []
    return [found for key, value in node.items() for found in _null_paths(value, f"{path}/{key}")]


async def test_added_schemas_are_sorted_and_hold_no_null(gateway: httpx.AsyncClient):
    """The body schemas join the components as FastAPI's own: sorted by name, no null in them."""
    schemas = (await gateway.get("/openapi.json")).json()["components"]["schemas"]
    assert list(schemas) == sorted(schemas)
    assert {"EuRequest", "PersonName", "DomesticAttributes"} <= schemas.keys()
    assert _null_paths(schemas) == []


# The request fields the gateway accepts as null, so the document may say so: the contract's
# `{"domestic": DomesticAttributes | null, "european": EuRequest | null}` of /v1/print, and the
# session fields of /v1/credentials, which a request without a domestic part may leave null.
# Every other optional field refuses null ("Leave the field out instead of sending null").
NULL_ACCEPTED = {
    "PrintRequest.domestic",
    "PrintRequest.european",
    "CredentialsRequest.stoken",
    "CredentialsRequest.issueCommitmentMessage",
}


def _allows_null(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """Whether a JSON schema (OpenAPI 3.1: JSON Schema 2020-12) accepts a JSON null."""
    if "$ref" in schema:
        return _allows_null(schemas[schema["$ref"].removeprefix(REF_PREFIX)], schemas)
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if schema.get("nullable") is True or ("const" in schema and schema["const"] is None):
        return True
    arms = [*schema.get("anyOf", []), *schema.get("oneOf", [])]
    return any(_allows_null(arm, schemas) for arm in arms)


def _request_schemas(document: dict[str, Any]) -> set[str]:
    """The component schemas a /v1 request body uses, directly or through other schemas."""
    schemas = document["components"]["schemas"]
    bodies = [
        operation["requestBody"]
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for operation in item.values()
        if "requestBody" in operation
    ]
    found: set[str] = set()
    pending = {ref.removeprefix(REF_PREFIX) for ref in _refs(bodies)}
    while pending:
        name = pending.pop()
        found.add(name)
        pending |= {ref.removeprefix(REF_PREFIX) for ref in _refs(schemas[name])} - found
    return found


async def test_request_fields_allow_null_only_where_the_gateway_does(
    gateway: httpx.AsyncClient,
):
    """/openapi.json shows no request field as nullable that the gateway refuses null for."""
    document = (await gateway.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    used = _request_schemas(document)
    assert {"EuRequest", "Dcc", "PersonName", "TestEntry", "DomesticAttributes"} <= used
    nullable = {
        f"{name}.{field}"
        for name in used
        for field, schema in schemas[name].get("properties", {}).items()
        if _allows_null(schema, schemas)
    }
    assert nullable == NULL_ACCEPTED


async def test_fields_documented_as_nullable_accept_null(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """The request fields /openapi.json shows as nullable do take a null."""
    response = await gateway.post("/v1/print", json={"domestic": None, "european": eu_test()})
    assert response.status_code == 200, response.text
    response = await gateway.post(
        "/v1/print", json={"domestic": domestic_attributes(), "european": None}
    )
    assert response.status_code == 200, response.text
    body = {"stoken": None, "issueCommitmentMessage": None, "european": [eu_test()]}
    response = await gateway.post("/v1/credentials", json=body)
    assert response.status_code == 200, response.text


def _published(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of the /openapi.json component `name`, its references resolved in place."""
    return Draft202012Validator({"$ref": f"{REF_PREFIX}{name}", **document})


async def test_the_published_schemas_need_a_part_and_a_session_as_the_gateway_does(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """/openapi.json says what /v1/print and /v1/credentials refuse without any part.

    Their schemas showed every part optional: a body with no part at all, or with domestic
    credentials and no session, passed a client's check against the published document and
    met the 422 only at the gateway.
    """
    document = (await gateway.get("/openapi.json")).json()
    domestic, european = domestic_attributes(), eu_test()
    session = {"stoken": "0" * 36, "issueCommitmentMessage": "e30="}
    bodies = {
        "PrintRequest": {
            "no part": ({}, False),
            "both null": ({"domestic": None, "european": None}, False),
            "domestic only": ({"domestic": domestic}, True),
            "european only, domestic null": ({"domestic": None, "european": european}, True),
        },
        "CredentialsRequest": {
            "no part": ({}, False),
            "both empty": ({"domestic": [], "european": []}, False),
            "domestic without a session": ({"domestic": [domestic]}, False),
            "domestic with a null stoken": (
                {**session, "stoken": None, "domestic": [domestic]},
                False,
            ),
            "domestic with a null commitment": (
                {**session, "issueCommitmentMessage": None, "domestic": [domestic]},
                False,
            ),
            "european only, no session": ({"european": [european]}, True),
            "european only, session null": (
                {"stoken": None, "issueCommitmentMessage": None, "european": [european]},
                True,
            ),
            "domestic with its session": ({**session, "domestic": [domestic]}, True),
        },
    }
    paths = {"PrintRequest": "/v1/print", "CredentialsRequest": "/v1/credentials"}
    schema_disagrees, gateway_disagrees = [], []
    for name, cases in bodies.items():
        validator = _published(document, name)
        for case, (body, valid) in cases.items():
            if validator.is_valid(body) != valid:
                schema_disagrees.append(f"{name}: {case}")
            status = (await gateway.post(paths[name], json=body)).status_code
            if (status != 422) != valid:
                gateway_disagrees.append(f"{name}: {case} ({status})")
    assert schema_disagrees == []
    assert gateway_disagrees == []


async def test_request_fields_are_camel_case_only(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """The Python names of request fields are not the API: a snake_case body is refused.

    They used to be accepted on every route but /v1/dcc (whose model has no Python names).
    """
    bodies = {
        "/v1/domestic/static": {"credential_attributes": domestic_attributes()},
        "/v1/domestic/issue": {
            "stoken": "0" * 36,
            "issue_commitment_message": "e30=",
            "credentials_attributes": [domestic_attributes()],
        },
        "/v1/credentials": {"stoken": "0" * 36, "issue_commitment_message": "e30=",
                            "domestic": [domestic_attributes()]},
    }  # fmt: skip
    for path, body in bodies.items():
        response = await gateway.post(path, json=body)
        problem = assert_problem(response, 422)
        refused = {tuple(e["loc"]) for e in problem["errors"] if e["msg"].startswith("Extra")}
        snake = {("body", name) for name in body if "_" in name}
        assert refused == snake, path
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("path", ["/v1/dcc", "/v1/domestic/static", "/v1/print"])
async def test_a_caller_gone_before_its_body_is_read_is_no_error(
    test_keys: SignerKeys, mocked: MockedSigners, json_log, path: str
):
    """A bodiless POST whose caller hangs up first is a 400, not an ERROR with a traceback.

    The body limits pass a request without a body on unread, so the route's own read is the
    first to learn the caller went away; any caller can do that at will.
    """
    app = create_app(make_settings(test_keys))
    sent: list[dict[str, Any]] = []

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with frozen_test_heap():
        async with app.router.lifespan_context(app) as state:
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                "query_string": b"", "root_path": "", "headers": [(b"host", b"gateway.test")],
                "client": ("127.0.0.1", 50000), "server": ("gateway.test", 80),
                "state": dict(state or {}),
            }  # fmt: skip
            await app(scope, gone, send)
    assert sent[0]["status"] == 400
    assert orjson.loads(sent[1]["body"])["detail"] == "the client went away"
    assert [r for r in json_log() if r["level"] == "error"] == []
    assert mocked.signing_calls() == 0
