"""The Redis session store: what it writes to the server, and how it fails.

The promises it shares with the in-memory store are pinned on both in test_stoken.py; here,
what only a shared store has: keys that give no token away, the TTL kept by Redis, and a
server that is down or hangs (503 `session-store-unavailable`, counted, logged, never retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn

import pytest
import redis.utils
from fakeredis.aioredis import FakeRedis
from redis.exceptions import ConnectionError as RedisConnectionError

from signing_gateway.errors import SessionStoreUnavailable, SignerUnavailable
from signing_gateway.issuance.redis_stokens import open_redis_store
from signing_gateway.issuance.session import SESSION_LOST, HeldSession
from signing_gateway.issuance.stoken import IssuanceSession, NotOwner
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.metrics import GatewayMetrics
from tests.support.polling import until
from tests.support.stoken_stores import KEY_PREFIX, Stores, redis_on_clock

OWNER, OTHER = "backend-1", "backend-2"
LOGGER = "signing_gateway.issuance.redis_stokens"


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stores]:
    """Redis stores on one fake server, whose clock is the test's."""
    stores = Stores("redis")
    with redis_on_clock(monkeypatch, stores.clock):
        yield stores


def _failures(metrics: GatewayMetrics, operation: str) -> float:
    """`gateway_session_store_failures_total{operation}` (0 for a series not yet created)."""
    value = metrics.registry.get_sample_value(
        "gateway_session_store_failures_total", {"operation": operation}
    )
    return value or 0.0


async def test_the_key_is_the_prefix_and_a_sha256_of_the_stoken(stores: Stores):
    """Pin that whoever reads the server learns no stoken: its keys and values hold none."""
    store = stores.redis()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    client = stores.client()
    assert await client.keys("*") == [
        (KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()).encode()
    ]
    (key,) = await client.keys("*")
    stored = await client.hgetall(key)
    assert token.encode() not in key + b"".join(stored.values())
    assert stored[b"owner"] == OWNER.encode()


async def test_the_ttl_is_kept_by_redis(stores: Stores):
    """A new session's key expires in Redis after the TTL, to the millisecond."""
    store = stores.redis(ttl_seconds=60)
    token = await store.open({}, owner=OWNER)
    assert await stores.client().pttl(store.key(token)) == 60_000


async def test_a_put_back_lives_the_time_it_had_left_not_a_new_ttl(stores: Stores):
    """Pin that a put-back never lengthens a session: its key lives what was left, less the wait.

    Taken at 45 s of 60, held for 5 s, it goes back for the 10 s left, not for 60 again.
    """
    store = stores.redis(ttl_seconds=60)
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    stores.clock.now += 45
    session = await store.take(token, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    stores.clock.now += 5
    assert await store.put_back(token, session) == pytest.approx(10)
    assert await stores.client().pttl(store.key(token)) == 10_000


async def test_the_time_a_take_waits_for_its_answer_is_not_added_to_the_session(
    stores: Stores,
):
    """Pin that a take's wait (Redis's answer, then the CPU permit) never lengthens a session.

    The answer comes 2 s after the take was sent: the session still ends 60 s after it was
    opened, and goes back for the 58 s left. Before, its time left was counted from when the
    answer was in: it went back for 60 s, lengthened by each take's wait.
    """
    store = stores.redis(ttl_seconds=60)
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    script = store._take

    async def answered_late(**given: Any) -> Any:
        reply = await script(**given)
        stores.clock.now += 2
        return reply

    store._take = answered_late  # type: ignore[assignment]
    session = await store.take(token, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    assert session.expires_at == pytest.approx(stores.clock.now - 2 + 60)
    assert await store.put_back(token, session) == pytest.approx(58)
    assert await stores.client().pttl(store.key(token)) == 58_000


async def test_a_put_back_onto_a_live_key_leaves_it_as_it_is(stores: Stores):
    """A token live again (it never should be) keeps its value and expiry: nothing is written."""
    store = stores.redis(ttl_seconds=60)
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    session = await store.take(token, owner=OWNER)
    assert isinstance(session, IssuanceSession)
    assert await store.put_back(token, session) > 0
    stores.clock.now += 20
    later = IssuanceSession({"issuerNonce": "n2"}, stores.clock.now + 60, OTHER)
    assert await store.put_back(token, later) > 0
    client = stores.client()
    assert await client.pttl(store.key(token)) == 40_000
    assert await client.hget(store.key(token), "owner") == OWNER.encode()


@pytest.mark.parametrize(
    "caller", [OWNER, OTHER], ids=["presented-by-its-owner", "presented-by-another"]
)
@pytest.mark.parametrize(
    "fields",
    [{"owner": OWNER, "message": "{}"}, {"owner": OWNER}],
    ids=["without-expiry", "without-message"],
)
async def test_a_key_that_is_not_a_session_is_not_taken(
    stores: Stores, fields: dict[str, str], caller: str
):
    """Pin that a key with no expiry or no message is no session, whoever presents it.

    Such a hash (written by something else) is dropped and answered None. To another caller
    it was answered `NotOwner`: reported as a live session of its owner (a security event)
    and left in place for good.
    """
    store = stores.redis()
    client = stores.client()
    token = "3f1c0a4e-0000-4000-8000-000000000000"
    await client.hset(store.key(token), mapping=fields)
    if "message" not in fields:
        await client.pexpire(store.key(token), 60_000)
    assert await store.take(token, owner=caller) is None
    assert await client.exists(store.key(token)) == 0


class _Failing(FakeRedis):
    """A client whose every command fails (`fail`), counting the commands."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    async def execute_command(self, *_args: Any, **_options: Any) -> NoReturn:
        self.calls += 1
        await self.fail()

    async def fail(self) -> NoReturn:
        raise NotImplementedError


class _Broken(_Failing):
    """Each command fails as a lost connection would."""

    async def fail(self) -> NoReturn:
        raise RedisConnectionError("Connection reset by peer")


class _Hanging(_Failing):
    """Each command waits for an answer that never comes."""

    async def fail(self) -> NoReturn:
        await asyncio.Event().wait()
        raise AssertionError("an answer that never comes came")


_SESSION = IssuanceSession({"issuerNonce": "n1"}, 1060.0, OWNER)
#: Each operation, run on a store, and the detail its failure tells the caller.
OPERATIONS = {
    "open": (
        lambda store: store.open({"issuerNonce": "n1"}, owner=OWNER),
        "the issuance session could not be stored; start again with prepare-issue",
    ),
    "take": (
        lambda store: store.take("3f1c0a4e-0000-4000-8000-000000000000", owner=OWNER),
        (
            "the issuance session could not be read; retry with the same stoken, and if that "
            "is refused 401, start again with POST /v1/domestic/prepare-issue"
        ),
    ),
    "put_back": (
        lambda store: store.put_back("3f1c0a4e-0000-4000-8000-000000000000", _SESSION),
        "the issuance session could not be kept",
    ),
}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("client", [_Broken, _Hanging], ids=["connection-error", "hang"])
async def test_a_failing_store_is_a_503_counted_and_logged_once(
    stores: Stores,
    caplog: pytest.LogCaptureFixture,
    client: type[_Failing],
    operation: str,
):
    """Pin how an operation fails: SessionStoreUnavailable with its detail, counted, logged.

    A hang is cut at timeout_seconds, and neither is retried: the client sees one command
    (a `take` whose answer was lost may have used the session up).
    """
    run, detail = OPERATIONS[operation]
    failing = stores.client(client)
    store = stores.redis(timeout_seconds=0.2, client=failing)
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        pytest.raises(SessionStoreUnavailable) as refused,
    ):
        await run(store)
    took = time.monotonic() - started
    problem = refused.value
    assert (problem.status, problem.slug, problem.detail) == (
        503,
        "session-store-unavailable",
        detail,
    )
    assert problem.headers() == {"Retry-After": "1"}
    assert failing.calls == 1
    assert _failures(stores.metrics, operation) == 1
    others = [o for o in OPERATIONS if o != operation]
    assert [_failures(stores.metrics, o) for o in others] == [0, 0]
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    expected = "TimeoutError" if client is _Hanging else "ConnectionError"
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "session store failed")
    assert (record.operation, record.error) == (operation, expected)  # type: ignore[attr-defined]
    if client is _Hanging:
        assert 0.18 <= took < 1.2, took
    else:
        assert took < 0.2, took


async def test_another_callers_take_of_a_live_session_leaves_it_in_redis(stores: Stores):
    """Refused to another caller, the session's key stays with its value and its TTL."""
    store = stores.redis(ttl_seconds=60)
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    stores.clock.now += 10
    assert await store.take(token, owner=OTHER) == NotOwner(OWNER)
    client = stores.client()
    assert await client.pttl(store.key(token)) == 50_000
    assert await client.hget(store.key(token), "owner") == OWNER.encode()


@pytest.fixture
async def refusing_listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener on 127.0.0.1 that closes each connection at once: its port and a count."""
    accepted: list[int] = []

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], accepted


async def test_the_gateways_client_connects_once_and_reads_no_package_files_on_the_loop(
    refusing_listener: tuple[int, list[int]],
):
    """Pin the client `open_redis_store` builds: one connection per failed operation, no I/O.

    A client with retries (redis-py's own default makes 10) would try again on a new
    connection. And at its first connection, in the first request to use the store, the
    client read its own version from its package's metadata: files read on the event loop.
    """
    redis.utils.get_lib_version.cache_clear()  # as in a process that has not connected yet
    port, accepted = refusing_listener
    settings = SessionStoreSettings(
        kind="redis", redis_url=f"redis://127.0.0.1:{port}/0", timeout_seconds=2
    )
    store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
    try:
        with pytest.raises(SessionStoreUnavailable):
            await store.take("3f1c0a4e-0000-4000-8000-000000000000", owner=OWNER)
    finally:
        await store.close()
    assert len(accepted) == 1


async def test_a_session_the_store_cannot_take_back_leaves_the_requests_own_error(
    stores: Stores,
):
    """Pin that a put-back the store fails keeps the request's answer, advising to start again.

    The caller is told why its request failed (here the signer refused it), not that the
    store failed afterwards; the session may be lost, so it is not told to retry with it.
    """
    store = stores.redis()
    token = await store.open({"issuerNonce": "n1"}, owner=OWNER)
    refused = SignerUnavailable("domestic: the signer cannot be reached", part="domestic")

    async def issue() -> None:
        async with HeldSession(store, token, owner=OWNER):
            stores.server.connected = False  # down once the session was taken
            raise refused

    with pytest.raises(SignerUnavailable) as answered:
        await issue()
    assert answered.value is refused
    assert refused.detail.startswith("domestic: the signer cannot be reached")
    assert refused.detail.endswith(SESSION_LOST)
    assert _failures(stores.metrics, "put_back") == 1


class _RespListener:
    """A TCP listener on 127.0.0.1 speaking just enough RESP for a client to connect and PING.

    Silent, it reads every command and answers none. It notes each connection, and each one
    the client hung up.
    """

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.opened = 0
        self.hung_up = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the commands of one connection until the client or `close_all` ends it."""
        self.opened += 1
        self._writers.add(writer)
        try:
            while (command := await _read_command(reader)) is not None:
                if not self.silent:
                    writer.write(_REPLIES.get(command[0].upper(), b"+OK\r\n"))
            self.hung_up += 1
        except ConnectionError:
            pass  # closed by close_all
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close_all(self) -> None:
        """Close the connections the clients left open, and wait for their handlers."""
        for writer in list(self._writers):
            writer.transport.abort()
        await until(lambda: not self._writers, limit=2)


#: What the listener answers, by command: the handshake (RESP3's HELLO) and PING.
_REPLIES = {b"HELLO": b"%1\r\n$5\r\nproto\r\n:3\r\n", b"PING": b"+PONG\r\n"}


async def _read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One command a client sent (an array of bulk strings), None once it hung up."""
    header = await reader.readline()
    if not header:
        return None
    parts = []
    for _ in range(int(header[1:])):
        size = int((await reader.readline())[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts


@contextlib.asynccontextmanager
async def _listening(listener: _RespListener) -> AsyncIterator[SessionStoreSettings]:
    """Settings of a store on `listener`, served on a free port while the block runs."""
    server = await asyncio.start_server(listener.serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        try:
            yield SessionStoreSettings(
                kind="redis", redis_url=f"redis://127.0.0.1:{port}/0", timeout_seconds=0.3
            )
        finally:
            await listener.close_all()


async def test_closing_the_store_closes_its_connections():
    """Pin that `close` (at shutdown) hangs up every connection the store opened.

    The client was built on a pool of the store's own, which redis-py leaves open when the
    client is closed: the connections stayed open until the process exited.
    """
    listener = _RespListener()
    async with _listening(listener) as settings:
        store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
        await store.probe()
        assert (listener.opened, listener.hung_up) == (1, 0)
        await store.close()
        await until(lambda: listener.hung_up == 1, limit=2)


async def test_the_gateways_client_cuts_a_hang_at_timeout_seconds():
    """A server that takes the connection and never answers costs `timeout_seconds`, a 503."""
    listener = _RespListener(silent=True)
    async with _listening(listener) as settings:
        store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
        started = time.monotonic()
        try:
            with pytest.raises(SessionStoreUnavailable):
                await store.take("3f1c0a4e-0000-4000-8000-000000000000", owner=OWNER)
            took = time.monotonic() - started
        finally:
            await store.close()
    assert 0.27 <= took < 1.3, took
    assert listener.opened == 1


@contextlib.asynccontextmanager
async def _store_on_sentinel(
    listener: _RespListener, **settings: float
) -> AsyncIterator[SessionStoreSettings]:
    """Settings of a store whose one sentinel is `listener`, served while the block runs."""
    server = await asyncio.start_server(listener.serve, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield SessionStoreSettings(
            kind="redis",
            sentinels=[f"redis://127.0.0.1:{port}"],
            sentinel_service="sessions",
            allow_plain=True,
            **settings,
        )


async def test_sentinels_that_do_not_answer_are_asked_again_and_closing_stops_the_asking():
    """The store asks its sentinels for the primary every `sentinel_check_seconds`.

    One that takes the connection and never answers fails an asking, not the asking after it,
    and `close` (at shutdown) stops it at once, the sentinel's connections hung up.
    """
    listener = _RespListener(silent=True)
    checks = {
        "timeout_seconds": 0.3,
        "connect_timeout_seconds": 0.1,
        "sentinel_check_seconds": 0.05,
    }
    async with _store_on_sentinel(listener, **checks) as settings:
        store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
        try:
            await until(lambda: listener.opened >= 3, limit=5)
        finally:
            started = time.monotonic()
            await store.close()
            closed_in = time.monotonic() - started
        await until(lambda: listener.hung_up == listener.opened, limit=2)
    assert closed_in < 0.5, closed_in


async def test_an_asking_ended_by_a_bug_is_logged_and_closing_still_closes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """An error no sentinel explains (a bug) ends the asking: an ERROR says so, not silence."""

    async def broken(client: object) -> NoReturn:
        raise RuntimeError("a bug")

    monkeypatch.setattr("signing_gateway.issuance.redis_stokens.ask_sentinels", broken)
    listener = _RespListener(silent=True)
    async with _store_on_sentinel(listener, sentinel_check_seconds=0.01) as settings:
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
            try:
                await until(lambda: "stopped asking its sentinels" in caplog.text, limit=2)
            finally:
                await store.close()
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "a bug"
