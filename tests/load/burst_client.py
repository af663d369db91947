"""Load client run as its own process, so it does not compete with the gateway's event loop.

``python tests/load/burst_client.py URL N BODY_FILE`` sends N concurrent POSTs and prints one
JSON line: status counts, the slowest answer and the wall time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import aiohttp


async def main(url: str, count: int, body: bytes) -> dict[str, object]:
    """Send `count` POSTs of `body` to `url` at once; count the outcomes."""
    statuses: collections.Counter[str] = collections.Counter()
    slowest = 0.0
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            nonlocal slowest
            started = time.perf_counter()
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
            slowest = max(slowest, time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
    return {"statuses": dict(statuses), "slowest": slowest, "wall": time.perf_counter() - started}


if __name__ == "__main__":
    url, count, body_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(body_file, "rb") as handle:  # noqa: PTH123 - a script, not the package
        payload = handle.read()
    print(json.dumps(asyncio.run(main(url, count, payload))))  # noqa: T201 - the result line
