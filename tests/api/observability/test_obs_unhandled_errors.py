"""An unhandled error: one traceback in the log, carrying the request id its 500 answer names."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx

from signing_gateway.app import create_app
from signing_gateway.errors import PROBLEM_BASE
from signing_gateway.observability.logging import configure_logging, shutdown_logging
from tests.api.bodies import eu_vaccination
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway, served_gateway

REQUEST_ID = "bug-500-1"


def _assert_answered_500(response: httpx.Response) -> None:
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == REQUEST_ID
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["requestId"] == REQUEST_ID


def _tracebacks(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "exception" in r]


async def test_the_logged_traceback_carries_the_answers_request_id(
    test_keys: SignerKeys, mocked: MockedSigners, json_log
):
    """The "unhandled error" record names the request id the 500 gives the caller."""
    mocked.get_credential.mock(side_effect=RuntimeError("bug"))
    async with running_gateway(make_settings(test_keys), raise_app_exceptions=False) as client:
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": REQUEST_ID}
        )
    _assert_answered_500(response)
    [record] = _tracebacks(json_log())
    assert (record["event"], record["logger"], record["level"]) == (
        "unhandled error",
        "signing_gateway.api.problems",
        "error",
    )
    assert record["request_id"] == REQUEST_ID
    assert "RuntimeError: bug" in record["exception"]


async def test_a_500_says_nothing_of_the_error(test_keys: SignerKeys, mocked: MockedSigners):
    """The 500 is the internal problem type, with no exception text, trace or signer URL."""
    mocked.get_credential.mock(side_effect=RuntimeError("bug at http://eu-signer.test/x"))
    async with running_gateway(make_settings(test_keys), raise_app_exceptions=False) as client:
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": REQUEST_ID}
        )
    _assert_answered_500(response)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": PROBLEM_BASE + "internal",
        "title": "Internal error",
        "status": 500,
        "detail": "The gateway failed unexpectedly; the request id identifies it in the logs.",
        "instance": "/v1/dcc",
        "requestId": REQUEST_ID,
    }


#: The loggers `configure_logging` sets up ("" is the root).
_CONFIGURED = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx")


@pytest.fixture
def served_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The process's log as `serve` configures it, written to a string; restored afterwards."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    loggers = [logging.getLogger(name) for name in _CONFIGURED]
    saved = [(lg, lg.handlers[:], lg.filters[:], lg.level, lg.propagate) for lg in loggers]
    configure_logging(level="INFO", fmt="json")
    try:
        yield stream
    finally:
        shutdown_logging()
        for lg, handlers, filters, level, propagate in saved:
            lg.handlers[:], lg.filters[:], lg.propagate = handlers, filters, propagate
            lg.setLevel(level)


async def test_uvicorn_does_not_log_the_answered_error_again(
    test_keys: SignerKeys, mocked: MockedSigners, signers: respx.MockRouter, served_log
):
    """Served by uvicorn: the gateway's record is the only traceback; uvicorn's copy is dropped.

    Starlette re-raises the error after the gateway has answered it, and uvicorn logged it
    again ("Exception in ASGI application") without the request id.
    """
    signers.route(host="127.0.0.1").pass_through()
    mocked.get_credential.mock(side_effect=RuntimeError("bug"))
    async with (
        served_gateway(create_app(make_settings(test_keys))) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        response = await client.post(
            "/v1/dcc", json=eu_vaccination(), headers={"X-Request-ID": REQUEST_ID}
        )
    _assert_answered_500(response)
    await asyncio.to_thread(shutdown_logging)  # writes out every line (it joins the writer)
    records = [orjson.loads(line) for line in served_log.getvalue().splitlines()]
    logged = [(r["logger"], r["event"], r.get("request_id")) for r in _tracebacks(records)]
    assert logged == [("signing_gateway.api.problems", "unhandled error", REQUEST_ID)]
