"""Application factory: `create_app(settings)` builds a fake-signer aiohttp application.

Why aiohttp.web and not an ASGI stack: the fake must be able to drop a connection with a TCP
reset, hang, and trickle a body, which need the transport that ASGI hides; measured against a raw
ASGI app under uvicorn+uvloop+httptools, it served 5,000 concurrent 1-second requests in the
same wall time (the load generator, not the server, was the limit).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web

from fake_signer import keys as key_store
from fake_signer.behaviour import Behaviour
from fake_signer.domestic import NonceStore
from fake_signer.idemix_signer import IdemixSigner
from fake_signer.routes import MAX_BODY_BYTES, add_routes
from fake_signer.serving import SigningPipeline
from fake_signer.settings import DomesticScheme, FakeSignerSettings
from fake_signer.state import STATE, FakeSignerState
from fake_signer.stats import Stats

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fake_signer.keys import KeyMaterial

# What a cancelled request gets to unwind, and what aiohttp's own shutdown gets for a request
# that is not a signing (those answer at once): small, as it is added to the shutdown timeout.
CANCEL_GRACE_SECONDS = 0.05


def create_app(
    settings: FakeSignerSettings | None = None, *, keys: KeyMaterial | None = None
) -> web.Application:
    """Build the application for `settings`; keys are loaded or generated when it starts.

    Args:
        settings: the process settings (default: from the environment).
        keys: ready key material, so in-process tests need not generate keys per app.
    """
    settings = settings or FakeSignerSettings()
    behaviour = Behaviour(settings)
    stats = Stats(behaviour.gate)
    stopping = asyncio.Event()
    state = FakeSignerState(
        settings=settings,
        behaviour=behaviour,
        stats=stats,
        pipeline=SigningPipeline(behaviour, stats, stopping),
        nonces=NonceStore(time.monotonic),
        stopping=stopping,
        keys=keys,
    )
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE] = state
    add_routes(app, serve_eu=settings.role.serves_eu, serve_domestic=settings.role.serves_domestic)
    app.cleanup_ctx.append(_keys_lifespan)
    if settings.role.serves_domestic and settings.domestic_scheme is DomesticScheme.IDEMIX:
        state.idemix = IdemixSigner()
        app.cleanup_ctx.append(_idemix_lifespan)
    app.on_shutdown.append(_drain)
    return app


def load_keys(settings: FakeSignerSettings) -> KeyMaterial:
    """Generate keys, or load them from (and first write them to) the keys directory."""
    if settings.keys_dir is None:
        return key_store.generate_key_material(settings.country)
    return key_store.load_or_create(settings.keys_dir, settings.country)


async def _keys_lifespan(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    if state.keys is None:
        # Key generation and file I/O stay off the event loop.
        state.keys = await asyncio.to_thread(load_keys, state.settings)
    yield


async def _idemix_lifespan(app: web.Application) -> AsyncIterator[None]:
    idemix = app[STATE].idemix
    assert idemix is not None  # noqa: S101 - only added with the Idemix signer
    await idemix.start()
    try:
        yield
    finally:
        await idemix.close()


async def _drain(app: web.Application) -> None:
    """Release hanging requests, give running signings `shutdown_timeout`, then cancel the rest.

    Runs once the listening sockets are closed. The drain is done here because aiohttp's own
    (`AppRunner(shutdown_timeout=...)`) waits the timeout, cancels, then waits it again, and
    waits for ever when it is 0.
    """
    state = app[STATE]
    state.stopping.set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.settings.shutdown_timeout
    # Again while time is left: a request accepted just before the stop may start meanwhile.
    while state.running and (left := deadline - loop.time()) > 0:
        await asyncio.wait(set(state.running), timeout=left)
    late = set(state.running)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=CANCEL_GRACE_SECONDS)
