"""Fuzz every /v1 operation from the gateway's own OpenAPI document with schemathesis.

Cases are generated from the schema (valid and invalid data, the documented headers included),
sent with a valid token to an in-process gateway whose signers answer correctly, and every
answer is checked: no 5xx, the status code, content type and headers are documented, and the
body matches the documented schema. One 5xx is no server error: the 504 `deadline-exceeded`
of a request whose own `X-Request-Timeout` was too short for the call (the schema allows any
budget above 0, and 5e-324 s runs out before the signer is called).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from signing_gateway.app import create_app
from signing_gateway.errors import PROBLEM_BASE
from signing_gateway.issuance.deadline import REQUEST_TIMEOUT_HEADER
from signing_gateway.security.settings import ALL_SCOPES, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.bodies import domestic_attributes, eu_recovery, eu_test, eu_vaccination
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: For the 504 a case's own too short budget asked for: every other check still applies.
CHECKS_BUT_5XX = [check for check in CHECKS if check is not not_a_server_error]
OPERATIONS = [
    ("POST", "/v1/dcc"),
    ("POST", "/v1/domestic/static"),
    ("POST", "/v1/domestic/prepare-issue"),
    ("POST", "/v1/domestic/issue"),
    ("POST", "/v1/print"),
    ("POST", "/v1/credentials"),
    ("GET", "/v1/keys"),
]
EXAMPLES_PER_MODE = 25
#: A caller's budget below this may run out in-process before the mocked signer answers.
SHORT_BUDGET_SECONDS = 1.0


def _valid_bodies(path: str) -> list[Any]:
    """Hand-written valid bodies, so the success answers are checked against the schema too."""
    attrs = domestic_attributes
    return {
        "/v1/dcc": [eu_vaccination(), eu_test(), eu_recovery()],
        "/v1/domestic/static": [{"credentialAttributes": attrs()}],
        "/v1/print": [
            {"domestic": attrs(), "european": eu_test()},
            {"domestic": attrs()},
            {"european": eu_recovery()},
        ],
        "/v1/credentials": [{"european": [eu_vaccination(), eu_test()]}],
    }.get(path, [])


def _cut_by_own_budget(case: schemathesis.Case, response: httpx.Response) -> bool:
    """Whether `response` is the 504 a too short `X-Request-Timeout` of the case asked for."""
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    budget = headers.get(REQUEST_TIMEOUT_HEADER.lower())
    try:
        short = budget is not None and float(budget) < SHORT_BUDGET_SECONDS
    except ValueError:
        return False
    problem_type = response.json().get("type") if response.status_code == 504 else None
    return short and problem_type == PROBLEM_BASE + "deadline-exceeded"


def _send(client: httpx.AsyncClient, case: schemathesis.Case) -> Any:
    kwargs = case.as_transport_kwargs(base_url="http://gateway.test")
    extra: dict[str, Any] = {}
    if "json" in kwargs:
        extra["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        extra["content"] = kwargs["data"]
    return client.request(
        kwargs["method"],
        kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        **extra,
    )


def test_schema_declares_every_v1_operation(test_keys: SignerKeys):
    """The OpenAPI document lists exactly the /v1 operations the fuzzer covers."""
    spec = create_app(make_settings(test_keys)).openapi()
    found = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_fuzz_operation(
    method: str, path: str, test_keys: SignerKeys, mocked: MockedSigners, tmp_path: Path
):
    """Generated valid and invalid requests never get a 5xx or an undocumented answer."""
    tokens = LocalTokenIssuer(issuer="https://idp.test/", audience="signing-gateway")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(tokens.jwks()))
    auth = AuthSettings(mode="jwt", jwks_file=jwks, audience=tokens.audience, issuer=tokens.issuer)
    app_settings = make_settings(test_keys, auth=auth)
    schema = schemathesis.openapi.from_dict(create_app(app_settings).openapi())
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {tokens.mint(scopes=list(ALL_SCOPES))}"}
    statuses: dict[int, int] = {}
    server_errors: list[int] = []

    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        client = runner.run(stack.enter_async_context(running_gateway(app_settings)))
        try:
            modes = [schemathesis.GenerationMode.POSITIVE]
            if method == "POST" and path != "/v1/domestic/prepare-issue":
                # Only operations with a body have inputs to break.
                modes.append(schemathesis.GenerationMode.NEGATIVE)
            for mode in modes:

                @settings(
                    max_examples=EXAMPLES_PER_MODE,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode, headers=headers))
                def check(case: schemathesis.Case) -> None:
                    response = runner.run(_send(client, case))
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if _cut_by_own_budget(case, response):
                        case.validate_response(response, checks=CHECKS_BUT_5XX)
                        return
                    if response.status_code >= 500:
                        server_errors.append(response.status_code)
                    case.validate_response(response, checks=CHECKS)

                check()
            for body in _valid_bodies(path):
                case = operation.Case(body=body, headers=headers, media_type="application/json")
                response = runner.run(_send(client, case))
                assert response.status_code == 200, response.text
                case.validate_response(response, checks=CHECKS)
        finally:
            runner.run(stack.aclose())
    assert statuses, "no request was sent"
    assert server_errors == []
    print(method, path, sorted(statuses.items()))  # noqa: T201 - shown with -s
