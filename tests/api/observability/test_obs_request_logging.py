"""Request id on every log record (TaskGroup children included), forwarding, and the access log."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import respx

from tests.api.bodies import domestic_attributes, eu_vaccination
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway

REQUEST_ID = "obs-test-4242"
PERSONAL = ("Jansen", "JANSEN", "Anna", "1980-04-02", "DADFCC47C7334E45A906DB12FD859FB7")


def _gateway_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if str(r.get("logger", "")).startswith("signing_gateway")]


def _print_body() -> dict[str, Any]:
    return {"domestic": domestic_attributes(), "european": eu_vaccination()}


async def test_request_id_reaches_logs_of_taskgroup_children(
    gateway: httpx.AsyncClient, mocked: MockedSigners, json_log
):
    """Records logged inside the concurrent signer-call tasks carry the inbound request id."""
    request_task = asyncio.current_task()  # the ASGI transport runs the app in this task
    child_tasks: list[asyncio.Task[Any] | None] = []

    def failing_eu(request: httpx.Request) -> httpx.Response:
        child_tasks.append(asyncio.current_task())
        logging.getLogger("signing_gateway.test_signer").warning("eu signer answering 500")
        return httpx.Response(500, text="down")

    mocked.get_credential.mock(side_effect=failing_eu)
    response = await gateway.post(
        "/v1/print", json=_print_body(), headers={"X-Request-ID": REQUEST_ID}
    )
    assert response.status_code == 502

    assert child_tasks
    assert all(task is not None and task is not request_task for task in child_tasks)
    records = _gateway_records(json_log())
    events = {r["event"] for r in records}
    assert "eu signer answering 500" in events  # logged inside a TaskGroup child
    assert "signer call failed" in events  # the gateway's own record from that child
    assert {r.get("request_id") for r in records} == {REQUEST_ID}


async def test_request_id_is_forwarded_to_every_signer_call(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """Both concurrent signer calls of /v1/print carry the caller's X-Request-ID."""
    response = await gateway.post(
        "/v1/print", json=_print_body(), headers={"X-Request-ID": REQUEST_ID}
    )
    assert response.status_code == 200, response.text
    for route in (mocked.get_credential, mocked.issue_static):
        assert route.call_count == 1
        assert route.calls.last.request.headers["X-Request-ID"] == REQUEST_ID


async def test_access_log_line_has_route_status_and_id_but_no_personal_data(
    gateway: httpx.AsyncClient, mocked: MockedSigners, json_log
):
    """One access record per request: method, template, status, duration, id; no body, no query."""
    response = await gateway.post(
        "/v1/dcc?email=someone%40example.org",
        json=eu_vaccination(),
        headers={"X-Request-ID": REQUEST_ID},
    )
    assert response.status_code == 200, response.text

    records = _gateway_records(json_log())
    access = [r for r in records if r["logger"] == "signing_gateway.access"]
    assert len(access) == 1
    line = access[0]
    assert line["level"] == "info"
    assert line["method"] == "POST"
    assert line["route"] == "/v1/dcc"
    assert line["status"] == 200
    assert line["outcome"] == "2xx"
    assert line["request_id"] == REQUEST_ID
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    # The audit trail (docs/security.md) records UVCIs on purpose; the access log never does.
    rendered = orjson.dumps(access).decode()
    for needle in (*PERSONAL, "someone", "email=", "example.org", "?"):
        assert needle not in rendered
    # The sample line of docs/operations.md: the same fields, the timestamp in the same form.
    sample = _documented_access_line()
    # (`message`: a copy of `event` that pytest's log capture leaves on the record here; the
    # gateway's own writer writes none, as the sample shows.)
    assert sample.keys() == line.keys() - {"message"}, line
    timestamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
    assert timestamp.fullmatch(line["timestamp"])
    assert timestamp.fullmatch(sample["timestamp"])


def _documented_access_line() -> dict[str, Any]:
    """The access-log line docs/operations.md shows, parsed (its request id elided with …)."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text("utf-8")
    after = text.split("from logger\n`signing_gateway.access`:", 1)[1]
    block = re.search(r"```json\n(.*?)```", after, re.DOTALL)
    assert block is not None
    sample: dict[str, Any] = orjson.loads(block[1])
    return sample


async def test_access_log_names_unmatched_paths_by_template(gateway: httpx.AsyncClient, json_log):
    """A path no route matches is logged as "unmatched", never as the raw path."""
    response = await gateway.get("/v1/people/Jansen/1980-04-02")
    assert response.status_code == 404
    access = [r for r in json_log() if r.get("logger") == "signing_gateway.access"]
    assert [r["route"] for r in access] == ["unmatched"]
    assert "Jansen" not in orjson.dumps(access).decode()


async def test_access_log_can_be_switched_off(
    test_keys: SignerKeys, signers: respx.MockRouter, json_log
):
    """With observability.access_log off, requests are served and nothing is access-logged."""
    settings = make_settings(test_keys)
    settings = settings.model_copy(
        update={"observability": settings.observability.model_copy(update={"access_log": False})}
    )
    async with running_gateway(settings) as client:
        # Not /healthz: liveness probes are never access-logged.
        assert (await client.get("/no/such/route")).status_code == 404
    assert not [r for r in json_log() if r.get("logger") == "signing_gateway.access"]
