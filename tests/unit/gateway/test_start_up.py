"""A start-up failing for a reason its message gives is one log line; a bug keeps its traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.types import Message

from signing_gateway.start_up import StartUpError, report_start_up_errors


async def _start(failure: BaseException) -> Message:
    """The message an app whose lifespan raises `failure` sends the server at start-up."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        raise failure
        yield  # pragma: no cover - never reached

    app = Starlette(lifespan=lifespan)
    report_start_up_errors(app.router)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(type(failure)):
        await app({"type": "lifespan", "state": {}}, receive, send)
    (message,) = sent
    assert message["type"] == "lifespan.startup.failed"
    return message


async def test_a_start_up_error_is_logged_as_its_message_alone(caplog):
    """The server gets no traceback to log; the gateway logs the reason once, as one line."""
    caplog.set_level(logging.ERROR, logger="signing_gateway.start_up")
    message = await _start(StartUpError("SIGNING_GATEWAY_TRUST: no signer keys configured"))
    assert message["message"] == ""
    assert [(r.name, r.getMessage(), r.exc_info) for r in caplog.records] == [
        (
            "signing_gateway.start_up",
            "start-up failed: SIGNING_GATEWAY_TRUST: no signer keys configured",
            None,
        )
    ]


async def test_any_other_failure_keeps_its_traceback(caplog):
    """A bug at start-up is reported as before: its traceback, for the server to log."""
    caplog.set_level(logging.ERROR, logger="signing_gateway.start_up")
    message = await _start(RuntimeError("a bug"))
    assert message["message"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: a bug" in message["message"]
    assert caplog.records == []


async def test_a_start_up_the_server_cancelled_is_not_reported(caplog):
    """A start-up stopped by a signal gives the server no traceback to log, and logs nothing."""
    caplog.set_level(logging.DEBUG, logger="signing_gateway.start_up")
    message = await _start(asyncio.CancelledError())
    assert message["message"] == ""
    assert caplog.records == []
