"""The audit trail: one record per issuance attempt, written before release, fail-closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from signing_gateway.app import create_app
from signing_gateway.security.settings import AuditSettings
from signing_gateway.settings import ShutdownSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.security.conftest import bearer
from tests.api.signer_mocks import MockedSigners, SlowCall, commitment
from tests.support.gateway import make_settings, running_gateway
from tests.support.polling import until

DEV_FULL = Path("/dev/full")
#: The DCC group of each key usage, where its UVCI (`ci`) is.
GROUP_OF = {"vaccination": "v", "test": "t", "recovery": "r"}


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _asked_for(body: dict) -> list[dict]:
    """The items of a /v1/dcc vaccination record cut before it was signed: what was asked."""
    return [
        {
            "part": "european",
            "kind": "eu",
            "keyUsage": "vaccination",
            "uvci": body["dcc"]["v"][0]["ci"],
        }
    ]


async def test_success_record_names_caller_kid_uvci_and_proof(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """A signed DCC leaves one record: caller, endpoint, key usage, kid, UVCI and proof id."""
    body = eu_vaccination()
    response = await secured.post(
        "/v1/dcc", json=body, headers={**bearer(full_token), "X-Request-ID": "req-audit-1"}
    )
    assert response.status_code == 200, response.text
    issued = response.json()
    [record] = _records(audit_file)
    assert record["outcome"] == "issued"
    assert record["status"] == 200
    assert record["problemType"] is None
    assert record["requestId"] == "req-audit-1"
    assert "cause" not in record
    assert record["caller"] == "backend-1"
    assert record["endpoint"] == "/v1/dcc"
    assert record["time"].endswith("Z")
    assert record["items"] == [
        {
            "part": "european",
            "kind": "eu",
            "keyUsage": "vaccination",
            "uvci": body["dcc"]["v"][0]["ci"],
            "kid": issued["kid"],
            "proofIdentifier": issued["proofIdentifier"],
        }
    ]


async def test_requests_sharing_a_request_id_keep_a_record_each(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Two issuances under one X-Request-ID: each is its own attempt (`auditId`) on record.

    The request id is the caller's: a retry, or another client, can send it again. Read by
    the documented rule (the last record of an attempt says what its caller got), both
    credentials stay on record; keyed by the request id, one of them disappeared.
    """
    headers = {**bearer(full_token), "X-Request-ID": "retry-42"}
    answers = [
        await secured.post("/v1/dcc", json=eu_vaccination(), headers=headers) for _ in range(2)
    ]
    assert [answer.status_code for answer in answers] == [200, 200]
    records = _records(audit_file)
    assert [record["requestId"] for record in records] == ["retry-42", "retry-42"]
    last_of_attempt = {record["auditId"]: record for record in records}
    assert len(last_of_attempt) == 2
    on_record = [
        record["items"][0]["proofIdentifier"]
        for record in last_of_attempt.values()
        if record["outcome"] == "issued"
    ]
    assert sorted(on_record) == sorted(answer.json()["proofIdentifier"] for answer in answers)


async def test_failures_are_recorded_with_their_problem_type(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Signer failure and validation failure each leave a record with status and problem type.

    Neither has a `cause`: only a refused stoken's record does (test_sec_stoken_owner_api).
    """
    mocked.get_credential.mock(return_value=httpx.Response(500, text="boom"))
    failed = await secured.post("/v1/dcc", json=eu_test(), headers=bearer(full_token))
    assert failed.status_code == 502
    bad = eu_vaccination()
    bad["expirationTime"] = "2001-01-01T00:00:00Z"
    refused = await secured.post("/v1/dcc", json=bad, headers=bearer(full_token))
    assert refused.status_code == 422
    first, second = _records(audit_file)
    assert (first["outcome"], first["status"], first["problemType"]) == (
        "failed",
        502,
        failed.json()["type"],
    )
    assert first["items"][0]["keyUsage"] == "test"
    assert (second["outcome"], second["status"]) == ("refused", 422)
    assert [r for r in (first, second) if "cause" in r] == []


async def test_every_issuing_endpoint_is_audited(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Static, session, print and credentials issuance each leave exactly one record."""
    auth = bearer(full_token)
    await secured.post(
        "/v1/domestic/static", json={"credentialAttributes": domestic_attributes()}, headers=auth
    )
    stoken = (await secured.post("/v1/domestic/prepare-issue", headers=auth)).json()["stoken"]
    issue = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes(), domestic_attributes()],
    }
    assert (await secured.post("/v1/domestic/issue", json=issue, headers=auth)).status_code == 200
    both = {"domestic": domestic_attributes(), "european": eu_test()}
    assert (await secured.post("/v1/print", json=both, headers=auth)).status_code == 200
    creds = {"european": [eu_test(), eu_vaccination()]}
    assert (await secured.post("/v1/credentials", json=creds, headers=auth)).status_code == 200
    records = _records(audit_file)
    assert [r["endpoint"] for r in records] == [
        "/v1/domestic/static",
        "/v1/domestic/prepare-issue",
        "/v1/domestic/issue",
        "/v1/print",
        "/v1/credentials",
    ]
    assert all(r["outcome"] == "issued" for r in records)
    assert records[2]["items"] == [{"part": "domestic", "kind": "domestic-session", "count": 2}]
    assert [i["part"] for i in records[4]["items"]] == ["european[0]", "european[1]"]
    assert all("proofIdentifier" in i for i in records[4]["items"])


async def test_a_body_the_schema_refuses_leaves_no_record(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Pin that a body refused by its schema is no issuance attempt: no record, nothing signed.

    Such a 422 is answered before the route runs (counted in metrics and logged instead);
    the one record in the file is the issuance sent after them.
    """
    auth = bearer(full_token)
    routes = [
        "/v1/dcc",
        "/v1/domestic/static",
        "/v1/domestic/issue",
        "/v1/print",
        "/v1/credentials",
    ]
    for route in routes:
        refused = await secured.post(route, json={"unknown": 1}, headers=auth)
        assert_problem(refused, 422, "validation-failed")
    assert (await secured.post("/v1/dcc", json=eu_test(), headers=auth)).status_code == 200
    assert [r["endpoint"] for r in _records(audit_file)] == ["/v1/dcc"]
    assert mocked.signing_calls() == 1


def _eu_item(part: str, request: dict, released: dict) -> dict:
    """The audit item of an EU part: what was asked, and the kid and proof released."""
    return {
        "part": part,
        "kind": "eu",
        "keyUsage": released["keyUsage"],
        "uvci": request["dcc"][GROUP_OF[released["keyUsage"]]][0]["ci"],
        "kid": released["kid"],
        "proofIdentifier": released["proofIdentifier"],
    }


async def test_each_record_names_the_parts_and_proofs_released(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Every issuing endpoint's record lists each part, its count and the proof it released."""
    auth = bearer(full_token)
    attributes = {"credentialAttributes": domestic_attributes()}
    static = (await secured.post("/v1/domestic/static", json=attributes, headers=auth)).json()
    signed = mocked.issue_static.calls.last.response.json()["proofIdentifier"]
    assert static["proofIdentifier"] == signed
    stoken = (await secured.post("/v1/domestic/prepare-issue", headers=auth)).json()["stoken"]
    both = {"domestic": domestic_attributes(), "european": eu_test()}
    printed = (await secured.post("/v1/print", json=both, headers=auth)).json()
    creds = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()] * 3,
        "european": [eu_test(), eu_vaccination()],
    }
    app = (await secured.post("/v1/credentials", json=creds, headers=auth)).json()
    records = _records(audit_file)
    assert [r["outcome"] for r in records] == ["issued"] * 4
    static_item = {"part": "domestic", "kind": "domestic-static", "count": 1}
    assert [r["items"] for r in records] == [
        [{**static_item, "proofIdentifier": signed}],
        [{"part": "domestic", "kind": "domestic-session", "count": 0}],
        [
            {**static_item, "proofIdentifier": printed["domestic"]["proofIdentifier"]},
            _eu_item("european", both["european"], printed["european"]),
        ],
        [
            {"part": "domestic", "kind": "domestic-session", "count": 3},
            *(
                _eu_item(f"european[{i}]", request, released)
                for i, (request, released) in enumerate(
                    zip(creds["european"], app["euGreencards"], strict=True)
                )
            ),
        ],
    ]


@pytest.mark.parametrize("path", ["/v1/print", "/v1/credentials"])
async def test_a_failed_eu_part_is_recorded_with_what_it_asked_for(
    secured, mocked: MockedSigners, full_token, audit_file, path
):
    """An EU part the signer failed: its record still names its key usage and UVCI."""
    mocked.get_credential.mock(return_value=httpx.Response(500, text="boom"))
    request = eu_test()
    body = {"european": request} if path == "/v1/print" else {"european": [request]}
    failed = await secured.post(path, json=body, headers=bearer(full_token))
    assert_problem(failed, 502, "signer-bad-response")
    [record] = _records(audit_file)
    assert (record["outcome"], record["status"]) == ("failed", 502)
    part = "european" if path == "/v1/print" else "european[0]"
    assert record["items"] == [
        {"part": part, "kind": "eu", "keyUsage": "test", "uvci": request["dcc"]["t"][0]["ci"]}
    ]


@pytest.mark.parametrize("path", ["/v1/print", "/v1/credentials"])
async def test_a_failed_domestic_part_is_recorded_with_what_it_asked_for(
    secured, mocked: MockedSigners, full_token, audit_file, path
):
    """Pin that a combined request's failed domestic part is on record: its kind and count.

    The EU part beside it is named with what it asked for, and no part with a proof: nothing
    was released.
    """
    auth = bearer(full_token)
    request = eu_test()
    failing = mocked.issue_static if path == "/v1/print" else mocked.issue
    failing.mock(return_value=httpx.Response(500, text="boom"), side_effect=None)
    if path == "/v1/print":
        body: dict = {"domestic": domestic_attributes(), "european": request}
        domestic = {"part": "domestic", "kind": "domestic-static", "count": 1}
        part = "european"
    else:
        stoken = (await secured.post("/v1/domestic/prepare-issue", headers=auth)).json()
        body = {
            "stoken": stoken["stoken"],
            "issueCommitmentMessage": commitment(),
            "domestic": [domestic_attributes()] * 2,
            "european": [request],
        }
        domestic = {"part": "domestic", "kind": "domestic-session", "count": 2}
        part = "european[0]"
    failed = await secured.post(path, json=body, headers=auth)
    assert assert_problem(failed, 502, "signer-bad-response")["part"] == "domestic"
    record = _records(audit_file)[-1]
    assert (record["endpoint"], record["outcome"], record["status"]) == (path, "failed", 502)
    assert record["items"] == [
        domestic,
        {"part": part, "kind": "eu", "keyUsage": "test", "uvci": request["dcc"]["t"][0]["ci"]},
    ]


async def test_a_request_deadline_that_cuts_the_signing_leaves_one_record_of_its_504(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Pin the deadline's outcome on record: `failed`, with the 504 `deadline-exceeded` answered.

    The signer was still at work (it may sign yet), so the attempt is on record once, with
    what it had got to.
    """
    slow = SlowCall(5.0)
    mocked.get_credential.mock(side_effect=slow)
    body = eu_vaccination()
    headers = {**bearer(full_token), "X-Request-ID": "cut-by-deadline", "X-Request-Timeout": "0.2"}
    response = await secured.post("/v1/dcc", json=body, headers=headers)
    problem = assert_problem(response, 504, "deadline-exceeded")
    [record] = _records(audit_file)
    assert (record["outcome"], record["status"], record["problemType"]) == (
        "failed",
        504,
        problem["type"],
    )
    assert record["requestId"] == "cut-by-deadline"
    assert record["items"] == _asked_for(body)


async def test_an_audit_record_holds_no_token_and_no_credential(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """Pin that neither the caller's token nor what was issued (QR, HC1) reaches the file."""
    auth = bearer(full_token)
    dcc = (await secured.post("/v1/dcc", json=eu_vaccination(), headers=auth)).json()
    static = await secured.post(
        "/v1/domestic/static", json={"credentialAttributes": domestic_attributes()}, headers=auth
    )
    text = audit_file.read_text()
    assert len(text.splitlines()) == 2
    assert dcc["credential"].startswith("HC1:")
    assert "HC1:" not in text
    assert dcc["credential"][4:40] not in text
    assert static.json()["qr"][:40] not in text
    for part in full_token.split("."):
        assert part not in text


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full to make writes fail")
async def test_unwritable_audit_withholds_the_credential(test_keys, mocked: MockedSigners):
    """When the audit record cannot be written the caller gets 503 and no credential."""
    settings = make_settings(test_keys, audit=AuditSettings(file=DEV_FULL))
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
        metrics = (await client.get("/metrics")).text
    body = assert_problem(response, 503, "audit-unavailable")
    assert "credential" not in body
    assert "HC1:" not in response.text
    assert mocked.get_credential.call_count == 1
    assert "gateway_audit_write_failures_total 1.0" in metrics


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full to make writes fail")
async def test_fail_open_audit_still_releases(test_keys, mocked: MockedSigners):
    """With fail_closed=false a failed audit write is counted and the credential released."""
    settings = make_settings(test_keys, audit=AuditSettings(file=DEV_FULL, fail_closed=False))
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 200, response.text
    assert "gateway_audit_write_failures_total 1.0" in metrics


async def test_audit_records_hold_no_personal_data(
    secured, mocked: MockedSigners, full_token, audit_file
):
    """No name, birth date or domestic attribute reaches the audit file."""
    body = eu_vaccination()
    body["dcc"]["nam"] = {"fn": "Zyxwvutsrq", "fnt": "ZYXWVUTSRQ", "gn": "Pomnl", "gnt": "POMNL"}
    body["dcc"]["dob"] = "1931-02-03"
    await secured.post("/v1/dcc", json=body, headers=bearer(full_token))
    await secured.post(
        "/v1/domestic/static",
        json={"credentialAttributes": domestic_attributes(birthDay="3", birthMonth="2")},
        headers=bearer(full_token),
    )
    text = audit_file.read_text()
    assert len(text.splitlines()) == 2
    # The birth date whole, in the forms it could be written in: "1931" alone can turn up in
    # a record's random hex ids (about once in 800 runs).
    for marker in ("Zyxwvutsrq", "ZYXWVUTSRQ", "Pomnl", "1931-02", "birthDay", "firstNameInitial"):
        assert marker not in text
    assert '"1931"' not in text
    assert ":1931" not in text.replace(" ", "")


async def test_an_issuance_cancelled_by_the_server_is_answered_503_as_recorded(
    test_keys, mocked: MockedSigners, audit_file
):
    """The request task is cancelled outside the drain: answered 503, and its record says so.

    uvicorn cancels the requests still running at its `timeout_graceful_shutdown` (one the
    drain's cancellation did not end, or any under a server without the drain). That
    cancellation used to pass the drain middleware, and uvicorn answered a plain-text 500
    while the record said 503 `shutting-down`.
    """
    slow = SlowCall(5.0)
    mocked.get_credential.mock(side_effect=slow)
    settings = make_settings(test_keys, audit=AuditSettings(file=audit_file))
    app = create_app(settings)
    async with running_gateway(settings, app=app) as client:
        # httpx's ASGI transport runs the app in the caller's task, as uvicorn runs it in the
        # request's task: cancelling it is what uvicorn's backstop does.
        pending = asyncio.create_task(
            client.post("/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": "cut-1"})
        )
        await until(lambda: slow.started == 1)
        pending.cancel()
        response = await pending
        assert app.state.drain.in_flight == 0
    assert_problem(response, 503, "shutting-down")
    assert response.headers["connection"] == "close"
    assert response.headers["x-request-id"] == "cut-1"
    assert slow.cancelled == 1
    [record] = _records(audit_file)
    assert (record["outcome"], record["status"]) == ("cancelled", 503)
    assert record["problemType"] == response.json()["type"]
    assert record["requestId"] == "cut-1"


async def test_an_issuance_cancelled_by_the_drain_is_recorded(
    test_keys, mocked: MockedSigners, audit_file
):
    """The drain cancels a signing in progress: one `cancelled` record, with the drain's 503.

    The signer may have signed it, so it is an issuance attempt like any other; the record
    used to be skipped for a cancelled attempt.
    """
    slow = SlowCall(5.0)
    mocked.get_credential.mock(side_effect=slow)
    settings = make_settings(
        test_keys,
        audit=AuditSettings(file=audit_file),
        shutdown=ShutdownSettings(drain_timeout_seconds=0.1, cancel_grace_seconds=1),
    )
    app = create_app(settings)
    body = eu_vaccination()
    async with running_gateway(settings, app=app) as client:
        pending = asyncio.create_task(
            client.post("/v1/dcc", json=body, headers={"X-Request-ID": "drained-1"})
        )
        await until(lambda: slow.started == 1)
        assert await app.state.drain.drain() == 1
        response = await pending
    # The lifespan has ended: the trail is closed, every queued record written.
    assert_problem(response, 503, "shutting-down")
    assert slow.cancelled == 1
    [record] = _records(audit_file)
    assert (record["outcome"], record["status"]) == ("cancelled", 503)
    assert record["problemType"] == response.json()["type"]
    assert record["requestId"] == "drained-1"
    assert record["items"] == _asked_for(body)
