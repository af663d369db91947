"""CPU cost of the head bounds per request: `python -m bench.http_protocol [--rounds 7]`.

Feeds the same request, again and again, to uvicorn's `HttpToolsProtocol` and to the
gateway's `GatewayHttpProtocol` on one kept-alive connection (a fake transport, no sockets),
and answers each at once so that the next one is not pipelined: `data_received`, the parser
callbacks, and uvicorn's keep-alive timer after the answer, as a served request goes through
them. Starting the ASGI task is left out of both (it is the same work in both). Two requests:
a GET with ten header fields (a 700-byte bearer token among them) and a POST of the same
with a 1 KiB body. Timed with `timeit`, both protocols in turn in every round (so drift of
the machine hits both alike); the best round of each is reported, in µs per request.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import timeit
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from signing_gateway.runtime.http_protocol import GatewayHttpProtocol

_TOKEN = b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImxvY2FsLTEifQ." + b"x" * 600 + b".signature"
_HEADERS = (
    b"Host: gateway.internal:8080\r\n"
    b"User-Agent: python-httpx/0.28.1\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\n"
    b"Authorization: Bearer " + _TOKEN + b"\r\n"
    b"X-Request-ID: 0d5bd1b1f0a94cbcb2d2a2b4f0c1e9a7\r\n"
    b"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
)
GET = b"GET /v1/keys HTTP/1.1\r\n" + _HEADERS + b"X-Client: cc-backend\r\nX-Tenant: nl\r\n\r\n"
_BODY = b'{"keyUsage": "vaccination", "pad": "' + b"x" * 980 + b'"}'
POST = (
    b"POST /v1/dcc HTTP/1.1\r\n"
    + _HEADERS
    + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_BODY)
    + _BODY
)


class FakeTransport(asyncio.Transport):
    """A transport that keeps what is written and does nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof_written = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """Never called: the benchmark's protocols start no ASGI task."""


class _Uvicorn(HttpToolsProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Run no request: only the protocol's own work is timed."""


class _Gateway(GatewayHttpProtocol):
    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Run no request: only the protocol's own work is timed."""


def connect(
    protocol_class: type[HttpToolsProtocol],
    loop: asyncio.AbstractEventLoop,
    app_state: dict[str, Any] | None = None,
) -> tuple[HttpToolsProtocol, FakeTransport]:
    """A protocol of `protocol_class` with a connection made on a fake transport."""
    config = Config(app=_no_app, http=protocol_class, proxy_headers=False, log_config=None)
    protocol = protocol_class(
        config=config, server_state=ServerState(), app_state=app_state or {}, _loop=loop
    )
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def _serve(protocol: HttpToolsProtocol, request: bytes) -> None:
    protocol.data_received(request)
    protocol.cycle.response_complete = True  # answered at once: the next is not pipelined
    protocol.on_response_complete()


def measure(request: bytes, rounds: int, number: int) -> dict[str, float]:
    """Best µs per request of each protocol over `rounds` alternated rounds of `number`."""
    loop = asyncio.new_event_loop()
    try:
        served = {
            "uvicorn": connect(_Uvicorn, loop)[0],
            "gateway": connect(_Gateway, loop)[0],
        }
        best = dict.fromkeys(served, float("inf"))
        for _ in range(rounds):
            for name, protocol in served.items():
                seconds = timeit.timeit(functools.partial(_serve, protocol, request), number=number)
                best[name] = min(best[name], seconds / number * 1e6)
                # Let the loop drop the keep-alive timers cancelled meanwhile.
                loop.run_until_complete(asyncio.sleep(0))
        return best
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    for label, request in (("GET, 10 header fields", GET), ("POST, 10 + 2 fields, 1 KiB", POST)):
        best = measure(request, args.rounds, args.number)
        extra = best["gateway"] - best["uvicorn"]
        print(
            f"{label} ({len(request)} bytes): uvicorn {best['uvicorn']:.2f} µs, "
            f"gateway {best['gateway']:.2f} µs, +{extra:.2f} µs per request"
        )


if __name__ == "__main__":
    main()
