"""The gateway's own OTLP provider at exit: queued spans sent, but never a stop held up for them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from signing_gateway.observability.tracing import EXIT_FLUSH_SECONDS

REPO = Path(__file__).resolve().parents[3]
#: How long the child may take to end once its work is done: the flush bound, and room for a
#: loaded machine. The SDK's own exit handler waits 30 s for a collector that does not answer.
EXIT_ALLOWANCE = EXIT_FLUSH_SECONDS + 4.0

#: A process that builds the gateway's tracer (no provider of its own: the OTLP one is
#: installed), ends one span, prints the time, and exits with that span still queued.
CHILD = textwrap.dedent(
    """
    import time
    from signing_gateway.observability.tracing import build_tracer
    tracer = build_tracer("exit-flush-test")
    tracer.end_signer_call(tracer.start_signer_call("eu", "get_credential", {}), "ok")
    print(time.monotonic(), flush=True)
    """
)


def _run_child(collector_port: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run CHILD against a collector on `collector_port`; its result and seconds from done to exit.

    The export timeout is a minute, so an exit that waited for the export would show.
    """
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",  # nothing sent before the exit
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter, fixed script
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=True,
    )
    exited = time.monotonic()
    return result, exited - float(result.stdout.strip())


@contextmanager
def _silent_collector() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@contextmanager
def _collector(received: list[ExportTraceServiceRequest]) -> Iterator[int]:
    """An OTLP/HTTP collector recording each export it is sent; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - its signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_collector_that_never_answers_does_not_hold_up_the_exit():
    """The queued span is given EXIT_FLUSH_SECONDS, then the process ends without it."""
    with _silent_collector() as port:
        _result, exit_took = _run_child(port)
    assert exit_took < EXIT_ALLOWANCE, f"exit took {exit_took:.1f} s with the collector silent"


def test_spans_still_queued_at_exit_reach_a_collector_that_answers():
    """The bound cuts a stalled flush short, not a working one: the last span is sent."""
    received: list[ExportTraceServiceRequest] = []
    with _collector(received) as port:
        _result, exit_took = _run_child(port)
    assert exit_took < EXIT_ALLOWANCE
    names = [
        span.name
        for request in received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert names == ["signer eu get_credential"]
