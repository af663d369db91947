"""Run the gateway in-process for API tests: settings with test keys, lifespan, ASGI client."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from signing_gateway.app import create_app
from signing_gateway.runtime.http_protocol import GatewayHttpProtocol
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import Settings, SignerSettings, TrustSettings
from tests.support.credentials import DomesticSigner, Dsc, make_domestic_signer, make_dsc
from tests.support.polling import until

EU_SIGNER_URL = "http://eu-signer.test"
DOMESTIC_SIGNER_URL = "http://domestic-signer.test"
KEY_USAGES = ("vaccination", "test", "recovery")


@dataclass
class SignerKeys:
    """Signing keys of the mocked signers, and the trust files the gateway reads."""

    dscs: dict[str, Dsc]
    domestic: DomesticSigner
    files: list[Path] = field(default_factory=list)
    domestic_files: list[Path] = field(default_factory=list)


def make_test_keys(directory: Path) -> SignerKeys:
    """One DSC per key usage and one domestic key, written as PEM files under `directory`."""
    keys = SignerKeys({u: make_dsc([u]) for u in KEY_USAGES}, make_domestic_signer())
    for usage, dsc in keys.dscs.items():
        path = directory / f"dsc-{usage}.pem"
        path.write_bytes(dsc.pem)
        keys.files.append(path)
    domestic_path = directory / "domestic.pem"
    domestic_path.write_bytes(keys.domestic.public_pem)
    keys.domestic_files.append(domestic_path)
    return keys


def make_settings(keys: SignerKeys | None = None, **overrides: Any) -> Settings:
    """Settings for an in-process gateway against mocked signers; keyword overrides win.

    Caller authentication is off unless a test passes `auth=AuthSettings(mode="jwt", ...)`.
    """
    values: dict[str, Any] = {
        "auth": AuthSettings(mode="disabled"),
        "eu_signer": SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True),
        "domestic_signer": SignerSettings(url=DOMESTIC_SIGNER_URL, allow_plain_http=True),
        "readiness_probe_interval_seconds": 3600.0,
    }
    if keys is not None:
        values["trust"] = TrustSettings(
            eu_certificates=keys.files, domestic_keys=keys.domestic_files
        )
    values.update(overrides)
    return Settings(**values)


@contextmanager
def frozen_test_heap() -> Iterator[None]:
    """Leave what the test process already holds out of the app's start-up collection.

    At start-up the app runs a full collection and then freezes what survives (see
    `signing_gateway.app`); in a serving process that walks its own start-up objects once. In
    the test process it would walk every object the session has built, ~0.1-0.3 s per
    gateway started. Frozen first, those are skipped: the app's collection walks what its own
    start-up built, and freezes that. Its shutdown unfreezes everything; this unfreezes too,
    for a start-up that failed before it could.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@asynccontextmanager
async def running_gateway(
    settings: Settings, *, app: FastAPI | None = None, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app's lifespan and yield an ASGI client bound to it; stop it afterwards.

    httpx's ASGI transport runs no lifespan, so the lifespan state is copied into each
    request scope here, as uvicorn does. With `raise_app_exceptions=False` an unhandled
    error is answered with the app's 500 (as uvicorn would) instead of raised into the test.
    """
    app = app or create_app(settings)
    with frozen_test_heap():
        async with app.router.lifespan_context(app) as state:

            async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] == "http":
                    scope["state"] = dict(state or {})
                await app(scope, receive, send)

            transport = httpx.ASGITransport(
                app=with_state, raise_app_exceptions=raise_app_exceptions
            )
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway.test"
            ) as client:
                yield client


@asynccontextmanager
async def served_gateway(app: FastAPI) -> AsyncIterator[int]:
    """`app` served by uvicorn, with the gateway's HTTP protocol, on 127.0.0.1: its port.

    For what only a server does (`100 Continue`, uvicorn's own logging); stopped afterwards.
    The listener is made as uvicorn makes `serve`'s, its protocol named: asyncio then turns
    Nagle's algorithm off on each connection it accepts (it looks for `IPPROTO_TCP`). Made with
    `socket.socket()` (protocol 0), an answer's body, written after its head, waited for the
    client's delayed ACK: ~40 ms on every answer but the first few of a connection.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", http=GatewayHttpProtocol
    )
    server = uvicorn.Server(config)
    with frozen_test_heap():
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await until(lambda: server.started or serving.done(), limit=30)
            assert not serving.done(), "the gateway did not start"
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, timeout=30)
            sock.close()
