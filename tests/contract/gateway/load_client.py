"""A separate load process: N concurrent POSTs of one JSON body, timed; prints a JSON summary.

Run as `python load_client.py URL N < body.json`. Generating load from its own process keeps
the client's CPU work out of the latency the test measures on the gateway.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter

import aiohttp
import orjson


async def _run(url: str, count: int, body: bytes) -> dict[str, object]:
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one() -> int:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        started = time.monotonic()
        statuses = await asyncio.gather(*(one() for _ in range(count)))
        elapsed = time.monotonic() - started
    return {"elapsed": elapsed, "statuses": {str(k): n for k, n in Counter(statuses).items()}}


def main() -> None:
    """Read the body from stdin, send it `N` times at once, print the summary."""
    url, count = sys.argv[1], int(sys.argv[2])
    summary = asyncio.run(_run(url, count, sys.stdin.buffer.read()))
    sys.stdout.buffer.write(orjson.dumps(summary) + b"\n")


if __name__ == "__main__":
    main()
