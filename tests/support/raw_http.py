"""A bare HTTP/1.1 client for load scripts: one POST per connection, next to no CPU per request.

Load generators that must open thousands of connections at once (a fake signer's capacity, a
gateway's accept queue) use this instead of aiohttp or httpx, whose own client work would be
what the figure measures. Tests use it too, to send framing no client library would send.
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
    status, _, body = await exchange_answer(port, request, host=host)
    return status, body


async def exchange_answer(
    port: int, request: bytes, *, host: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """Send `request` on a new connection; the answer's status, header fields and body.

    Header names are in lower case (a repeated one keeps its last value); the body is read by
    Content-Length. Raises as `exchange` does.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        body = await reader.readexactly(int(headers["content-length"]))
        return int(status_line[9:12]), headers, body
    finally:
        writer.close()
