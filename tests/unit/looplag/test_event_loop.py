"""The served loop handles at most N ready sockets per pass, and leaves none behind."""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from signing_gateway.resilience.drain import DrainController
from signing_gateway.resilience.shutdown import GracefulServer
from signing_gateway.runtime.event_loop import (
    DEFAULT_EVENTS_PER_PASS,
    BoundedEpollSelector,
    bounded_loop_factory,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux's")


@pytest.fixture
def ready_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Ten connected socket pairs, each with a byte waiting on its reading end."""
    pairs = [socket.socketpair() for _ in range(10)]
    for writer, _ in pairs:
        writer.send(b"x")
    yield pairs
    for writer, reader in pairs:
        writer.close()
        reader.close()


def test_select_reports_at_most_max_events(ready_pairs):
    """With ten sockets ready, one select() reports three."""
    with BoundedEpollSelector(3) as selector:
        for _, reader in ready_pairs:
            selector.register(reader, selectors.EVENT_READ)
        assert len(selector.select(0)) == 3


def test_every_ready_socket_gets_its_turn(ready_pairs):
    """Sockets left out stay ready, and the next selects go round to them: none is starved."""
    with BoundedEpollSelector(3) as selector:
        for _, reader in ready_pairs:
            selector.register(reader, selectors.EVENT_READ)
        seen: set[int] = set()
        for _ in range(4):
            seen.update(key.fd for key, _ in selector.select(0))
        assert seen == {reader.fileno() for _, reader in ready_pairs}


def test_a_bound_below_one_is_refused():
    """max_events 0 would report nothing and stall the loop: refused."""
    with pytest.raises(ValueError, match="at least 1"):
        BoundedEpollSelector(0)


def test_a_loop_with_one_event_per_pass_serves_every_client():
    """Forty clients at once, one ready socket handled per loop pass: every one is answered."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    async def client(port: int, n: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"%d\n" % n)
        answer = await reader.readline()
        writer.close()
        return answer

    async def main() -> list[bytes]:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await asyncio.gather(*(client(port, n) for n in range(40)))

    with asyncio.Runner(loop_factory=bounded_loop_factory(1)) as runner:
        answers = runner.run(main())
    assert answers == [b"%d\n" % n for n in range(40)]


def test_graceful_server_serves_on_the_loop_it_is_given():
    """`GracefulServer(loop_factory=...)` runs uvicorn on a loop from that factory."""
    selectors_seen: list[object] = []

    class Recording(GracefulServer):
        async def serve(self, sockets: list[socket.socket] | None = None) -> None:  # noqa: ARG002
            selectors_seen.append(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    async def app(scope, receive, send) -> None:  # pragma: no cover - never called
        raise AssertionError

    config = uvicorn.Config(app, port=0, log_config=None)
    server = Recording(
        config,
        controller=DrainController(drain_timeout=1.0, cancel_grace=1.0),
        loop_factory=bounded_loop_factory(5),
    )
    server.run()
    (selector,) = selectors_seen
    assert isinstance(selector, BoundedEpollSelector)
    assert selector.max_events == 5


def test_the_default_bound_is_the_one_the_operations_guide_gives():
    """`--events-per-pass` defaults to what docs/operations.md gives (its figures were taken at)."""
    guide = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
    assert f"`serve --events-per-pass` ({DEFAULT_EVENTS_PER_PASS};" in guide.read_text()
