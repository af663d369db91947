"""A small OTLP/HTTP trace collector for tests: records what it is sent, or never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class ReceivedSpans:
    """The export requests a collector was sent, in order (appended from its threads)."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.requests: list[ExportTraceServiceRequest] = []

    def names(self) -> list[str]:
        """The names of every span received, in the order they came."""
        return [
            span.name
            for request in list(self.requests)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]


@contextmanager
def otlp_collector() -> Iterator[tuple[int, ReceivedSpans]]:
    """A collector on a free 127.0.0.1 port that accepts every export; yields port and record."""
    received = ReceivedSpans()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            received.requests.append(request)
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
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def silent_collector() -> Iterator[int]:
    """A port that accepts connections (into the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]
