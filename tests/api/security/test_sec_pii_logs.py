"""No personal data in logs: names, birth dates and domestic attributes, on every path."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest

from tests.api.bodies import domestic_attributes, eu_vaccination
from tests.api.security.conftest import bearer
from tests.api.signer_mocks import MockedSigners, commitment, eu_signing
from tests.support.gateway import SignerKeys

FN, GN, DOB = "Zyxwvutsrq", "Qponmlkjih", "1931-02-03"
MARKERS = (FN, FN.upper(), GN, GN.upper(), DOB, "firstNameInitial", "birthDay", "birthMonth")


def _marked_eu() -> dict:
    body = eu_vaccination()
    body["dcc"]["nam"] = {"fn": FN, "fnt": FN.upper(), "gn": GN, "gnt": GN.upper()}
    body["dcc"]["dob"] = DOB
    return body


def _marked_domestic() -> dict[str, str]:
    return domestic_attributes(firstNameInitial="Z", lastNameInitial="Q", birthDay="3")


def _rendered(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr(vars(record))]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(parts)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every record at every level from every logger, httpx and the gateway included."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "signing_gateway", "signing_gateway.audit"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def _every_path(client: httpx.AsyncClient, mocked: MockedSigners, keys: SignerKeys, auth):
    statuses = []
    post = client.post
    # Success paths.
    statuses.append((await post("/v1/dcc", json=_marked_eu(), headers=auth)).status_code)
    static = {"credentialAttributes": _marked_domestic()}
    statuses.append((await post("/v1/domestic/static", json=static, headers=auth)).status_code)
    stoken = (await post("/v1/domestic/prepare-issue", headers=auth)).json()["stoken"]
    issue = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [_marked_domestic()],
    }
    statuses.append((await post("/v1/domestic/issue", json=issue, headers=auth)).status_code)
    both = {"domestic": _marked_domestic(), "european": _marked_eu()}
    statuses.append((await post("/v1/print", json=both, headers=auth)).status_code)
    creds = {"european": [_marked_eu()]}
    statuses.append((await post("/v1/credentials", json=creds, headers=auth)).status_code)
    # Validation failures: pydantic, domain, malformed JSON.
    bad = _marked_eu()
    bad["dcc"]["nam"]["fnt"] = FN  # lowercase transliteration is invalid
    statuses.append((await post("/v1/dcc", json=bad, headers=auth)).status_code)
    expired = _marked_eu()
    expired["expirationTime"] = "2001-01-01T00:00:00Z"
    statuses.append((await post("/v1/dcc", json=expired, headers=auth)).status_code)
    raw = f'{{"dcc": {{"nam": {{"fn": "{FN}"}}, "dob": "{DOB}"'.encode()
    headers = {**auth, "Content-Type": "application/json"}
    statuses.append((await post("/v1/dcc", content=raw, headers=headers)).status_code)
    # Signer failures: 5xx (502), throttled (503), signature that does not verify (502).
    mocked.get_credential.mock(return_value=httpx.Response(500, text=f"{FN} {DOB}"))
    statuses.append((await post("/v1/dcc", json=_marked_eu(), headers=auth)).status_code)
    mocked.get_credential.mock(return_value=httpx.Response(429, headers={"Retry-After": "1"}))
    statuses.append((await post("/v1/dcc", json=_marked_eu(), headers=auth)).status_code)
    mocked.get_credential.mock(side_effect=eu_signing(keys, tamper_signature=True))
    statuses.append((await post("/v1/dcc", json=_marked_eu(), headers=auth)).status_code)
    mocked.get_credential.mock(side_effect=eu_signing(keys, tamper_payload_after_signing=True))
    statuses.append((await post("/v1/print", json=both, headers=auth)).status_code)
    mocked.issue_static.mock(side_effect=httpx.ConnectError("refused"))
    statuses.append((await post("/v1/domestic/static", json=static, headers=auth)).status_code)
    # Unauthenticated.
    statuses.append((await post("/v1/dcc", json=_marked_eu())).status_code)
    return statuses


async def test_no_personal_data_in_any_log_record(
    secured, mocked: MockedSigners, test_keys: SignerKeys, full_token, logs
):
    """Markers sent through every endpoint's success and failure paths appear in no log record."""
    statuses = await _every_path(secured, mocked, test_keys, bearer(full_token))
    all_records = logs.records
    assert statuses == [200, 200, 200, 200, 200, 422, 422, 422, 502, 503, 502, 502, 503, 401]
    assert len(all_records) > 20
    assert {r.name for r in all_records} >= {"signing_gateway.audit", "httpx"}
    leaks = [
        (record.name, marker)
        for record in all_records
        for marker in MARKERS
        if marker in _rendered(record)
    ]
    assert leaks == []


async def test_the_log_check_would_see_a_leak(secured, full_token, logs):
    """The capture sees extra fields: a record carrying a marker in `extra` is found."""
    logging.getLogger("signing_gateway.test").debug("x", extra={"payload": {"fn": FN}})
    assert any(FN in _rendered(record) for record in logs.records)
