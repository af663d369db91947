"""A cheap load generator: N concurrent /get_credential on their own connections.

Run as `python -m tests.contract.fake_signer.signer_load PORT COUNT`; prints one JSON line
`{"wall": seconds, "ok": n}`. It runs in its own process on uvloop with a bare HTTP/1.1 client,
so the figure measures the server, not pytest's heap or aiohttp's client (which alone needs about
1.8 s of CPU for 5,000 connections on the 2-core CI machine).
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import uvloop

from tests.contract.fake_signer.signer_wire import eu_body
from tests.support import raw_http


async def _post(port: int, request: bytes) -> bytes:
    """One request on its own connection; the body of its 200 answer."""
    status, body = await raw_http.exchange("127.0.0.1", port, request)
    assert status == 200, (status, body[:200])
    return body


async def burst(port: int, count: int) -> tuple[float, list[bytes]]:
    """Send `count` requests at once; return the wall time and the response bodies."""
    body = orjson.dumps(eu_body())
    request = raw_http.post_request("127.0.0.1", "/get_credential", body)
    started = time.perf_counter()
    bodies = await asyncio.gather(*(_post(port, request) for _ in range(count)))
    return time.perf_counter() - started, bodies


def main() -> None:
    """Run one burst and print its figures."""
    port, count = int(sys.argv[1]), int(sys.argv[2])
    wall, bodies = uvloop.run(burst(port, count))
    ok = sum(1 for body in bodies if orjson.loads(body)["credential"].startswith("HC1:"))
    sys.stdout.write(orjson.dumps({"wall": wall, "ok": ok}).decode() + "\n")


if __name__ == "__main__":
    main()
