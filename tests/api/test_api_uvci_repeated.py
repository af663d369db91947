"""One certificate per UVCI: /v1/credentials refuses a `ci` an earlier EU request carries."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.assertions import assert_problem, error_locs
from tests.api.bodies import eu_recovery, eu_test, eu_vaccination, with_dcc, with_own_uvcis
from tests.api.signer_mocks import MockedSigners

VACCINATION_UVCI = "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1"


def _ci(index: int, group: str) -> list[str | int]:
    return ["body", "european", index, "dcc", group, 0, "ci"]


def _repeats(first: int) -> str:
    return (
        f"UVCI names the certificate of european[{first}] (check character aside): "
        "give each certificate its own"
    )


def _uvci(body: dict[str, Any], group: str, uvci: str) -> dict[str, Any]:
    return with_dcc(body, group, 0, "ci", value=uvci)


async def test_a_repeated_uvci_is_refused_at_the_second_ci(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Two EU requests with one `ci`: 422 at the second's `ci`, naming the first; no signer.

    Both were signed: two certificates under one identifier, which revocation lists key by.
    """
    body = {"european": [eu_test(), eu_test()]}
    problem = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert problem["errors"] == [{"loc": _ci(1, "t"), "msg": _repeats(0)}]
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    ("second", "group"),
    [
        (_uvci(eu_vaccination(), "v", VACCINATION_UVCI.removesuffix("#1")), "v"),
        (_uvci(eu_test(), "t", VACCINATION_UVCI), "t"),
        (_uvci(eu_recovery(), "r", VACCINATION_UVCI.removesuffix("#1")), "r"),
    ],
    ids=["without-its-check-character", "in-another-group", "other-group-no-check-character"],
)
async def test_a_uvci_is_compared_without_its_check_character_and_group(
    gateway: httpx.AsyncClient, mocked: MockedSigners, second: dict[str, Any], group: str
):
    """The identifier before `#` names the certificate, whatever the group or check character."""
    body = {"european": [eu_vaccination(), second]}
    problem = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert problem["errors"] == [{"loc": _ci(1, group), "msg": _repeats(0)}]
    assert mocked.signing_calls() == 0


async def test_each_repeat_names_the_first_request_of_its_uvci(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Of four requests, A B A B: the third names european[0], the fourth european[1]."""
    a, b = with_own_uvcis(eu_test(), eu_vaccination())
    body = {"european": [a, b, a, b]}
    problem = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert problem["errors"] == [
        {"loc": _ci(2, "t"), "msg": _repeats(0)},
        {"loc": _ci(3, "v"), "msg": _repeats(1)},
    ]
    assert mocked.signing_calls() == 0


async def test_a_repeated_uvci_is_named_beside_other_errors(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """A repeat is named with the body's other errors, not only once they are fixed."""
    first = with_dcc(eu_test(), "ver", value="2.0.0")
    body = {"european": [first, eu_test()]}
    problem = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert error_locs(problem) == [["body", "european", 0, "dcc", "ver"], _ci(1, "t")]
    assert mocked.signing_calls() == 0


async def test_requests_with_their_own_uvcis_are_all_signed(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Ten EU requests of one kind, each with its own UVCI, are all signed."""
    body = {"european": with_own_uvcis(*[eu_test()] * 10)}
    response = await gateway.post("/v1/credentials", json=body)
    assert response.status_code == 200, response.text
    assert mocked.get_credential.call_count == 10


async def test_the_rule_is_in_the_openapi_document(gateway: httpx.AsyncClient):
    """/openapi.json says, on /v1/credentials' `european`, that no two may share a UVCI."""
    document = (await gateway.get("/openapi.json")).json()
    european = document["components"]["schemas"]["CredentialsRequest"]["properties"]["european"]
    assert "No two may carry one UVCI (`ci`)" in european["description"]
    assert european["maxItems"] == 10
