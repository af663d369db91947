"""The two issuance-session stores under one test clock: in memory, and Redis (fakeredis).

The Redis store runs on `fakeredis` with its Lua scripts really run (lupa). fakeredis expires
keys by the wall clock it reads at each command; the tests give it their own clock, the one
the store measures a taken session's time left with, so that an expiry is tested to the
millisecond without waiting for it.

A gateway started with `session_store.kind=redis` keeps its sessions on a fake server too
(`sessions_on`): only the client it builds is replaced, its store is the real one.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import fakeredis
import fakeredis._socket._base as fake_socket
import pytest
import redis.utils
from fakeredis.aioredis import FakeRedis

from signing_gateway.issuance import redis_stokens
from signing_gateway.issuance.redis_client import StoreFiles
from signing_gateway.issuance.redis_stokens import RedisStokenStore
from signing_gateway.issuance.stoken import InMemoryStokenStore, StokenStore
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.metrics import GatewayMetrics

C = TypeVar("C", bound=FakeRedis)
StoreKind = Literal["memory", "redis"]
STORE_KINDS: tuple[StoreKind, ...] = ("memory", "redis")
KEY_PREFIX = "test:stoken:"
#: A gateway's Redis session store, whose client `sessions_on` replaces: the URL is not used.
REDIS_SESSIONS = SessionStoreSettings(
    kind="redis", redis_url="redis://127.0.0.1:6379/0", timeout_seconds=0.5
)


class FakeClock:
    """A clock the test moves by hand (monotonic for the store, wall clock for fakeredis)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def redis_on_clock(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[None]:
    """Make `clock` fakeredis's time of day: keys expire when the test moves it."""
    with monkeypatch.context() as patched:
        patched.setattr(fake_socket, "time", types.SimpleNamespace(time=clock))
        yield


@contextmanager
def sessions_on(monkeypatch: pytest.MonkeyPatch, server: fakeredis.FakeServer) -> Iterator[None]:
    """Gateways started in the block keep their Redis sessions on `server`, one client each."""
    redis.utils.get_lib_version()  # read before any loop runs, as `Stores` says

    def client(settings: SessionStoreSettings, *, files: StoreFiles, driver: object) -> FakeRedis:
        assert (settings.kind, files) == ("redis", StoreFiles(None, None, None))
        return FakeRedis(server=server, driver_info=driver)

    with monkeypatch.context() as patched:
        patched.setattr(redis_stokens, "redis_client", client)
        yield


@dataclass
class Stores:
    """Stores of one kind on one clock; a Redis one on one fake server."""

    kind: StoreKind
    clock: FakeClock = field(default_factory=FakeClock)
    server: fakeredis.FakeServer = field(default_factory=fakeredis.FakeServer)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)

    def __post_init__(self) -> None:
        """Read redis-py's version before any loop runs, as fakeredis would at a connection.

        A fake connection reads it from the package's files (once per process); the
        gateway's own client is given it (`redis_client`).
        """
        redis.utils.get_lib_version()

    def client(self, kind: type[C] = FakeRedis) -> C:  # type: ignore[assignment]
        """A client of the fake server (of class `kind`)."""
        return kind(server=self.server)

    def redis(
        self,
        *,
        ttl_seconds: float = 60,
        timeout_seconds: float = 1.0,
        client: FakeRedis | None = None,
    ) -> RedisStokenStore:
        """A Redis store on `client` (a client of the fake server by default)."""
        return RedisStokenStore(
            client or self.client(),
            ttl_seconds=ttl_seconds,
            key_prefix=KEY_PREFIX,
            timeout_seconds=timeout_seconds,
            metrics=self.metrics,
            clock=self.clock,
        )

    def store(self, *, ttl_seconds: float = 60) -> StokenStore:
        """A store of this kind: sessions live `ttl_seconds` on the clock."""
        if self.kind == "memory":
            return InMemoryStokenStore(ttl_seconds=ttl_seconds, max_sessions=1000, clock=self.clock)
        return self.redis(ttl_seconds=ttl_seconds)

    async def held(self, store: StokenStore) -> int:
        """How many sessions `store` holds, live or not yet dropped."""
        if isinstance(store, InMemoryStokenStore):
            return len(store)
        return len(await self.client().keys(KEY_PREFIX + "*"))
