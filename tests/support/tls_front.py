"""A TLS front on 127.0.0.1 for a plain-HTTP test server: a signer as production reaches it.

The fake signers speak plain HTTP. A `tls_front` terminates TLS (mutual, if its context asks
for the client's certificate) on a free port and passes the bytes on to the fake, so the
gateway's signer clients make the real handshake with the CA and client certificate they were
given. It runs its own event loop in a thread, and notes each client certificate it was shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_CHUNK = 65_536


@dataclass
class TlsFront:
    """Where the front listens, and the subjects' common names of the certificates shown to it."""

    port: int
    client_names: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """The front's https URL."""
        return f"https://127.0.0.1:{self.port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until either side ends, then close `writer`."""
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def _common_name(peercert: object) -> str | None:
    """The subject's commonName of a certificate as `getpeercert()` gives it, if one."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


async def _serve(
    front: TlsFront,
    target_port: int,
    context: ssl.SSLContext,
    started: threading.Event,
    stop: list[asyncio.Event],
) -> None:
    """Accept TLS connections and pass each to `target_port`, until `stop[0]` is set."""
    connections: set[asyncio.StreamWriter] = set()

    async def handle(client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        name = _common_name(client.get_extra_info("peercert"))
        if name is not None:
            front.client_names.append(name)
        connections.add(client)
        try:
            target_reader, target = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client.close()
            return
        connections.add(target)
        await asyncio.gather(_pipe(client_reader, target), _pipe(target_reader, client))

    stop.append(asyncio.Event())
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    front.port = server.sockets[0].getsockname()[1]
    started.set()
    async with server:
        await stop[0].wait()
    for writer in connections:  # each pipe then ends, closing its other side
        writer.close()


@contextlib.contextmanager
def tls_front(target_port: int, context: ssl.SSLContext) -> Iterator[TlsFront]:
    """A TLS front for the plain-HTTP server on `target_port`, stopped on leaving."""
    front = TlsFront(port=0)
    started = threading.Event()
    stop: list[asyncio.Event] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(_serve(front, target_port, context, started, stop),),
        name=f"tls-front-{target_port}",
        daemon=True,
    )
    thread.start()
    try:
        assert started.wait(10), "the TLS front did not start"
        yield front
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        _cancel_remaining(loop)
        loop.close()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the connections still piped when the front stopped, and let them end."""
    remaining = asyncio.all_tasks(loop)
    for task in remaining:
        task.cancel()
    if remaining:
        loop.run_until_complete(asyncio.gather(*remaining, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
