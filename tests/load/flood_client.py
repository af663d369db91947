"""Open N connections at once and POST one request on each: a connection flood, like wrk's start.

``python -m tests.load.flood_client HOST PORT PATH N BODY_FILE`` (from the repository root)
prints one JSON line with the status counts and the wall time. A bare HTTP/1.1 client on
uvloop: it opens its connections far faster than an aiohttp session does, so the server sees
them arrive together.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import uvloop

from tests.support import raw_http


async def _one(host: str, port: int, request: bytes) -> str:
    """The answer's status, or the name of the error that stopped the exchange."""
    try:
        status, _ = await raw_http.exchange(host, port, request)
    except (OSError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__
    return str(status)


async def main(host: str, port: int, path: str, count: int, body: bytes) -> dict[str, object]:
    """Send `count` POSTs at once, each on its own connection; count the outcomes."""
    request = raw_http.post_request(host, path, body)
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(_one(host, port, request) for _ in range(count)))
    return {"statuses": dict(collections.Counter(outcomes)), "wall": time.perf_counter() - started}


if __name__ == "__main__":
    host, port, path, count, body_file = sys.argv[1:6]
    with open(body_file, "rb") as handle:  # noqa: PTH123 - a script, not the package
        payload = handle.read()
    result = uvloop.run(main(host, int(port), path, int(count), payload))
    print(json.dumps(result))  # noqa: T201 - the result line
