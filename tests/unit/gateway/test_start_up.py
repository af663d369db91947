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


async def test_an_app_cancelled_once_started_before_its_shutdown_is_not_reported(caplog):
    """A start-up stopped as it completed: cancelled while it waits for its shutdown, silently.

    The server stopped waiting for the start-up, which completed meanwhile; the loop's end then
    cancelled the lifespan waiting for its shutdown. Before, the server got the cancellation's
    traceback as a failed shutdown and logged it (once in 250 Ctrl-Cs during `serve`'s start).
    """
    caplog.set_level(logging.DEBUG, logger="signing_gateway.start_up")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(lifespan=lifespan)
    report_start_up_errors(app.router)
    sent: list[Message] = []
    asked = [{"type": "lifespan.startup"}]

    async def receive() -> Message:
        if asked:
            return asked.pop()
        raise asyncio.CancelledError  # the loop's end, before any shutdown was asked

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(asyncio.CancelledError):
        await app({"type": "lifespan", "state": {}}, receive, send)
    assert sent == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.failed", "message": ""},
    ]
    assert caplog.records == []
