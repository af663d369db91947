"""S3 baseline: a minimal pass-through proxy (FastAPI + aiohttp), no validation, no checks.

It forwards the request body to the signer's ``/get_credential`` and returns the signer's
answer untouched: the floor of what any FastAPI forwarder on this machine costs per request.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response


def create_app() -> FastAPI:
    signer = os.environ["BENCH_SIGNER_URL"]
    # A month ahead, fixed at start: the signer refuses a past expiration time.
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    session: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # S4 raises it to what the fd limit leaves beside its callers (bench/procs.py).
        limit = int(os.environ.get("BENCH_PROXY_CONNECTIONS", "1024"))
        connector = aiohttp.TCPConnector(limit=limit)
        async with aiohttp.ClientSession(signer, connector=connector) as client:
            session["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/dcc")
    async def dcc(request: Request) -> Response:
        body = orjson.loads(await request.body())
        wire = {
            "keyUsage": body.get("keyUsage", "vaccination"),
            "expirationTime": expires,
            "dcc": body["dcc"],
        }
        async with session["client"].post(
            "/get_credential",
            data=orjson.dumps(wire),
            headers={"Content-Type": "application/json"},
        ) as answer:
            content = await answer.read()
        return Response(content, status_code=answer.status, media_type="application/json")

    return app
