"""A 422's `errors` lists the first 50 errors on every route with a body; its detail counts them.

From 50 on, the detail says "at least": the rules over several fields were not all checked.
"""

from __future__ import annotations

import httpx
import pytest

from signing_gateway.domain.errors import MAX_ERRORS_LISTED
from signing_gateway.security.limits import MAX_OBJECT_MEMBERS
from tests.api.assertions import assert_problem
from tests.api.signer_mocks import MockedSigners

ROUTES = [
    "/v1/dcc",
    "/v1/print",
    "/v1/credentials",
    "/v1/domestic/static",
    "/v1/domestic/issue",
]
UNKNOWN_KEYS = 60


def _wide_body() -> dict[str, object]:
    """Sixty unknown keys: sixty errors, and the fields left out (past 50, no body's rule)."""
    return {f"k{i}": 0 for i in range(UNKNOWN_KEYS)}


@pytest.mark.parametrize("route", ROUTES)
async def test_a_body_with_many_errors_lists_fifty(
    gateway: httpx.AsyncClient, mocked: MockedSigners, route: str
):
    """60 errors or more give 50 in `errors`, at least 60 in the detail, and no signer call."""
    response = await gateway.post(route, json=_wide_body())
    body = assert_problem(response, 422, "validation-failed")
    assert len(body["errors"]) == MAX_ERRORS_LISTED
    assert body["detail"].startswith("at least ")
    total = int(body["detail"].removeprefix("at least ").split(" ", 1)[0])
    assert total >= UNKNOWN_KEYS
    assert body["detail"].endswith(f"more; errors lists the first {MAX_ERRORS_LISTED}")
    assert mocked.signing_calls() == 0


async def test_a_body_whose_fields_make_fifty_errors_is_counted_as_at_least_fifty(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Pin "at least 50" once the fields make 50 errors: the body's own rule was not checked.

    A print body of 50 unknown keys and no part was answered "50 validation errors, ... and
    45 more", with no word that `errors` may be incomplete: it leaves out the missing part.
    """
    response = await gateway.post("/v1/print", json={f"k{i}": 0 for i in range(50)})
    body = assert_problem(response, 422, "validation-failed")
    assert body["detail"] == (
        "at least 50 validation errors, at body.k0, body.k1, body.k2, body.k3, body.k4 and "
        f"45 more; errors lists the first {MAX_ERRORS_LISTED}"
    )
    assert [e["loc"] for e in body["errors"]] == [["body", f"k{i}"] for i in range(50)]
    assert mocked.signing_calls() == 0


async def test_a_body_of_fifteen_thousand_unknown_keys_is_refused_before_validation(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """A 169 KB body of 15,000 unknown keys gets a short 422 from the body check, unvalidated."""
    wide = "{" + ",".join(f'"k{i}": 0' for i in range(15_000)) + "}"
    response = await gateway.post(
        "/v1/dcc", content=wide, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 422, "validation-failed")
    assert body["detail"] == f"an object has more than {MAX_OBJECT_MEMBERS} members"
    assert len(response.content) < 1024
    assert mocked.signing_calls() == 0
