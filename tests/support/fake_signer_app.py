"""An in-process fake-signer application served on a free port, with a client on it."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import httpx
from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def serving_app(
    app: web.Application, *, client_timeout: float = 10
) -> AsyncIterator[httpx.AsyncClient]:
    """Serve `app` on 127.0.0.1 and a free port; a client on it; the app cleaned up after."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        base_url = f"http://{host}:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=client_timeout) as client:
            yield client
    finally:
        await runner.cleanup()
