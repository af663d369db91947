"""Issuance sessions in Redis, shared by every replica and worker (`session_store.kind=redis`).

The in-memory store ties a session to the process that opened it: `/v1/domestic/issue` on
another replica or `--workers` process answers 401. This store keeps each session as a Redis
hash with the session's TTL, so any gateway sharing the server can take it, with the same
guarantees as `InMemoryStokenStore` (see `issuance/stoken.py`):

- **Single use.** `take` is one Lua script, which Redis runs atomically: it reads the
  session (owner, message, time left) and deletes it only for its owner. Two requests with
  one stoken, on any replicas, can never both have it.
- **Its owner's only.** Presented by another caller the script answers "not the owner" and
  leaves the session alone: it is neither handed out nor used up.
- **A put-back never lengthens a session.** `take` reads the session's time left from Redis
  (its own clock, not a pod's); `put_back` writes the session again only if no key is there,
  with the time that was left, less what has passed on this process's clock since the take
  was sent.

The key is the prefix and a SHA-256 of the stoken, not the stoken: whoever reads the server
(a `MONITOR`, a dump, a replica) learns no token that could be presented.

Every operation is bounded by `timeout_seconds`, its wait for a pooled connection included,
and none is retried (a `take` whose answer was lost may have deleted the session: a retry
would answer 401 for a session nobody used). While one waits, the request gives its CPU
permit back (`io_wait`). A failure is answered 503 `session-store-unavailable` with
`Retry-After`, and counted in `gateway_session_store_failures_total{operation}`.

**A demoted primary.** Redis keeps its clients' connections when a primary becomes a replica
(`REPLICAOF`), and an address that follows the primary through a failover (a Kubernetes
Service) keeps the connections it had already made on the old one: every later operation on
them would answer `READONLY` for as long as they live. So an operation answered `READONLY`
(a 503, as any failure) drops the pool's idle connections, and has those in use dropped as
they come back: the next operation connects afresh, through the address, to the new primary.

**A replaced primary still up.** With sentinels, a planned failover leaves the old primary
serving until the sentinels demote it, about 10 s later, and a partition that keeps them from
it for as long as it lasts: connections open to it would keep opening sessions there that the
new primary never holds. So every `sentinel_check_seconds` the store asks the sentinels which
server is the primary; once they name another, the pool leaves the old one (its connections
closed, idle at once and in use as they come back) and logs INFO `session store primary
moved`. A sentinel that does not answer changes nothing: the next asking tries again.

The client, its TLS context and its passwords are built at start-up, off the event loop
(`issuance/redis_client.py`): on the primary of `redis_url`, or on the one Redis Sentinels name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.driver_info import DriverInfo
from redis.exceptions import ReadOnlyError, RedisError

from signing_gateway.errors import SessionStoreUnavailable
from signing_gateway.issuance.redis_client import (
    SessionStoreFilesError,
    ask_sentinels,
    close_client,
    follows_sentinels,
    leave_connections,
    read_store_files,
    redis_client,
)
from signing_gateway.issuance.stoken import IssuanceSession, NotOwner, StoreOperation
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.runtime.cpu_gate import io_wait

__all__ = ["RedisStokenStore", "SessionStoreFilesError", "open_redis_store"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# KEYS[1] the session; ARGV: owner, message, milliseconds to live. One step: a session
# is never seen without its expiry.
_OPEN = """
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'message', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1] the session; ARGV[1] the caller. nil: no live session. {0, owner}: another
# caller's, left alone. {1, message, ms left}: the caller's, deleted. A key without an expiry,
# an owner or a message (written by something else) is not a session, whoever presents it:
# dropped, and answered nil, never "another caller's" (a security event naming its owner).
# The DEL of a miss also has a replica (a demoted primary) refuse it, READONLY: a 503, never
# a 401 for a session the primary may hold.
_TAKE = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then
  redis.call('DEL', KEYS[1])
  return false
end
local message = redis.call('HGET', KEYS[1], 'message')
local left = redis.call('PTTL', KEYS[1])
if not message or left <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
if owner ~= ARGV[1] then return {0, owner} end
redis.call('DEL', KEYS[1])
return {1, message, left}
"""

# KEYS[1] the session; ARGV: owner, message, milliseconds left. 0 when a key is there
# already (a token live again, which it never should be): it is left as it is.
_PUT_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'message', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: What a caller is told when the store fails, by operation. `take` may have used the
#: session up before its answer was lost: the caller is told both ways out.
_FAILED: Mapping[StoreOperation, str] = {
    "open": "the issuance session could not be stored; start again with prepare-issue",
    "take": (
        "the issuance session could not be read; retry with the same stoken, and if that is "
        "refused 401, start again with POST /v1/domestic/prepare-issue"
    ),
    "put_back": "the issuance session could not be kept",
}


class RedisStokenStore:
    """Single-use issuance sessions with a TTL, bound to their owners, kept in Redis."""

    def __init__(
        self,
        client: Redis,
        *,
        ttl_seconds: float,
        key_prefix: str,
        timeout_seconds: float,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Use `client` (closed by `close`); `clock` measures a taken session's time left."""
        self._client = client
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._prefix = key_prefix
        self._timeout = timeout_seconds
        self._metrics = metrics
        self._clock = clock
        self._open = client.register_script(_OPEN)
        self._take = client.register_script(_TAKE)
        self._put_back = client.register_script(_PUT_BACK)
        self._following: asyncio.Task[None] | None = None

    def follow_sentinels(self, interval: float) -> None:
        """Ask the sentinels every `interval` seconds which server is the primary (the module).

        Nothing to do for a store on `redis_url`. Stopped by `close`.
        """
        if follows_sentinels(self._client) and self._following is None:
            self._following = asyncio.create_task(
                self._follow(interval), name="session-store-sentinels"
            )
            self._following.add_done_callback(_report_end)

    async def _follow(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            # Not answered: the next asking, or the next new connection's, tries again.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self._timeout):
                    await ask_sentinels(self._client)

    def key(self, stoken: str) -> str:
        """The Redis key of `stoken`'s session: the prefix and the token's SHA-256."""
        return self._prefix + hashlib.sha256(stoken.encode()).hexdigest()

    async def _run(self, operation: StoreOperation, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` within the timeout, the CPU permit given back; a failure is a 503.

        A put-back runs as a failing request leaves (maybe cancelled): it does not queue for a
        permit again afterwards, as a failed signer call does not.
        """
        replica = False
        try:
            async with io_wait(take_again=operation != "put_back"), asyncio.timeout(self._timeout):
                try:
                    return await call()
                except ReadOnlyError:
                    # Within the timeout: closing a connection may wait for its server.
                    replica = True
                    await self._drop_connections()
                    raise
        except (RedisError, OSError, TimeoutError) as exc:
            if self._metrics is not None:
                self._metrics.session_store_failures.labels(operation).inc()
            reason = str(exc) or type(exc).__name__
            message = "session store failed"
            if replica:
                message = "session store failed: the server is a replica; connections dropped"
            logger.warning(
                message,
                extra={"operation": operation, "error": type(exc).__name__, "reason": reason},
            )
            raise SessionStoreUnavailable(_FAILED[operation]) from exc

    async def _drop_connections(self) -> None:
        """Close the pool's idle connections; those in use close as they are given back.

        They all reach the server that answered `READONLY`: a demoted primary (the module).
        The one that answered is back in the pool already, among the idle ones.
        """
        await leave_connections(self._client.connection_pool, lambda _connection: True)

    async def open(self, prepare_issue_message: dict[str, Any], *, owner: str) -> str:
        """Store a session of `owner` for the TTL and return its new token (a random UUID)."""
        token = str(uuid.uuid4())
        message = orjson.dumps(prepare_issue_message)
        await self._run(
            "open",
            lambda: self._open(keys=[self.key(token)], args=[owner, message, self._ttl_ms]),
        )
        return token

    async def take(self, stoken: str, *, owner: str) -> IssuanceSession | NotOwner | None:
        """Remove and return `owner`'s live session of `stoken` (see the module).

        Its expiry is the time Redis had left for it counted from before the call: the wait
        for the answer, and for the CPU permit after it, is never added to the session.
        """
        asked_at = self._clock()
        reply = await self._run("take", lambda: self._take(keys=[self.key(stoken)], args=[owner]))
        if reply is None:
            return None
        if reply[0] == 0:
            return NotOwner(_text(reply[1]))
        message, left_ms = reply[1], int(reply[2])
        return IssuanceSession(orjson.loads(message), asked_at + left_ms / 1000, owner)

    async def put_back(self, stoken: str, session: IssuanceSession) -> float:
        """Store `session` again for the time it has left; 0.0 (nothing stored) if none is.

        Raises:
            SessionStoreUnavailable: the store did not answer; the session may be lost.
        """
        left = session.expires_at - self._clock()
        left_ms = int(left * 1000)
        if left_ms <= 0:
            return 0.0
        message = orjson.dumps(session.prepare_issue_message)
        await self._run(
            "put_back",
            lambda: self._put_back(keys=[self.key(stoken)], args=[session.owner, message, left_ms]),
        )
        return left

    async def probe(self) -> None:
        """Readiness: PING the server (raises when it does not answer)."""
        await self._client.ping()

    async def close(self) -> None:
        """Stop asking the sentinels; close the client and its connections (at shutdown)."""
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
        await close_client(self._client)


def _report_end(following: asyncio.Task[None]) -> None:
    """Log the asking of the sentinels ended by an error (a bug): it asks no more."""
    if not following.cancelled() and (error := following.exception()) is not None:
        logger.error("session store stopped asking its sentinels", exc_info=error)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def open_redis_store(
    settings: SessionStoreSettings, *, ttl_seconds: float, metrics: GatewayMetrics
) -> RedisStokenStore:
    """The Redis store `settings` describe; its files are read in a thread.

    Nothing is connected yet: the first session, or the readiness probe, connects.

    Raises:
        SessionStoreFilesError: its TLS or password file does not load (named by setting).
    """
    files = await asyncio.to_thread(read_store_files, settings)
    driver = await asyncio.to_thread(DriverInfo)  # reads the library's version (files)
    store = RedisStokenStore(
        redis_client(settings, files=files, driver=driver),
        ttl_seconds=ttl_seconds,
        key_prefix=settings.key_prefix,
        timeout_seconds=settings.timeout_seconds,
        metrics=metrics,
    )
    store.follow_sentinels(settings.sentinel_check_seconds)
    return store
