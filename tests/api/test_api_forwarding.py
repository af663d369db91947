"""What reaches the signers: request ids, exact bodies and headers; and all-or-nothing calls."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as time_of_day
from typing import Any

import httpx
import orjson
import pytest
import respx

from signing_gateway.domain.dcc import EuRequest
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import (
    domestic_attributes,
    eu_recovery,
    eu_test,
    eu_vaccination,
    with_dcc,
)
from tests.api.signer_mocks import (
    MockedSigners,
    SlowCall,
    commitment,
    decode_b64_json,
    eu_signing,
)
from tests.support.gateway import EU_SIGNER_URL, SignerKeys, make_settings, running_gateway


async def test_caller_request_id_reaches_signer(gateway, mocked: MockedSigners):
    """The caller's X-Request-ID is forwarded to the signer and echoed on the answer."""
    response = await gateway.post(
        "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": "caller-req.42"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "caller-req.42"
    assert mocked.get_credential.calls.last.request.headers["x-request-id"] == "caller-req.42"


async def test_generated_request_id_reaches_every_signer(gateway, mocked: MockedSigners):
    """Without X-Request-ID the gateway mints one, sends it to every signer and answers with it."""
    body = {"domestic": domestic_attributes(), "european": eu_test()}
    response = await gateway.post("/v1/print", json=body)
    assert response.status_code == 200
    generated = response.headers["x-request-id"]
    assert len(generated) >= 16
    for route in (mocked.get_credential, mocked.issue_static):
        assert route.calls.last.request.headers["x-request-id"] == generated


async def test_unsafe_request_id_is_replaced(gateway, mocked: MockedSigners):
    """A request id that is not safe to log is replaced by a generated one, also downstream."""
    response = await gateway.post(
        "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": "bad id\twith spaces"}
    )
    generated = response.headers["x-request-id"]
    assert generated != "bad id\twith spaces"
    assert mocked.get_credential.calls.last.request.headers["x-request-id"] == generated


async def test_a_request_id_given_twice_is_replaced(gateway, mocked: MockedSigners):
    """Two X-Request-ID fields are no one id: a minted one answers and reaches the signer.

    The first was kept, while a proxy in front may log the second as the request's id.
    """
    headers = httpx.Headers([("X-Request-ID", "first-1"), ("X-Request-ID", "second-2")])
    response = await gateway.post("/v1/dcc", json=eu_vaccination(), headers=headers)
    assert response.status_code == 200
    minted = response.headers["x-request-id"]
    assert minted not in {"first-1", "second-2"}
    assert mocked.get_credential.calls.last.request.headers["x-request-id"] == minted


async def test_request_id_on_problem(gateway, mocked: MockedSigners):
    """A problem answer carries the caller's request id in header and body."""
    response = await gateway.post("/v1/dcc", json={}, headers={"X-Request-ID": "abc-1"})
    assert assert_problem(response, 422)["requestId"] == "abc-1"


async def test_eu_signer_body_is_exact(gateway, mocked: MockedSigners):
    """The EU signer gets keyUsage, expirationTime in UTC RFC 3339 and the validated DCC, only."""
    midnight = (datetime.now(UTC) + timedelta(days=30)).replace(hour=0, minute=0, second=0)
    local = midnight.replace(microsecond=0, tzinfo=timezone(timedelta(hours=2)))
    body = eu_vaccination(expirationTime=local.isoformat())
    assert (await gateway.post("/v1/dcc", json=body)).status_code == 200
    request = mocked.get_credential.calls.last.request
    assert request.headers["content-type"] == "application/json"
    sent = orjson.loads(request.content)
    assert sent == {
        "keyUsage": "vaccination",
        "expirationTime": local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dcc": EuRequest.model_validate(body).dcc.signing_payload(),
    }
    assert sent["dcc"] == body["dcc"]


def _recovery_until(ahead: timedelta) -> dict[str, Any]:
    """A recovery request valid until the day `ahead` of today (UTC)."""
    until = (datetime.now(UTC) + ahead).date().isoformat()
    return with_dcc(eu_recovery(), "r", 0, "du", value=until)


@pytest.mark.parametrize(
    ("body", "usage", "validity"),
    [
        (eu_vaccination(), "vaccination", timedelta(days=365)),
        (eu_test(), "test", timedelta(hours=72)),
        (_recovery_until(timedelta(days=200)), "recovery", timedelta(days=180)),
    ],
    ids=["v", "t", "r"],
)
async def test_eu_signer_gets_default_expiry_and_usage(
    gateway, mocked: MockedSigners, body, usage, validity
):
    """Without keyUsage and expirationTime the signer gets the group's usage and default expiry."""
    del body["keyUsage"]
    before = datetime.now(UTC).replace(microsecond=0)
    response = await gateway.post("/v1/dcc", json=body)
    assert response.status_code == 200, response.text
    sent = orjson.loads(mocked.get_credential.calls.last.request.content)
    assert sent["keyUsage"] == usage
    expiry = datetime.strptime(sent["expirationTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + validity <= expiry <= datetime.now(UTC) + validity
    assert response.json()["expirationTime"] == sent["expirationTime"]


async def test_recovery_default_expiry_ends_with_its_du(gateway, mocked: MockedSigners):
    """A recovery valid until 10 days ahead is not signed for 180 days.

    Its default expiry is the end of that day where it ends last (UTC-12); the answer says so too.
    """
    body = _recovery_until(timedelta(days=10))
    del body["keyUsage"]
    response = await gateway.post("/v1/dcc", json=body)
    assert response.status_code == 200, response.text
    sent = orjson.loads(mocked.get_credential.calls.last.request.content)
    until = date.fromisoformat(body["dcc"]["r"][0]["du"])
    end = datetime.combine(until + timedelta(days=1), time_of_day(12), tzinfo=UTC)
    assert sent["expirationTime"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert response.json()["expirationTime"] == sent["expirationTime"]


async def test_domestic_content_type_is_exact(gateway, mocked: MockedSigners):
    """Every domestic signer call is sent with Content-Type exactly application/json."""
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    assert (await gateway.post("/v1/domestic/issue", json=body)).status_code == 200
    static = {"credentialAttributes": domestic_attributes()}
    assert (await gateway.post("/v1/domestic/static", json=static)).status_code == 200
    for route in (mocked.prepare_issue, mocked.issue, mocked.issue_static):
        assert route.calls.last.request.headers["content-type"] == "application/json"


async def test_domestic_issue_passes_session_through(gateway, mocked: MockedSigners):
    """/issue sends the signer its own prepare message, the app's commitment and the attributes."""
    prepared = (await gateway.post("/v1/domestic/prepare-issue")).json()
    attrs = [domestic_attributes(category="2")]
    body = {
        "stoken": prepared["stoken"],
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": attrs,
    }
    assert (await gateway.post("/v1/domestic/issue", json=body)).status_code == 200
    sent = orjson.loads(mocked.issue.calls.last.request.content)
    prepare_answer = mocked.prepare_issue.calls.last.response.json()
    assert sent["prepareIssueMessage"] == prepare_answer
    assert sent["issueCommitmentMessage"] == decode_b64_json(commitment())
    assert sent["credentialsAttributes"] == attrs


async def test_credentials_failure_names_part_and_cancels_others(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """One failing EU part gives a 502 naming it; the other in-flight signer calls are cancelled."""
    slow_eu = SlowCall(5.0, then=eu_signing(test_keys))
    slow_domestic = SlowCall(5.0)
    domestic_sent = asyncio.Event()

    async def eu_answer(request: httpx.Request) -> httpx.Response:
        if orjson.loads(request.content)["keyUsage"] == "test":
            await domestic_sent.wait()  # fails while the other calls are at their signers
            return httpx.Response(500, text="signer broke")
        return await slow_eu(request)

    async def domestic_answer(request: httpx.Request) -> httpx.Response:
        domestic_sent.set()
        return await slow_domestic(request)

    mocked.get_credential.mock(side_effect=eu_answer)
    mocked.issue.mock(side_effect=domestic_answer)
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
        "european": [eu_vaccination(), eu_test(), eu_recovery()],
    }
    started = time.monotonic()
    response = await gateway.post("/v1/credentials", json=body)
    elapsed = time.monotonic() - started
    problem = assert_problem(response, 502, "signer-bad-response")
    assert problem["part"] == "european[1]"
    assert "european[1]" in problem["detail"]
    assert elapsed < 2.0
    assert slow_eu.started == 2
    assert (slow_eu.finished, slow_domestic.finished) == (0, 0)
    assert (slow_eu.cancelled, slow_domestic.cancelled) == (2, 1)


async def test_credentials_with_more_eu_parts_than_signer_slots_are_issued(
    test_keys: SignerKeys, mocked: MockedSigners
):
    """Pin that a request's EU parts beyond the signer's slots wait for their siblings' turn.

    Before, they waited in the bulkhead's queue, for `max_wait_seconds` at most: less than a
    signing, so such a request was refused 503 "at capacity" by its own parts, on an idle
    signer, however often it was retried.
    """
    sign = eu_signing(test_keys)
    in_flight = [0, 0]  # now, at most

    async def answer(request: httpx.Request) -> httpx.Response:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.3)
        in_flight[0] -= 1
        return sign(request)

    mocked.get_credential.mock(side_effect=answer)
    slots = ResilienceSettings(max_in_flight=2, max_wait_seconds=0.1)
    eu = SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, resilience=slots)
    body = {"european": [eu_vaccination(), eu_test(), eu_recovery()]}
    async with running_gateway(make_settings(test_keys, eu_signer=eu)) as gateway:
        response = await gateway.post("/v1/credentials", json=body)
    assert response.status_code == 200, response.text
    usages = [c["keyUsage"] for c in response.json()["euGreencards"]]
    assert usages == ["vaccination", "test", "recovery"]
    assert (mocked.get_credential.call_count, in_flight[1]) == (3, 2)


async def test_print_failure_names_domestic_part(gateway, mocked: MockedSigners):
    """In /v1/print a failing domestic signer fails the whole answer and cancels the EU call."""
    slow_eu = SlowCall(5.0)
    mocked.get_credential.mock(side_effect=slow_eu)
    mocked.issue_static.mock(side_effect=httpx.ConnectError("refused"))
    body = {"domestic": domestic_attributes(), "european": eu_vaccination()}
    response = await gateway.post("/v1/print", json=body)
    problem = assert_problem(response, 503, "signer-unavailable")
    assert problem["part"] == "domestic"
    assert slow_eu.finished == 0
    assert "HC1:" not in response.text


async def test_request_deadline_cancels_signer_calls(test_keys: SignerKeys, mocked: MockedSigners):
    """A signer slower than the request deadline gives 504 and its call is cancelled."""
    slow = SlowCall(5.0)
    mocked.get_credential.mock(side_effect=slow)
    async with running_gateway(make_settings(test_keys, request_deadline_seconds=0.3)) as gateway:
        started = time.monotonic()
        response = await gateway.post("/v1/dcc", json=eu_vaccination())
        elapsed = time.monotonic() - started
    assert_problem(response, 504, "deadline-exceeded")
    assert elapsed < 2.0
    assert (slow.finished, slow.cancelled) == (0, 1)


def _lost_once(route: respx.Route) -> None:
    """The route's first call loses its connection after sending; later ones answer as before."""
    answer = route.side_effect
    calls = []

    def lost_then_answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("the signer hung up")
        return answer(request)

    route.mock(side_effect=lost_then_answer)


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/v1/dcc", "get_credential"),
        ("/v1/domestic/static", "issue_static"),
        ("/v1/domestic/prepare-issue", "prepare_issue"),
    ],
)
async def test_a_lost_connection_is_sent_again_where_a_replay_is_harmless(
    gateway, mocked: MockedSigners, path, endpoint
):
    """Signing a DCC or a static QR, or opening a session: a second attempt after a lost one."""
    route = getattr(mocked, endpoint)
    _lost_once(route)
    body = {
        "/v1/dcc": eu_vaccination(),
        "/v1/domestic/static": {"credentialAttributes": domestic_attributes()},
        "/v1/domestic/prepare-issue": {},
    }[path]
    response = await gateway.post(path, json=body)
    assert response.status_code == 200, response.text
    assert route.call_count == 2


async def test_a_lost_issue_call_is_not_sent_again(gateway, mocked: MockedSigners):
    """The session's /issue may have spent its nonce: one attempt, a 502, the session used up."""
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    _lost_once(mocked.issue)
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }
    response = await gateway.post("/v1/domestic/issue", json=body)
    problem = assert_problem(response, 502, "signer-bad-response")
    assert "start again with POST /v1/domestic/prepare-issue" in problem["detail"]
    assert mocked.issue.call_count == 1
    again = await gateway.post("/v1/domestic/issue", json=body)
    assert_problem(again, 401, "stoken-invalid")
