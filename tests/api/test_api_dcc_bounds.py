"""Over-long DCC strings are the caller's fault: a 422 before any signer, never a breaker count."""

from __future__ import annotations

import random

import httpx
import pytest
import respx

from signing_gateway.issuance import eu as eu_issuance
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem, error_locs
from tests.api.bodies import eu_test, eu_vaccination, with_dcc
from tests.api.readiness import readyz_when_probed
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import EU_SIGNER_URL, SignerKeys, make_settings, running_gateway

FAILURES_TO_OPEN = 3
# Digits zlib cannot shrink: signed, the credential outgrows what the gateway takes (32 KiB).
_DRAWN = random.Random(2)  # noqa: S311 - the same digits every run, no secret
LONG_SC = "2021-07-01T10:00:00." + "".join(_DRAWN.choices("0123456789", k=60_000)) + "Z"


def _long_sc_body() -> dict[str, object]:
    return with_dcc(eu_test(), "t", 0, "sc", value=LONG_SC)


@pytest.mark.parametrize(
    ("path", "value", "status"),
    [
        (("t", 0, "sc"), "2021-07-01T10:00:00.123456789+02:00", 200),
        (("t", 0, "sc"), "2021-07-01T10:00:00.1234567890Z", 422),
        (("t", 0, "sc"), "2021-07-01T10:00:00." + "1" * 5000 + "Z", 422),
        (("ver",), "1.3.999", 200),
        (("ver",), "1.3.1000", 422),
        (("ver",), "1.3." + "1" * 60_000, 422),
    ],
    ids=["sc-9-digits", "sc-10-digits", "sc-5000-digits", "ver-3", "ver-4", "ver-60000"],
)
async def test_sc_and_ver_at_and_over_their_bounds(
    gateway: httpx.AsyncClient, mocked: MockedSigners, path, value, status
):
    """Up to the bound a DCC is signed; one character over, a 422 at the field, no signer call."""
    response = await gateway.post("/v1/dcc", json=with_dcc(eu_test(), *path, value=value))
    if status == 200:
        assert response.status_code == 200, response.text
        assert mocked.get_credential.call_count == 1
        return
    body = assert_problem(response, 422, "validation-failed")
    assert error_locs(body) == [["body", "dcc", *path]]
    assert len(response.content) < 1024  # the value is named by its length, not repeated
    assert mocked.signing_calls() == 0


async def test_many_over_long_sample_times_leave_the_breaker_closed(
    test_keys: SignerKeys, signers: respx.MockRouter, mocked: MockedSigners
):
    """Ten 60,000-digit sc fractions are ten 422s: the EU breaker stays closed, /readyz 200."""
    resilience = ResilienceSettings(breaker_consecutive_failures=FAILURES_TO_OPEN)
    eu = SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, resilience=resilience)
    async with running_gateway(make_settings(test_keys, eu_signer=eu)) as client:
        answers = [(await client.post("/v1/dcc", json=_long_sc_body())) for _ in range(10)]
        assert [answer.status_code for answer in answers] == [422] * 10
        assert error_locs(assert_problem(answers[0], 422)) == [["body", "dcc", "t", 0, "sc"]]
        assert mocked.signing_calls() == 0
        assert (await client.post("/v1/dcc", json=eu_vaccination())).status_code == 200
        assert (await readyz_when_probed(client)).status_code == 200


async def test_a_dcc_encoding_over_the_signing_bound_is_refused_before_the_signer(
    gateway: httpx.AsyncClient, mocked: MockedSigners, monkeypatch: pytest.MonkeyPatch
):
    """A DCC whose signer request would pass the bound is a 422 at its dcc, in every route."""
    monkeypatch.setattr(eu_issuance, "MAX_CREDENTIAL_REQUEST_BYTES", 200)
    response = await gateway.post("/v1/dcc", json=eu_vaccination())
    body = assert_problem(response, 422, "validation-failed")
    assert error_locs(body) == [["body", "dcc"]]
    assert "over the 200 whose credential is sure to fit" in body["errors"][0]["msg"]
    combined = await gateway.post("/v1/print", json={"european": eu_vaccination()})
    assert error_locs(assert_problem(combined, 422)) == [["body", "european", "dcc"]]
    assert mocked.signing_calls() == 0
