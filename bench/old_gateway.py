"""S2 only: the way the replaced service signed, kept here to show the contrast.

An ``async def`` handler that calls the signer with synchronous ``requests`` and a new session
per call: every signer round trip holds the event loop, so everything else (other requests,
``/healthz``) waits behind it. Not part of the product; never imported by it.
"""

from __future__ import annotations

import datetime as dt
import os

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


def create_app() -> FastAPI:
    signer = os.environ["BENCH_SIGNER_URL"]
    # A month ahead, fixed at start: the signer refuses a past expiration time.
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/dcc")
    async def dcc(request: Request) -> Response:
        body = await request.json()
        wire = {
            "keyUsage": body.get("keyUsage", "vaccination"),
            "expirationTime": expires,
            "dcc": body["dcc"],
        }
        with requests.Session() as session:  # a new session per call, as the old service did
            answer = session.post(f"{signer}/get_credential", json=wire, timeout=30)
        return JSONResponse(answer.json(), status_code=answer.status_code)

    return app
