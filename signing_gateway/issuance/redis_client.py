"""The Redis client of the session store: on `redis_url`, or on the primary Sentinels name.

Built at start-up, its files read off the event loop (`read_store_files`): redis-py would
otherwise build its TLS context (loading the CA bundle and the client key) on the loop at the
first connection, and look at the files again at each one. Its pool is bounded and waits at
most `timeout_seconds` for a connection; no command and no connection is retried.

With `sentinels`, each new connection first asks the sentinels, in turn, which server is the
primary of `sentinel_service` (redis-py's `SentinelConnectionPool`), each within
`connect_timeout_seconds`; the store's `timeout_seconds` bounds that too, as the rest of the
operation. The connections opened at once share one asking, so each sentinel needs one
connection. A primary that answers `READONLY` (demoted) has that connection closed and the
operation fails; the next connection asks the sentinels again. Once they name another
primary, the pool closes its idle connections to the old one and has those in use closed as
they come back (`_BlockingSentinelPool`); the store also asks them every
`sentinel_check_seconds`, so a replaced primary still serving (a planned failover, a
partition) is left without waiting for its demotion. The sentinels are reached as the primary
is: over TLS with `rediss://`, with the same CA bundle and client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from signing_gateway.issuance.store_settings import SENTINEL_CONNECTIONS, SessionStoreSettings
from signing_gateway.security.files import read_password_text
from signing_gateway.security.tls_contexts import client_tls_context
from signing_gateway.start_up import StartUpError
from signing_gateway.start_up_checks import session_store_file_problems

logger = logging.getLogger(__name__)

#: The name the gateway's connections carry in Redis's `CLIENT LIST`.
CLIENT_NAME = "signing-gateway"


class TlsConnection(Connection):
    """A Redis connection over TLS with a context built at start-up, off the event loop."""

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:  # noqa: ANN401 - redis-py's
        """A connection that wraps its socket with `tls_context` (`kwargs`: redis-py's)."""
        self._tls_context = tls_context
        super().__init__(**kwargs)

    def _connection_arguments(self) -> Mapping[str, Any]:
        return {**super()._connection_arguments(), "ssl": self._tls_context}


class _SentinelTlsConnection(SentinelManagedConnection, TlsConnection):
    """A connection to the primary the sentinels name, over TLS with the start-up context."""


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Connections to the primary the sentinels name, waiting for one as the store's pool does.

    redis-py's own Sentinel pool refuses at once when all its connections are in use, and has
    each new connection ask the sentinels on its own: a burst of them queued for the one
    connection to a silent sentinel, and most failed their operations while the next sentinel
    would have answered. Here the connections made at once share one asking of the sentinels.
    """

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:  # noqa: ANN401 - redis-py's
        """The pool of `service_name`'s primary, named by `sentinel_manager`."""
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        self._asking: asyncio.Task[tuple[str, int]] | None = None

    async def get_master_address(self) -> tuple[str, int]:
        """The primary's address, from the asking of the sentinels under way or a new one."""
        if self._asking is None:
            self._asking = asyncio.ensure_future(self._ask_sentinels())
            self._asking.add_done_callback(self._asked)
        # Shielded: a connection that gives up (its operation timed out) leaves the asking to
        # the others; it ends within connect_timeout_seconds for each sentinel.
        return await asyncio.shield(self._asking)

    async def _ask_sentinels(self) -> tuple[str, int]:
        """Ask the sentinels for the primary; leave any other server the pool is connected to.

        redis-py's own asking closes the idle connections when the primary moves, outside the
        lock the pool hands them out with (one handed out meanwhile fails its operation), and
        leaves those in use connected to the old one: they return to the pool and go on
        reaching it until it is demoted, which closes them (about 10 s after a failover), or
        for as long as a partition keeps the sentinels from it.
        """
        before = self.master_address
        primary: tuple[str, int] = await self.sentinel_manager.discover_master(self.service_name)
        self.master_address = primary
        left = await leave_connections(self, lambda connection: _elsewhere(connection, primary))
        if before is not None and before != primary:
            logger.info(
                "session store primary moved",
                extra={
                    "previous": f"{before[0]}:{before[1]}",
                    "primary": f"{primary[0]}:{primary[1]}",
                    "connections": left,
                },
            )
        return primary

    def _asked(self, asking: asyncio.Task[tuple[str, int]]) -> None:
        self._asking = None
        if not asking.cancelled():
            asking.exception()  # each connection waiting on it raised it; none may be left

    async def stop_asking(self) -> None:
        """Cancel the asking of the sentinels under way, if any (at shutdown)."""
        if self._asking is not None:
            asking = self._asking
            asking.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await asking


async def leave_connections(
    pool: ConnectionPool, which: Callable[[AbstractConnection], bool]
) -> int:
    """Close the connections of `pool` that `which` picks: idle now, in use as they come back.

    Returns how many it picked (those already to close as they come back aside). Done under
    the lock the pool hands connections out with: one handed out while they close would fail
    its operation, which a fresh connection would have served. A failure to close is not
    raised when it is an OSError or a RedisError: closing, nothing more is lost.
    """
    async with pool._lock:  # noqa: SLF001 - redis-py's own, no public way to hold it
        in_use = [
            connection
            for connection in pool._in_use_connections  # noqa: SLF001 - as the lock
            # Already marked: to close as it comes back.
            if which(connection) and not connection.should_reconnect()  # type: ignore[no-untyped-call]
        ]
        for connection in in_use:
            connection.mark_for_reconnect()  # type: ignore[no-untyped-call]
        idle = [c for c in pool._available_connections if which(c)]  # noqa: SLF001 - as the lock
        closed = await asyncio.gather(*(c.disconnect() for c in idle), return_exceptions=True)
    failed = next((result for result in closed if isinstance(result, BaseException)), None)
    if failed is not None and not isinstance(failed, (OSError, RedisError)):
        raise failed
    return len(in_use) + len(idle)


def _elsewhere(connection: AbstractConnection, primary: tuple[str, int]) -> bool:
    """Whether `connection` is open to a server other than `primary`."""
    address = (getattr(connection, "host", None), getattr(connection, "port", None))
    return bool(connection.is_connected) and address != primary


async def ask_sentinels(client: Redis) -> None:
    """With sentinels, ask them for the primary now (`_BlockingSentinelPool`); else nothing."""
    pool = client.connection_pool
    if isinstance(pool, _BlockingSentinelPool):
        await pool.get_master_address()


def follows_sentinels(client: Redis) -> bool:
    """Whether `client` reaches the primary that sentinels name."""
    return isinstance(client.connection_pool, _BlockingSentinelPool)


@dataclass(frozen=True)
class StoreFiles:
    """What the store's files hold: the passwords (None: no AUTH) and the TLS context."""

    password: str | None
    sentinel_password: str | None
    tls_context: ssl.SSLContext | None


class SessionStoreFilesError(StartUpError):
    """Raised at start-up when the store's TLS or password file does not load; no start.

    The check before serving names the same problems; this is for a file changed since, or an
    app from `create_app()`, whose files are not checked first.
    """


def _tls_context(settings: SessionStoreSettings) -> ssl.SSLContext:
    """The TLS context of a rediss:// store (blocking: loads files)."""
    return client_tls_context(
        ca_bundle=settings.ca_bundle,
        client_cert=settings.client_cert,
        client_key=settings.client_key,
    )


def read_store_files(settings: SessionStoreSettings) -> StoreFiles:
    """The passwords and the TLS context of the store (blocking: reads files).

    Raises:
        SessionStoreFilesError: one does not load, or a password file is empty.
    """
    try:
        passwords = [
            None if path is None else read_password_text(path)
            for path in (settings.redis_password_file, settings.sentinel_password_file)
        ]
        tls = _tls_context(settings) if settings.uses_tls() else None
    except (OSError, ValueError) as exc:  # ssl.SSLError, UnicodeDecodeError, an encrypted key
        problems = session_store_file_problems(settings) or [
            f"a session store file could not be loaded ({type(exc).__name__}); start again"
        ]
        raise SessionStoreFilesError("; ".join(problems)) from exc
    # Emptied since the check (or never checked): the client would then send no AUTH at all.
    if "" in passwords:
        raise SessionStoreFilesError("; ".join(session_store_file_problems(settings)))
    return StoreFiles(passwords[0], passwords[1], tls)


def redis_client(settings: SessionStoreSettings, *, files: StoreFiles, driver: DriverInfo) -> Redis:
    """The Redis client `settings` describe: bounded pool, no retries, the files' TLS context.

    `driver` is what each connection tells the server of its library (`CLIENT SETINFO`):
    left to redis-py, the first connection read the library's version from its package files,
    on the event loop (blockbuster caught it). Build it once, off the loop.
    """
    tls: dict[str, Any] = {}
    if settings.uses_tls():
        if files.tls_context is None:
            raise ValueError("a rediss:// store needs its TLS context")
        tls = {"connection_class": TlsConnection, "tls_context": files.tls_context}
    no_retries = Retry(NoBackoff(), 0)
    common: dict[str, Any] = {
        "timeout": settings.timeout_seconds,
        "socket_connect_timeout": settings.connect_timeout_seconds,
        "client_name": CLIENT_NAME,
        "driver_info": driver,
        "retry": no_retries,
        **tls,
    }
    primary: dict[str, Any] = {
        **common,
        "username": settings.redis_username,
        "password": files.password,
        "max_connections": settings.max_connections,
        "socket_timeout": settings.timeout_seconds,
    }
    if not settings.sentinels:
        _, host, port, database = settings.redis_parts()
        pool = BlockingConnectionPool(host=host, port=port, db=database, **primary)
        return Redis(connection_pool=pool, retry=no_retries, driver_info=driver)
    # Each sentinel is asked within connect_timeout_seconds, so one that hangs leaves the
    # others time to answer within the operation's timeout_seconds.
    sentinels = Sentinel([])
    sentinels.sentinels = []
    for host, port in settings.sentinel_addresses():
        sentinel = Redis(
            connection_pool=BlockingConnectionPool(
                host=host,
                port=port,
                username=settings.sentinel_username,
                password=files.sentinel_password,
                max_connections=SENTINEL_CONNECTIONS,
                socket_timeout=settings.connect_timeout_seconds,
                **common,
            ),
            retry=no_retries,
            driver_info=driver,
        )
        # Closed with its pool (`Sentinel.aclose`): redis-py leaves a pool it was given open.
        sentinel.auto_close_connection_pool = True
        sentinels.sentinels.append(sentinel)
    if settings.uses_tls():
        primary["connection_class"] = _SentinelTlsConnection
    assert settings.sentinel_service is not None  # noqa: S101 - checked by the validator
    pool = _BlockingSentinelPool(settings.sentinel_service, sentinels, **primary)
    return Redis(connection_pool=pool, retry=no_retries, driver_info=driver)


async def close_client(client: Redis) -> None:
    """Close `client`, its pool's connections and, with sentinels, theirs.

    A connection that does not close within `connect_timeout_seconds` (its server stopped
    answering) is let go: the others, the sentinels' included, are closed all the same.
    """
    pool = client.connection_pool
    sentinels = pool.sentinel_manager if isinstance(pool, _BlockingSentinelPool) else None
    if isinstance(pool, _BlockingSentinelPool):
        await pool.stop_asking()
    # The pool too: redis-py leaves a pool it was given open when the client closes.
    with contextlib.suppress(RedisError, OSError):  # closing: nothing more to lose
        await client.aclose(close_connection_pool=True)
    if sentinels is not None:
        with contextlib.suppress(RedisError, OSError):
            await sentinels.aclose()
