"""configure_logging: structured lines with the request id, written off the event loop."""

from __future__ import annotations

import asyncio
import atexit
import io
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from signing_gateway.observability import logging as gateway_logging
from signing_gateway.observability.context import request_id_var
from signing_gateway.observability.logging import (
    DROPPED_MESSAGE,
    MAX_QUEUED_LINES,
    WRITE_INTERVAL_SECONDS,
    configure_logging,
    flush_logging,
    note_answered,
    shutdown_logging,
)


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
    switches = {name: getattr(logging, name) for name in RECORD_SWITCHES}
    try:
        yield
    finally:
        shutdown_logging()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, value in switches.items():
            setattr(logging, name, value)


#: The logging module's switches for what every record looks up (`configure_logging`).
RECORD_SWITCHES = ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")


class Kept(logging.Handler):
    """Keeps the records it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_records_skip_the_lookups_no_line_shows(monkeypatch, restore_logging):
    """No stack walk, no thread, process or multiprocessing names: the lines hold none."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    kept = Kept()
    logging.getLogger().addHandler(kept)

    logging.getLogger("signing_gateway.test").info("looked up", extra={"n": 1})
    flush_logging()

    (record,) = kept.records
    assert (record.pathname, record.lineno, record.funcName) == (
        "(unknown file)", 0, "(unknown function)",
    )  # fmt: skip
    assert (record.thread, record.threadName, record.process, record.processName) == (
        None, None, None, None,
    )  # fmt: skip
    line = orjson.loads(stream.getvalue())
    assert (line["event"], line["n"], line["logger"]) == ("looked up", 1, "signing_gateway.test")


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


def test_a_stalled_log_stream_costs_lines_counted_not_memory(monkeypatch, restore_logging):
    """Past the queue's bound, lines are dropped and counted; the count is logged on release."""
    stream = BlockedStream()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(gateway_logging, "MAX_QUEUED_LINES", 10)
    configure_logging(level="INFO", fmt="json")
    logger = logging.getLogger("signing_gateway.test")

    for i in range(100):
        logger.info("line %d", i)
    writer = gateway_logging._writer
    assert writer is not None
    assert len(writer._lines) <= 10  # the writer may hold one batch more, blocked in its write

    stream.release.set()
    shutdown_logging()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    written = [line for line in lines if line["event"].startswith("line ")]
    (report,) = [line for line in lines if line["event"] == DROPPED_MESSAGE]
    assert report["level"] == "warning"
    assert 0 < report["lines"] == 100 - len(written)
    assert len(written) <= 20
    assert [line["event"] for line in written] == [f"line {i}" for i in range(len(written))]


class FailingStream(io.StringIO):
    """A stderr whose writes fail while `failing` is set: a broken log pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    def write(self, text: str) -> int:
        if self.failing:
            raise OSError("broken pipe")
        return super().write(text)


@pytest.fixture
def flushed_by_hand(monkeypatch: pytest.MonkeyPatch) -> logging.Logger:
    """A queue bound of 10 lines and a writer thread that never wakes: only `flush` writes."""
    monkeypatch.setattr(gateway_logging, "WRITE_INTERVAL_SECONDS", 600)
    monkeypatch.setattr(gateway_logging, "MAX_QUEUED_LINES", 10)
    return logging.getLogger("signing_gateway.test")


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_the_queue_holds_its_bound_and_the_report_follows_the_lines_written(
    monkeypatch, restore_logging, flushed_by_hand
):
    """Ten lines wait, the next five are dropped; the report comes after the ten, from here."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    for i in range(15):
        flushed_by_hand.info("line %d", i)
    flush_logging()  # the ten lines; the report is queued behind them
    flush_logging()

    events = _events(stream)
    assert [event["event"] for event in events] == [f"line {i}" for i in range(10)] + [
        DROPPED_MESSAGE
    ]
    assert events[-1]["lines"] == 5
    assert events[-1]["level"] == "warning"
    assert events[-1]["logger"] == gateway_logging.__name__


def test_a_report_due_as_the_writer_stops_is_written_after_its_lines(
    monkeypatch, restore_logging, flushed_by_hand
):
    """Stopping writes the queued lines, then the report, which the stopped writer writes at once.

    Logged under the write lock, the report's line would wait for that lock forever.
    """
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    for i in range(15):
        flushed_by_hand.info("line %d", i)
    stopper = threading.Thread(target=shutdown_logging, daemon=True)
    stopper.start()
    stopper.join(timeout=10)
    if stopper.is_alive():
        gateway_logging._writer = None  # left behind, stuck, so that the other tests go on
        pytest.fail("the writer did not stop: its report waits for the write lock it holds")

    events = _events(stream)
    assert [event["event"] for event in events] == [f"line {i}" for i in range(10)] + [
        DROPPED_MESSAGE
    ]
    assert events[-1]["lines"] == 5


class RefillingStream(io.StringIO):
    """A stderr that, while it writes its first batch, gets more lines logged than fit."""

    def __init__(self, logger: logging.Logger, lines: int) -> None:
        super().__init__()
        self.logger, self.lines = logger, lines

    def write(self, text: str) -> int:
        lines, self.lines = self.lines, 0
        for i in range(lines):  # as other threads would, while the collector holds the write
            self.logger.info("during %d", i)
        return super().write(text)


def test_the_report_is_not_dropped_by_a_queue_full_again(
    monkeypatch, restore_logging, flushed_by_hand
):
    """A queue that filled again during the batch the stream took still takes the report.

    Dropped and counted, it would leave a count of 1 for the next report, the rest lost.
    """
    stream = RefillingStream(flushed_by_hand, lines=12)
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    for i in range(15):
        flushed_by_hand.info("line %d", i)
    flush_logging()  # ten lines written; meanwhile ten more queued and two dropped
    flush_logging()
    flush_logging()

    events = _events(stream)
    assert [event["event"] for event in events[:20]] == [f"line {i}" for i in range(10)] + [
        f"during {i}" for i in range(10)
    ]
    assert [(event["event"], event["lines"]) for event in events[20:]] == [(DROPPED_MESSAGE, 7)]

    for i in range(15):  # this thread, which logged the report, is held to the bound again
        flushed_by_hand.info("again %d", i)
    flush_logging()
    flush_logging()
    events = _events(stream)[21:]
    assert [event["event"] for event in events] == [f"again {i}" for i in range(10)] + [
        DROPPED_MESSAGE
    ]
    assert events[-1]["lines"] == 5


def test_the_dropped_count_waits_for_a_batch_the_stream_took(
    monkeypatch, restore_logging, flushed_by_hand
):
    """A failed write, or a flush with nothing queued, neither reports the count nor loses it.

    Reported then, the report would be lost with the next failed batch, and the count with it.
    """
    stream = FailingStream()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(logging, "lastResort", None)
    configure_logging(level="INFO", fmt="json")
    for i in range(15):
        flushed_by_hand.info("line %d", i)
    flush_logging()  # the ten lines are lost
    flush_logging()  # nothing queued
    flushed_by_hand.info("after 1")
    flush_logging()  # lost too
    stream.failing = False
    flushed_by_hand.info("after 2")
    flush_logging()
    flush_logging()

    events = _events(stream)
    assert [event["event"] for event in events] == ["after 2", DROPPED_MESSAGE]
    assert events[-1]["lines"] == 5


@pytest.mark.parametrize("name", ["httpx", "httpcore.http11"])
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_httpx_request_lines_are_quiet_but_its_warnings_pass(
    monkeypatch, restore_logging, level, name
):
    """The per-request lines of httpx and its transport are dropped; warnings still pass.

    At DEBUG too, as docs/security.md says (personal data policy): httpcore logs each call's
    steps there, with the signer's address and its answer's header fields.
    """
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    for quietened in ("httpx", "httpcore"):
        logger = logging.getLogger(quietened)
        monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    configure_logging(level=level, fmt="json")
    httpx_logger = logging.getLogger(name)
    httpx_logger.debug("receive_response_headers.complete return_value=(b'HTTP/1.1', 200)")
    httpx_logger.info("HTTP Request: GET http://signer/healthz")
    httpx_logger.warning("pool trouble")
    shutdown_logging()
    events = [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["pool trouble"]


class CountingStream(io.StringIO):
    """A stderr that counts its writes; `fail_first` makes the first that many raise."""

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.writes = 0
        self.fail_first = fail_first

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes <= self.fail_first:
            raise OSError("broken pipe")
        return super().write(text)


def _wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_lines_logged_together_are_written_together(monkeypatch, restore_logging):
    """200 lines in a burst reach the stream in a few writes, not one (or two) per line."""
    stream = CountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    logger = logging.getLogger("signing_gateway.test")
    for i in range(200):
        logger.info("line %d", i)
    shutdown_logging()
    lines = stream.getvalue().splitlines()
    assert [orjson.loads(line)["event"] for line in lines] == [f"line {i}" for i in range(200)]
    assert stream.writes <= 5


def test_a_line_is_written_without_waiting_for_shutdown(monkeypatch, restore_logging):
    """The writer wakes on its own: a lone line shows up within a few of its intervals."""
    stream = CountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("signing_gateway.test").info("alone")
    assert _wait_for(lambda: "alone" in stream.getvalue(), timeout=20 * WRITE_INTERVAL_SECONDS)


def test_a_failed_write_does_not_stop_the_writer(monkeypatch, restore_logging):
    """The batch that failed is lost (and said so); lines logged after it are written."""
    stream = CountingStream(fail_first=1)
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    logger = logging.getLogger("signing_gateway.test")
    logger.info("lost")
    assert _wait_for(lambda: stream.writes >= 1)
    logger.info("kept")
    shutdown_logging()
    lines = stream.getvalue().splitlines()
    assert "log lines not written (the stream failed): 1" in lines
    assert [orjson.loads(x)["event"] for x in lines if x.startswith("{")] == ["kept"]


def test_uvicorns_colour_copy_of_a_message_is_not_written(monkeypatch, restore_logging):
    """The `color_message` uvicorn adds (its message with ANSI escapes) stays out of the line."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s", "http://127.0.0.1:8000", extra={"color_message": "\x1b[1m%s"}
    )
    shutdown_logging()
    (line,) = stream.getvalue().splitlines()
    assert orjson.loads(line) == {
        "event": "Uvicorn running on http://127.0.0.1:8000",
        "level": "info",
        "logger": "uvicorn.error",
        "timestamp": orjson.loads(line)["timestamp"],
    }
    assert "\\u001b" not in line


def test_uvicorn_logs_only_the_errors_the_gateway_has_not_logged(monkeypatch, restore_logging):
    """The "Exception in ASGI application" of uvicorn is dropped for an error the gateway answered.

    An error the gateway did not log (one raised where its handler never saw it) keeps it.
    """
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    uvicorn_error = logging.getLogger("uvicorn.error")
    monkeypatch.setattr(uvicorn_error, "filters", uvicorn_error.filters[:])
    configure_logging(level="INFO", fmt="json")
    answered, unanswered = RuntimeError("answered"), RuntimeError("unanswered")
    note_answered(answered)
    for exc in (answered, unanswered):
        uvicorn_error.error("Exception in ASGI application\n", exc_info=exc)
    shutdown_logging()
    (line,) = stream.getvalue().splitlines()
    assert "RuntimeError: unanswered" in orjson.loads(line)["exception"]


class FlushCountingStream(io.StringIO):
    """A stderr that counts the flushes asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_flush_logging_writes_the_queued_lines_now_and_flushes_the_stream(
    monkeypatch, restore_logging
):
    """Before a process may end without its atexit hooks: nothing waits for the next interval."""
    stream = FlushCountingStream()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr("signing_gateway.observability.logging.WRITE_INTERVAL_SECONDS", 60)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("signing_gateway.test").info("queued")
    assert stream.getvalue() == ""
    flush_logging()
    assert [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["queued"]
    assert stream.flushes == 1


def test_fields_keep_their_own_request_id_a_utc_time_and_values_json_lacks(
    monkeypatch, restore_logging
):
    """Another request's id stays; the time is UTC; what JSON cannot hold is written as its repr.

    Not the line lost for a value orjson cannot serialize.
    """
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    token = request_id_var.set("req-serving")
    try:
        logger = logging.getLogger("signing_gateway.test")
        logger.info("other", extra={"request_id": "req-other", "amount": Decimal("1.5")})
    finally:
        request_id_var.reset(token)
    shutdown_logging()
    (line,) = stream.getvalue().splitlines()
    record = orjson.loads(line)
    assert record["request_id"] == "req-other"
    assert record["amount"] == "Decimal('1.5')"
    assert record["timestamp"].endswith("Z")


def test_uvicorn_records_flow_through_the_gateway_handler_but_its_access_lines(
    monkeypatch, restore_logging
):
    """The server's records are written as ours; its per-request access lines are not.

    uvicorn's own handlers go; the gateway writes an access line of its own.
    """
    stream, uvicorns_own = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        monkeypatch.setattr(named, "handlers", [logging.StreamHandler(uvicorns_own)])
        monkeypatch.setattr(named, "propagate", False)
        monkeypatch.setattr(named, "level", logging.NOTSET)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("uvicorn.access").info("127.0.0.1 - GET / 200")
    logging.getLogger("uvicorn").info("uvicorn itself")
    shutdown_logging()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["logger"], r["event"]) for r in lines] == [
        ("uvicorn.error", "Started server process"),
        ("uvicorn", "uvicorn itself"),
    ]
    assert uvicorns_own.getvalue() == ""  # not written a second time by uvicorn's handlers


def test_the_operations_guide_gives_the_write_interval():
    """docs/operations.md says how long a line may wait for the writer: the interval it has."""
    guide = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
    text = " ".join(guide.read_text(encoding="utf-8").split())
    milliseconds = f"{WRITE_INTERVAL_SECONDS * 1000:g} ms"
    assert f"writes what was logged every {milliseconds}" in text
    assert f"A line therefore reaches stderr up to {milliseconds} after it was logged" in text
    assert f"holds at most {MAX_QUEUED_LINES:,} lines" in text
    assert f"`{DROPPED_MESSAGE}`" in text


def test_configuring_again_writes_out_and_ends_the_previous_writer(monkeypatch, restore_logging):
    """A second configure_logging leaves one writer thread, and what the first queued is written."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr("signing_gateway.observability.logging.WRITE_INTERVAL_SECONDS", 60)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("signing_gateway.test").info("before")
    configure_logging(level="INFO", fmt="json")
    assert [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["before"]
    writers = [t for t in threading.enumerate() if t.name == "log-writer"]
    assert len(writers) == 1


def test_configuring_again_keeps_one_exit_hook(monkeypatch, restore_logging):
    """However often configure_logging runs, one exit hook writes the lines out.

    Each call registered `shutdown_logging` with `atexit` again: the hooks piled up, one per
    call, for the life of the process (each worker configures twice, the tests hundreds of
    times), and each ran at exit.
    """
    monkeypatch.setattr("sys.stderr", io.StringIO())
    configure_logging(level="INFO", fmt="json")  # registered by now, by this call or an earlier
    registered: list[object] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    configure_logging(level="INFO", fmt="json")
    configure_logging(level="INFO", fmt="console")
    assert registered == []


class Unprintable:
    """A log argument whose str() fails."""

    def __str__(self) -> str:
        raise ValueError("no text for this one")


def test_a_record_that_cannot_be_formatted_is_reported_not_dropped(monkeypatch, restore_logging):
    """A log call whose argument cannot be formatted: logging's own error report, on stderr."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("signing_gateway.test").info("value %s", Unprintable())
    shutdown_logging()
    assert "--- Logging error ---" in stream.getvalue()


def test_console_lines_carry_no_terminal_colours(monkeypatch, restore_logging):
    """The development format is plain text: no ANSI escapes where the output is a file or pipe."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="console")
    logging.getLogger("signing_gateway.test").warning("plain", extra={"route": "/v1/dcc"})
    shutdown_logging()
    (line,) = stream.getvalue().splitlines()
    assert "plain" in line
    assert "route=/v1/dcc" in line
    assert "\x1b[" not in line


_EXIT_WITHOUT_SHUTDOWN = """
import logging, sys
import signing_gateway.observability.logging as gateway_logging
gateway_logging.WRITE_INTERVAL_SECONDS = 60
gateway_logging.configure_logging(level="INFO", fmt="json")
logging.getLogger("signing_gateway.test").info("last words")
"""
#: The same, configured three times: the last lines are written once, by the one exit hook.
_CONFIGURED_THRICE = """
import logging
import signing_gateway.observability.logging as gateway_logging
gateway_logging.WRITE_INTERVAL_SECONDS = 60
for fmt in ("json", "console", "json"):
    gateway_logging.configure_logging(level="INFO", fmt=fmt)
logging.getLogger("signing_gateway.test").info("last words")
"""


@pytest.mark.parametrize(
    "script", [_EXIT_WITHOUT_SHUTDOWN, _CONFIGURED_THRICE], ids=["once", "configured-thrice"]
)
def test_a_process_ending_without_shutting_logging_down_writes_its_lines_and_exits(script: str):
    """At exit the queued lines are written, and the writer thread keeps no process alive."""
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert [orjson.loads(line)["event"] for line in result.stderr.splitlines()] == ["last words"]


def test_a_line_logged_after_shutdown_is_written_at_once(monkeypatch, restore_logging):
    """Exit hooks that run after the writer stopped (asyncio's destroyed-task errors) still log.

    With no thread left to write the queue, such a line used to wait there for no one.
    """
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(level="INFO", fmt="json")
    logging.getLogger("signing_gateway.test").info("before")
    shutdown_logging()
    logging.getLogger("asyncio").error("Task was destroyed but it is pending!")
    events = [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["before", "Task was destroyed but it is pending!"]


@pytest.mark.parametrize("name", ["httpx", "httpcore.http11"])
def test_at_error_level_httpx_warnings_stay_out_too(monkeypatch, restore_logging, name):
    """Above WARNING, the log level set decides for httpx and httpcore as for everything else."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    for quietened in ("httpx", "httpcore"):
        logger = logging.getLogger(quietened)
        monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    configure_logging(level="ERROR", fmt="json")
    logging.getLogger(name).warning("pool trouble")
    logging.getLogger(name).error("pool broken")
    shutdown_logging()
    events = [orjson.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["pool broken"]
