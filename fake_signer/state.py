"""The per-application state every handler reads, stored under one typed `AppKey`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fake_signer.behaviour import Behaviour
from fake_signer.domestic import NonceStore
from fake_signer.idemix_signer import IdemixSigner
from fake_signer.keys import KeyMaterial
from fake_signer.serving import SigningPipeline
from fake_signer.settings import FakeSignerSettings
from fake_signer.stats import Stats


@dataclass
class FakeSignerState:
    """Settings, keys, behaviour and counters of one fake-signer application."""

    settings: FakeSignerSettings
    behaviour: Behaviour
    stats: Stats
    pipeline: SigningPipeline
    nonces: NonceStore
    # Set on shutdown so hanging requests can finish instead of holding the server up.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    keys: KeyMaterial | None = None
    # Set under `--domestic-scheme idemix` when the domestic endpoints are served.
    idemix: IdemixSigner | None = None
    # The tasks of the signing requests being handled, which a shutdown drains.
    running: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def key_material(self) -> KeyMaterial:
        """The keys, available once the application has started."""
        if self.keys is None:
            raise RuntimeError("keys are loaded at application start")
        return self.keys


STATE = web.AppKey("fake_signer_state", FakeSignerState)
