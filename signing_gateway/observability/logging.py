"""Structured logs: JSON lines in production, readable console lines in development.

Every record, from our code or from libraries, goes through one stdlib handler whose
structlog formatter adds the time, level, logger name, `extra` fields and the request id,
and with tracing on the ids of the request's span (`trace_id`, `span_id`).

That handler formats the record where it is logged (the request id lives in the logging
task's context) and only queues the finished line; a background thread writes the queued
lines to stderr every `WRITE_INTERVAL_SECONDS`. A stalled log pipe (a slow collector, a full
pipe buffer) then delays log lines, not the event loop. The queue is bounded
(`MAX_QUEUED_LINES`): a pipe that stops taking lines for good costs lines, counted and
reported once it takes them again, not the process its memory.

The writer wakes on a timer, not per line: a thread woken for every line preempts the event
loop each time, and with the gateway on one core that cost more than formatting the lines
(see `_LineWriter`).
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections import deque
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from signing_gateway.observability.context import current_request_id, trace_ids_var


def _add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = current_request_id()
    if request_id != "-":
        event.setdefault("request_id", request_id)
    # Set only by the tracer, so with tracing off this read is all a line costs more.
    trace_ids = trace_ids_var.get()
    if trace_ids is not None:
        event.setdefault("trace_id", trace_ids[0])
        event.setdefault("span_id", trace_ids[1])
    return event


def _drop_colour_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # uvicorn passes its message again with ANSI colours, as `extra`, for its own formatter.
    event.pop("color_message", None)
    return event


#: Set on an exception that the gateway has logged, traceback and request id, and answered.
_ANSWERED = "_gateway_logged_and_answered"


def note_answered(exc: BaseException) -> None:
    """Mark `exc` as logged (with its traceback) and answered by the gateway.

    Starlette raises an error it has answered again, for the server to log; uvicorn would
    then log the same traceback once more, without the request id (`_drop_server_copies`).
    So is the drain's `AnswerCut`, which ends an answer on purpose, its cut logged already.
    """
    setattr(exc, _ANSWERED, True)


def _drop_server_copies(record: logging.LogRecord) -> bool:
    """`uvicorn.error` filter: drop the server's records of what the gateway logged itself."""
    exc = record.exc_info[1] if record.exc_info else None
    return not getattr(exc, _ANSWERED, False)


def _orjson_dumps(obj: object, **kwargs: Any) -> str:  # noqa: ANN401 - structlog's signature
    """json.dumps-compatible serializer on orjson (a third of the access log's cost)."""
    return orjson.dumps(obj, default=kwargs.get("default")).decode()


def build_formatter(fmt: Literal["json", "console"]) -> logging.Formatter:
    """The formatter every record goes through: structured fields plus the request id."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_colour_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
    ]
    renderer = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


#: How often the writer thread writes out the lines logged since it last woke (seconds).
WRITE_INTERVAL_SECONDS = 0.05
#: Lines queued for the writer at most (a line is some 0.5 KB: ~25 MB). Beyond it, while the
#: stream takes nothing, new lines are dropped and counted: at the ~2,000 lines a second of a
#: gateway at its ceiling, that is 25 s of a stalled collector before the first is lost.
MAX_QUEUED_LINES = 50_000
#: The record that says how many lines were dropped, once the stream takes lines again.
DROPPED_MESSAGE = "log lines dropped: the log stream did not take them in time"


class _LineWriter:
    """A thread that writes queued lines to a stream, a batch every `interval` seconds.

    Lines go into a deque: appending takes no lock and wakes no thread. Woken per line (a
    queue and a blocking get), the writer preempted the event loop about six times per
    /v1/dcc request, which logs two lines; on a gateway pinned to one core, logging at INFO
    then cost ~15 % of its CPU per request against WARNING, measured side by side in the S3
    shape. A line waits at most one interval; `stop` writes out what is left, and a line put
    after it (exit hooks, objects finalized late) is written at once, by the thread putting it,
    as is every line put after `write_through`.

    At most `max_lines` wait: a line put while that many do is dropped and counted, and after
    the next batch the stream took, one WARNING record says how many (`DROPPED_MESSAGE`).
    That record is queued even past the bound (one line a batch): the queue can be full again
    by the time the stream took a batch, and dropped, the report would count only itself.
    """

    def __init__(
        self, stream: TextIO, *, interval: float, max_lines: int = MAX_QUEUED_LINES
    ) -> None:
        """Start writing to `stream`."""
        self._lines: deque[str] = deque()
        self._max_lines = max_lines
        self._dropped = 0
        self._dropped_lock = threading.Lock()  # taken only by a line dropped, and to report
        self._reporting = threading.local()  # `on` while this thread logs the report
        self._stream = stream
        self._interval = interval
        self._stopping = threading.Event()
        # Set by `write_through`, and by `stop` before `_stopping`: a line put then is written
        # at once, waiting for no thread.
        self._at_once = False
        # `flush` writes from the caller's thread: one writer at a time keeps lines in order.
        self._write_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        """Queue `line` (from any thread); once the writer has stopped, write it now."""
        if len(self._lines) >= self._max_lines and not getattr(self._reporting, "on", False):
            with self._dropped_lock:
                self._dropped += 1
            return
        self._lines.append(line)
        if self._at_once:
            self.flush()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Write out every line queued so far, from the calling thread, now."""
        with self._write_lock:
            written = self._write_batch()
        if written and self._dropped:
            with self._dropped_lock:
                dropped, self._dropped = self._dropped, 0
            # Logged, not written here: it is formatted as every line is, and queued behind
            # what came after the drop (outside the write lock, which `put` takes once stopped).
            self._reporting.on = True
            try:
                logging.getLogger(__name__).warning(DROPPED_MESSAGE, extra={"lines": dropped})
            finally:
                self._reporting.on = False

    def _write_batch(self) -> bool:
        """Write the queued lines; whether the stream took them (none queued: False)."""
        lines, batch = self._lines, []
        while lines:  # popleft is atomic: lines appended meanwhile wait for the next batch
            batch.append(lines.popleft())
        if not batch:
            return False
        try:
            self._stream.write("\n".join(batch) + "\n")
            self._stream.flush()
        except Exception:  # noqa: BLE001 - a broken stream must not stop the writer
            # The lines are lost, as a StreamHandler's would be; say so where that can go.
            if logging.lastResort is not None:
                lost = f"log lines not written (the stream failed): {len(batch)}"
                logging.lastResort.handle(logging.makeLogRecord({"msg": lost}))
            return False
        return True

    def write_through(self) -> None:
        """Write out every queued line now, and each line put from now on as it is put."""
        self._at_once = True
        self.flush()

    def stop(self) -> None:
        """Write out every queued line and end the thread; later lines are written as put."""
        self._at_once = True
        self._stopping.set()
        self._thread.join()


class _LineHandler(logging.Handler):
    """Format on the logging side (request id in context), queue the line for the writer."""

    def __init__(self, writer: _LineWriter) -> None:
        """Hand finished lines to `writer`."""
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        """Format `record` and queue the line."""
        try:
            self._writer.put(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


_writer: _LineWriter | None = None
_exit_hook_registered = False


def configure_logging(*, level: str, fmt: Literal["json", "console"]) -> None:
    """Route every logger through one structured handler; a writer thread owns stderr."""
    global _writer, _exit_hook_registered  # noqa: PLW0603 - one writer and hook per process
    shutdown_logging()
    _writer = _LineWriter(sys.stderr, interval=WRITE_INTERVAL_SECONDS, max_lines=MAX_QUEUED_LINES)
    if not _exit_hook_registered:  # one hook however often this runs (unregister keeps a slot)
        atexit.register(shutdown_logging)  # write out what is queued when the process exits
        _exit_hook_registered = True
    handler = _LineHandler(_writer)
    handler.setFormatter(build_formatter(fmt))
    # A record would otherwise look up its thread's, process's and multiprocessing process's
    # names (a `getpid` system call among them) and walk the stack for its caller's file, line
    # and function, none of which the lines hold (`build_formatter`): two records a request.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # noqa: SLF001 - the module's own switch for the stack walk
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; let its records flow through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_drop_server_copies)  # once, however often called
    # httpx logs every request line at INFO (each signer call and readiness probe), and its
    # transport httpcore some 15 DEBUG lines per call (the signer's address, its answer's
    # header fields); the signer-call metrics and our own failure logs say what matters
    # without that volume.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def flush_logging() -> None:
    """Write out every line queued so far, now (the writer thread keeps running).

    For the moments before a process may end without running `atexit` hooks: uvicorn ends
    one that a signal stopped by raising that signal again, whose default action kills it.
    """
    if _writer is not None:
        _writer.flush()


def write_through_logging() -> None:
    """Write out every line queued so far, and from now on each line as it is logged.

    For the end of the app's shutdown: the process may then end by a signal, without `atexit`
    (uvicorn raises a signal that stopped it again, whose default action kills it), and the
    lines logged after the shutdown, uvicorn's "Application shutdown complete." and "Finished
    server process" among them, would be lost in the queue.
    """
    if _writer is not None:
        _writer.write_through()


def shutdown_logging() -> None:
    """Write out every queued line and stop the writer thread (idempotent)."""
    global _writer  # noqa: PLW0603 - see configure_logging
    if _writer is not None:
        _writer.stop()
        _writer = None
