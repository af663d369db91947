"""Read /readyz once the background prober has had its first look at every dependency."""

from __future__ import annotations

import asyncio
import time

import httpx


async def readyz_when_probed(gateway: httpx.AsyncClient) -> httpx.Response:
    """Poll /readyz until every dependency was probed once (bounded)."""
    deadline = time.monotonic() + 5
    while True:
        response = await gateway.get("/readyz")
        states = response.json()["dependencies"].values()
        if all(s["status"] != "unknown" for s in states) or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.01)
