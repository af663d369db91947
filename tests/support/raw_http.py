"""A bare HTTP/1.1 client for load scripts: one POST per connection, next to no CPU per request.

Load generators that must open thousands of connections at once (a fake signer's capacity, a
gateway's accept queue) use this instead of aiohttp or httpx, whose own client work would be
what the figure measures.
"""

from __future__ import annotations

import asyncio


def post_request(host: str, path: str, body: bytes) -> bytes:
    """The bytes of one JSON POST that asks the server to close the connection after it."""
    return (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (path.encode(), host.encode(), len(body), body)
    )


async def exchange(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """Send `request` on a new connection; the answer's status and body (by Content-Length).

    Raises:
        OSError: the connection could not be opened or was lost.
        asyncio.IncompleteReadError: the answer ended early.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return int(head[9:12]), await reader.readexactly(length)
    finally:
        writer.close()
