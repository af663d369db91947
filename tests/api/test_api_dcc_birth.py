"""An event before the date of birth is a 422 at the event's date, before any signer call."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.api.assertions import assert_problem, error_locs
from tests.api.bodies import eu_recovery, eu_test, eu_vaccination, with_dcc
from tests.api.signer_mocks import MockedSigners

TODAY = datetime.now(UTC).date().isoformat()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (with_dcc(eu_vaccination(), "dob", value=TODAY), ["v", 0, "dt"]),
        (with_dcc(eu_test(), "dob", value="2025"), ["t", 0, "sc"]),
        (with_dcc(eu_recovery(), "dob", value=TODAY), ["r", 0, "fr"]),
    ],
    ids=["vaccination", "test", "recovery"],
)
async def test_an_event_before_the_birth_is_refused(
    gateway: httpx.AsyncClient, mocked: MockedSigners, body, loc
):
    """A vaccination, test or first positive test dated before the dob is not signed."""
    response = await gateway.post("/v1/dcc", json=body)
    problem = assert_problem(response, 422, "validation-failed")
    assert error_locs(problem) == [["body", "dcc", *loc]]
    assert "lies before the date of birth" in problem["detail"]
    assert mocked.signing_calls() == 0
