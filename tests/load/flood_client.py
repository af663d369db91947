"""Open N connections at once and POST one request on each: a connection flood, like wrk's start.

``python tests/load/flood_client.py HOST PORT PATH N BODY_FILE`` prints one JSON line with the
status counts and the wall time. A bare HTTP/1.1 client on uvloop: it opens its connections
far faster than an aiohttp session does, so the server sees them arrive together.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import uvloop


async def _one(host: str, port: int, request: bytes) -> str:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return type(exc).__name__
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return head[9:12].decode()
    except (OSError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


async def main(host: str, port: int, path: str, count: int, body: bytes) -> dict[str, object]:
    """Send `count` POSTs at once, each on its own connection; count the outcomes."""
    request = (
        b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (path.encode(), host.encode(), len(body), body)
    )
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(_one(host, port, request) for _ in range(count)))
    return {"statuses": dict(collections.Counter(outcomes)), "wall": time.perf_counter() - started}


if __name__ == "__main__":
    host, port, path, count, body_file = sys.argv[1:6]
    with open(body_file, "rb") as handle:  # noqa: PTH123 - a script, not the package
        payload = handle.read()
    result = uvloop.run(main(host, int(port), path, int(count), payload))
    print(json.dumps(result))  # noqa: T201 - the result line
