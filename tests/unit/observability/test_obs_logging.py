"""configure_logging: structured lines with the request id, written off the event loop."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Iterator

import orjson
import pytest

from signing_gateway.observability.context import request_id_var
from signing_gateway.observability.logging import configure_logging, shutdown_logging


class BlockedStream(io.StringIO):
    """A stderr whose writes wait until released: a stalled log collector."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(timeout=30)
        return super().write(text)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was (handlers, level) after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        shutdown_logging()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_lines_are_json_with_the_request_id(monkeypatch, restore_logging):
    """A record logged while serving a request comes out as one JSON line carrying its id."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")

    async def serve() -> None:
        request_id_var.set("req-77")
        logging.getLogger("signing_gateway.test").info("served", extra={"route": "/v1/dcc"})

    asyncio.run(serve())
    shutdown_logging()
    (line,) = stream.getvalue().splitlines()
    record = orjson.loads(line)
    assert record["event"] == "served"
    assert record["request_id"] == "req-77"
    assert record["route"] == "/v1/dcc"
    assert record["level"] == "info"


def test_a_stalled_log_stream_does_not_hold_the_logging_code(monkeypatch, restore_logging):
    """While stderr is blocked, logging calls still return at once; lines follow on release."""
    stream = BlockedStream()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    logger = logging.getLogger("signing_gateway.test")

    started = time.perf_counter()
    for i in range(50):
        logger.info("line %d", i)
    elapsed = time.perf_counter() - started
    # Formatting 50 lines takes milliseconds; a synchronous write would wait for the release.
    assert elapsed < 5
    assert stream.getvalue() == ""

    stream.release.set()
    shutdown_logging()
    assert len(stream.getvalue().splitlines()) == 50


def test_httpx_request_lines_are_quiet_but_its_warnings_pass(monkeypatch, restore_logging):
    """The per-request INFO lines of httpx are dropped; its warnings still reach the log."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    httpx_logger = logging.getLogger("httpx")
    monkeypatch.setattr(httpx_logger, "level", httpx_logger.level)  # restored after the test
    configure_logging(level="INFO", fmt="json")
    httpx_logger.info("HTTP Request: GET http://signer/healthz")
    httpx_logger.warning("pool trouble")
    shutdown_logging()
    events = [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["pool trouble"]
