"""A Redis failover under a gateway keeping its sessions there, with real `redis-server`s.

Behind an address that follows the primary (a Kubernetes Service, here a TCP forwarder in the
test), the connections made before a failover stay on the old primary, now a replica: the
gateway drops them at the first `READONLY` and serves sessions on the new primary.
Skipped without `redis-server` on PATH (failed instead where `TEST_REQUIRE_REDIS=1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import ResponseError

from signing_gateway.errors import SessionStoreUnavailable
from signing_gateway.issuance.redis_client import TlsConnection
from signing_gateway.issuance.redis_stokens import open_redis_store
from signing_gateway.issuance.stoken import IssuanceSession
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.metrics import GatewayMetrics
from tests.api.observability.scrape import scrape
from tests.contract.gateway.gateway_process import GatewayProcess, running_gateway_process
from tests.contract.gateway.test_gateway_redis_sessions import (
    TIMEOUT_S,
    _assert_issued,
    _assert_store_unavailable,
    _env,
    _issue,
    _readiness,
    _store_env,
    _timed,
)
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.polling import until, until_answered
from tests.support.processes import free_port
from tests.support.redis_server import (
    RedisServer,
    RedisTls,
    running_redis_sentinel,
    running_redis_server,
    tls_files,
)
from tests.support.sessions import open_session

pytestmark = pytest.mark.timeout(60)

#: prepare-issues sent at once: they fill the gateway's pool with connections to the primary.
CONCURRENT = 4


class Forwarder:
    """A TCP forwarder on 127.0.0.1 standing for a Service: new connections go to `target`.

    A connection it forwarded stays with the server it reached when `target` changes, as a
    Kubernetes Service keeps established connections on the old pod.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._pipes: set[asyncio.Task[None]] = set()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        pipes = [
            asyncio.create_task(_pipe(reader, upstream_writer)),
            asyncio.create_task(_pipe(upstream_reader, writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self._pipes.difference_update(pipes)
        for end in (writer, upstream_writer):
            end.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Forwarder]:
        """Listen on a free port for the block; every forwarded connection is closed after."""
        server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            async with server:
                yield self
        finally:
            for pipe in list(self._pipes):
                pipe.cancel()
            await asyncio.gather(*self._pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until the reading end closes."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _replicating(replica: Redis) -> None:
    """Return once `replica`'s link to its primary is up (its first sync done)."""
    await until_answered(
        lambda: replica.info("replication"),
        lambda info: info.get("master_link_status") == "up",
        limit=10,
    )


def _client_context(tls: RedisTls) -> ssl.SSLContext:
    """A context trusting `tls`'s CA, with its client certificate (blocking: loads files)."""
    context = ssl.create_default_context(cafile=tls.ca)
    context.load_cert_chain(tls.client_cert, tls.client_key)
    return context


@contextlib.asynccontextmanager
async def _controls(*servers: RedisServer) -> AsyncIterator[list[Redis]]:
    """A client of each server (over TLS where it listens so), to change its role."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for server in servers:
            tls: dict[str, object] = {}
            if server.tls is not None:
                context = await asyncio.to_thread(_client_context, server.tls)
                tls = {"connection_class": TlsConnection, "tls_context": context}
            pool = ConnectionPool(host="127.0.0.1", port=server.port, decode_responses=True, **tls)
            clients.append(await stack.enter_async_context(Redis.from_pool(pool)))
        yield clients


async def test_connections_left_on_a_demoted_primary_are_dropped_at_its_first_readonly(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
):
    """After a failover behind a Service, only requests in flight fail; then sessions work.

    The gateway's pooled connections still reach the old primary, now a replica. The
    prepare-issues sent at once on them may be answered 503 `session-store-unavailable`
    (counted, logged once each as a replica's); every later one is 200, and sessions opened
    before the failover and after it are issued, with no restart. Before, every operation on
    those connections was answered READONLY, 503, for as long as they lived.
    """
    with running_redis_server() as old, running_redis_server() as new:
        async with (
            _controls(old, new) as (to_old, to_new),
            Forwarder(old.port).serving() as service,
        ):
            await to_new.replicaof("127.0.0.1", old.port)
            await _replicating(to_new)
            store = _store_env(old, REDIS_URL=f"redis://127.0.0.1:{service.port}/0")
            with running_gateway_process(_env(fakes, **store)) as gateway:
                async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                    opened = await asyncio.gather(
                        *(open_session(client) for _ in range(CONCURRENT))
                    )
                    assert await to_old.wait(1, 1000) == 1  # the replica has them

                    await to_new.replicaof("NO", "ONE")
                    await to_old.replicaof("127.0.0.1", new.port)
                    service.target = new.port
                    in_flight = await asyncio.gather(
                        *(client.post("/v1/domestic/prepare-issue") for _ in range(CONCURRENT))
                    )
                    failed = [a.status_code for a in in_flight if a.status_code != 200]
                    assert set(failed) <= {503}, [a.text for a in in_flight]
                    later = [
                        (await client.post("/v1/domestic/prepare-issue")).status_code
                        for _ in range(CONCURRENT)
                    ]
                    assert later == [200] * CONCURRENT
                    _assert_issued(await _issue(client, opened[0]), opened[0], fakes[1])
                    session = await open_session(client)
                    _assert_issued(await _issue(client, session), session, fakes[1])
                    metrics = await scrape(client)
                failures = metrics.value("gateway_session_store_failures_total", operation="open")
                assert failures == len(failed)
                replica_lines = [
                    line for line in gateway.log().splitlines() if "the server is a replica" in line
                ]
                assert len(replica_lines) == len(failed), gateway.log()


SERVICE = "signing-sessions"


@contextlib.asynccontextmanager
async def _primary_replica_sentinel(
    files: RedisTls | None,
) -> AsyncIterator[tuple[Redis, Redis, RedisServer, RedisServer, RedisServer]]:
    """A primary, its replica in sync, and a sentinel watching the primary as `SERVICE`.

    Yields a client of the primary and one of the replica, then the primary, the replica and
    the sentinel.
    """
    with (
        running_redis_server(files) as old,
        running_redis_server(files) as new,
    ):
        async with _controls(old, new) as (to_old, to_new):
            await to_new.replicaof("127.0.0.1", old.port)
            await _replicating(to_new)
            with running_redis_sentinel(old, SERVICE) as sentinel:
                yield to_old, to_new, old, new, sentinel


async def _promoted(sentinel: Redis, new_port: int) -> None:
    """Force a failover of `SERVICE`; return once the sentinel names `new_port` the primary.

    The old primary serves on as one until the sentinel demotes it: once it has reported
    itself primary for 8 s, at the sentinel's next look at it (every 10 s): 8-20 s, and over
    25 s on a loaded machine.
    """

    async def forced() -> bool:
        # Refused (NOGOODSLAVE) until the sentinel has seen the replica's INFO.
        with contextlib.suppress(ResponseError):
            return bool(await sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE))
        return False

    await until_answered(forced, bool, limit=15)
    # What redis-py reads (`SENTINEL MASTERS`, as the gateway's pool does): it names the new
    # primary once the failover has ended, ~0.1 s after `GET-MASTER-ADDR-BY-NAME` does.
    await until_answered(
        lambda: sentinel.sentinel_master(SERVICE),
        lambda state: int(state["port"]) == new_port,
        limit=15,
    )


async def _failed_over(sentinel: Redis, old: Redis, new_port: int) -> None:
    """Force a failover of `SERVICE`; return once `old` is a replica and `new_port` primary.

    Rather than wait for the sentinel's demotion (`_promoted`), the old primary is sent what
    the sentinel would send it (`REPLICAOF` the new one, its normal clients closed, in one
    transaction): the gateway's connections to it are closed, as at the sentinel's demotion.
    """
    await _promoted(sentinel, new_port)
    async with old.pipeline(transaction=True) as demotion:
        demotion.execute_command("REPLICAOF", "127.0.0.1", str(new_port))
        demotion.execute_command("CLIENT", "KILL", "TYPE", "normal")
        await demotion.execute()
    assert str((await old.role())[0]) == "slave"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_sessions_survive_a_sentinel_failover_without_a_restart(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path, tls: bool
):
    """With sentinels, a forced failover moves the gateway to the new primary by itself.

    A session opened before it (replicated: WAIT) is issued after it, taken on the new
    primary; new sessions open and are issued; no restart. Over TLS (rediss://) the sentinels
    and both servers are reached with the CA bundle. Before, the store had one fixed address.
    """
    files = tls_files(tmp_path, mutual=False) if tls else None
    async with (
        _primary_replica_sentinel(files) as (to_old, to_new, _, new, sentinel),
        _following_gateway(fakes, sentinel, files, TIMEOUT_SECONDS=str(TIMEOUT_S)) as running,
    ):
        _, to_sentinel, client = running
        opened = await open_session(client)
        assert await to_old.wait(1, 1000) == 1  # the replica has it

        await _failed_over(to_sentinel, to_old, new.port)
        answer = await _issue(client, opened)
        _assert_issued(answer, opened, fakes[1])
        assert await to_new.dbsize() == 0  # taken there: its key is gone
        session = await open_session(client)
        _assert_issued(await _issue(client, session), session, fakes[1])


@contextlib.asynccontextmanager
async def _following_gateway(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
    sentinel: RedisServer,
    files: RedisTls | None = None,
    **store: str,
) -> AsyncIterator[tuple[GatewayProcess, Redis, httpx.AsyncClient]]:
    """A gateway on the primary `sentinel` names, its store's `store` settings added.

    Over TLS (rediss://) with `files`, the sentinel and the servers reached with their CA
    bundle. Yields the gateway (logging at INFO), a client of the sentinel and one of the
    gateway.
    """
    scheme = "rediss" if files is not None else "redis"
    settings = {
        "KIND": "redis",
        "SENTINELS": f'["{scheme}://127.0.0.1:{sentinel.port}"]',
        "SENTINEL_SERVICE": SERVICE,
    }
    if files is not None:
        settings["CA_BUNDLE"] = str(files.ca)
    else:  # the primary they name could be anywhere
        settings["ALLOW_PLAIN"] = "true"
    env = {f"SIGNING_GATEWAY_SESSION_STORE__{k}": v for k, v in {**settings, **store}.items()}
    with running_gateway_process(_env(fakes, SIGNING_GATEWAY_LOG_LEVEL="INFO", **env)) as gateway:
        async with (
            _controls(sentinel) as (to_sentinel,),
            httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client,
        ):
            yield gateway, to_sentinel, client


async def test_a_replaced_primary_still_up_is_left_before_its_demotion(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
):
    """Once the sentinels name another primary, sessions open there, the old one still up.

    After a forced failover the old primary serves on until the sentinels demote it, some
    10 s later (for as long as a partition keeps them from it). The gateway's connections to
    it, opened before, kept opening sessions there, each lost at its demotion; now they are
    closed within `sentinel_check_seconds` of the sentinels naming the new one.
    """
    async with (
        _primary_replica_sentinel(None) as (to_old, to_new, _, new, sentinel),
        _following_gateway(fakes, sentinel, SENTINEL_CHECK_SECONDS="0.2") as running,
    ):
        gateway, to_sentinel, client = running
        # Sessions opened at once: the pool keeps a few connections to the old one.
        await asyncio.gather(*(open_session(client) for _ in range(CONCURRENT)))
        await _promoted(to_sentinel, new.port)
        promoted_at = time.monotonic()
        # Nothing in use meanwhile: the connections left on the old one are idle ones.
        await until(lambda: "session store primary moved" in gateway.log(), 5)
        moved_after = time.monotonic() - promoted_at
        before = await to_new.dbsize()
        await asyncio.gather(*(open_session(client) for _ in range(CONCURRENT)))
        assert await to_new.dbsize() == before + CONCURRENT
        # Still primary: no demotion closed the gateway's connections to it.
        assert str((await to_old.role())[0]) == "master"
    assert moved_after < 2, moved_after


async def test_connections_in_use_as_the_primary_moves_are_closed_as_they_come_back(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
):
    """Connections busy on the old primary as the sentinels name another close after their use.

    The old primary is paused meanwhile, so its operations hold their connections through the
    asking. Put back in the pool still open to it, they would serve the next sessions there: no
    new connection asks the sentinels, and the next asking is 2 s away.
    """
    async with (
        _primary_replica_sentinel(None) as (to_old, to_new, old, new, sentinel),
        _following_gateway(
            fakes, sentinel, SENTINEL_CHECK_SECONDS="2", TIMEOUT_SECONDS="8"
        ) as running,
    ):
        gateway, to_sentinel, client = running
        await asyncio.gather(*(open_session(client) for _ in range(CONCURRENT)))
        old.pause()
        try:
            held = [asyncio.create_task(open_session(client)) for _ in range(CONCURRENT)]
            await _promoted(to_sentinel, new.port)
            await until(lambda: "session store primary moved" in gateway.log(), 5)
        finally:
            old.resume()
        await asyncio.gather(*held)  # opened on the old one, which took them paused
        before = await to_new.dbsize()
        await asyncio.gather(*(open_session(client) for _ in range(CONCURRENT)))
        assert await to_new.dbsize() == before + CONCURRENT
        assert str((await to_old.role())[0]) == "master"


async def test_no_sentinel_answering_is_a_503_within_the_timeout(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess],
):
    """A sentinel that takes the connection and never answers, another that refuses it.

    prepare-issue is answered 503 `session-store-unavailable` within the store's timeout
    (finding the primary counts in it), and /readyz shows the store down.
    """
    async with _silent_listener() as silent:
        sentinels = f'["redis://127.0.0.1:{silent}", "redis://127.0.0.1:{free_port()}"]'
        env = {
            "SIGNING_GATEWAY_SESSION_STORE__KIND": "redis",
            "SIGNING_GATEWAY_SESSION_STORE__SENTINELS": sentinels,
            "SIGNING_GATEWAY_SESSION_STORE__SENTINEL_SERVICE": SERVICE,
            "SIGNING_GATEWAY_SESSION_STORE__TIMEOUT_SECONDS": str(TIMEOUT_S),
            "SIGNING_GATEWAY_SESSION_STORE__ALLOW_PLAIN": "true",
        }
        async with _gateway_client(_env(fakes, **env)) as client:
            _assert_store_unavailable(*await _timed(client.post("/v1/domestic/prepare-issue")))
            await _readiness(client, "down")


@contextlib.asynccontextmanager
async def _gateway_client(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway process started with `env`, for the block."""
    with running_gateway_process(env) as gateway:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            yield client


@contextlib.asynccontextmanager
async def _silent_listener() -> AsyncIterator[int]:
    """A port on 127.0.0.1 that takes connections and never answers, for the block."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        async with server:
            yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.transport.abort()


async def test_the_store_finds_its_primary_through_tls_sentinels_without_blocking_the_loop(
    tmp_path: Path,
):
    """In this process, under blockbuster: a store on rediss:// sentinels opens and takes.

    Its TLS context and passwords are read in a thread at opening; asking the sentinel and
    connecting to the primary it names block nothing on the loop. Closed, it leaves no
    connection open to the sentinel either.
    """
    files = tls_files(tmp_path, mutual=True)
    with (
        running_redis_server(files) as primary,
        running_redis_sentinel(primary, SERVICE) as sentinel,
    ):
        settings = _tls_sentinel_store(
            files, sentinel, client_cert=files.client_cert, client_key=files.client_key
        )
        store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
        try:
            token = await store.open({"issuerNonce": "n1"}, owner="backend-1")
            session = await store.take(token, owner="backend-1")
            assert isinstance(session, IssuanceSession)
            assert session.prepare_issue_message == {"issuerNonce": "n1"}
            await store.probe()
        finally:
            await store.close()
        await _no_gateway_connection(sentinel)


def _tls_sentinel_store(
    files: RedisTls, sentinel: RedisServer, **more: object
) -> SessionStoreSettings:
    """A store on `sentinel` over TLS, trusting `files`' CA, with `more` settings."""
    return SessionStoreSettings(
        kind="redis",
        sentinels=[f"rediss://127.0.0.1:{sentinel.port}"],
        sentinel_service=SERVICE,
        ca_bundle=files.ca,
        **more,  # type: ignore[arg-type]
    )


async def _no_gateway_connection(sentinel: RedisServer) -> None:
    """Return once `sentinel` has no connection of the gateway's left (fails after 5 s)."""
    async with _controls(sentinel) as (to_sentinel,):

        async def gateways() -> list[str]:
            clients = await to_sentinel.client_list()
            return [c["name"] for c in clients if c["name"] == "signing-gateway"]

        await until_answered(gateways, lambda names: names == [], limit=5)


async def test_a_burst_of_new_connections_waits_out_a_silent_sentinel_once():
    """Operations opening connections at once, the first sentinel silent: all are served.

    They share one asking of the sentinels, which moves on from the silent one after
    `connect_timeout_seconds`. Before, each connection asked on its own and queued for the
    silent sentinel's two connections: all but two of them failed (503) within the timeout,
    while the second sentinel would have answered.
    """
    with (
        running_redis_server() as primary,
        running_redis_sentinel(primary, SERVICE) as sentinel,
    ):
        async with _silent_listener() as silent:
            settings = SessionStoreSettings(
                kind="redis",
                sentinels=[f"redis://127.0.0.1:{silent}", f"redis://127.0.0.1:{sentinel.port}"],
                sentinel_service=SERVICE,
                connect_timeout_seconds=0.5,
                timeout_seconds=1.0,
                allow_plain=True,
            )
            store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
            try:
                opened = await asyncio.gather(
                    *(store.open({"issuerNonce": "n"}, owner="backend-1") for _ in range(16)),
                    return_exceptions=True,
                )
            finally:
                await store.close()
            assert [type(o) for o in opened] == [str] * 16, opened


async def test_a_take_on_a_demoted_primary_is_a_failure_even_when_it_finds_no_session():
    """A take that reaches a replica (a demoted primary) and finds no key is a 503, not a 401.

    The session may be on the new primary and not yet on the replica: a 401 would have the app
    start again for a live session. A replica refuses the script (READONLY) as it would a
    take that found one. Before, a take that found nothing wrote nothing and was answered
    "no session" (401 `stoken-invalid`).
    """
    with running_redis_server() as primary, running_redis_server() as replica:
        async with _controls(replica) as (to_replica,):
            await to_replica.replicaof("127.0.0.1", primary.port)
            await _replicating(to_replica)
            settings = SessionStoreSettings(kind="redis", redis_url=replica.url)
            store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
            try:
                with pytest.raises(SessionStoreUnavailable):
                    await store.take("3f1c0a4e-0000-4000-8000-000000000000", owner="backend-1")
            finally:
                await store.close()


async def test_the_store_asks_sentinels_as_their_acl_user(tmp_path: Path):
    """Sentinels that know the gateway only as an ACL user (Redis 6.2+) name it the primary.

    `sentinel_username` with `sentinel_password_file` is their AUTH, as `redis_username` is
    the primary's. Before, only a `requirepass` password could be given: such sentinels
    refused every asking, and every operation was answered 503.
    """
    password = tmp_path / "sentinel-password"
    password.write_text("sentinel-secret\n")
    with (
        running_redis_server() as primary,
        running_redis_sentinel(primary, SERVICE) as sentinel,
    ):
        user = ["ACL", "SETUSER", "signing-gateway", "on", ">sentinel-secret"]
        commands = ["+sentinel|masters", "+client|setname"]  # as docs/operations.md says
        assert sentinel.command([*user, *commands], ["ACL", "SETUSER", "default", "off"]) == [
            b"+OK",
            b"+OK",
        ]
        settings = SessionStoreSettings(
            kind="redis",
            sentinels=[f"redis://127.0.0.1:{sentinel.port}"],
            sentinel_service=SERVICE,
            sentinel_username="signing-gateway",
            sentinel_password_file=password,
            allow_plain=True,
        )
        store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
        try:
            token = await store.open({"issuerNonce": "n1"}, owner="backend-1")
            session = await store.take(token, owner="backend-1")
        finally:
            await store.close()
        assert isinstance(session, IssuanceSession)
        assert session.prepare_issue_message == {"issuerNonce": "n1"}


async def test_closing_the_store_closes_the_sentinels_connections_when_the_primary_hangs(
    tmp_path: Path,
):
    """The primary stopped (its TLS goodbye never comes): closing ends, sentinels closed too.

    Before, the primary's connection timing out its close raised out of the store's close (a
    failed shutdown), and the connections to the sentinels were left open.
    """
    files = tls_files(tmp_path, mutual=False)
    with (
        running_redis_server(files) as primary,
        running_redis_sentinel(primary, SERVICE) as sentinel,
    ):
        settings = _tls_sentinel_store(files, sentinel, connect_timeout_seconds=0.5)
        store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
        await store.open({"issuerNonce": "n1"}, owner="backend-1")
        primary.pause()
        try:
            await asyncio.wait_for(store.close(), timeout=5)
        finally:
            primary.resume()
        await _no_gateway_connection(sentinel)


async def test_dropping_a_demoted_primarys_connections_counts_in_the_operations_timeout(
    tmp_path: Path,
):
    """The operation answered READONLY fails within `timeout_seconds`, its drop included.

    Behind the address (over TLS), one pooled connection reaches the demoted primary and an
    idle one a server that stopped answering: closing that one waits for a TLS goodbye that
    never comes. Before, the drop ran after the operation's timeout, which it outlasted by
    `connect_timeout_seconds`.
    """
    files = tls_files(tmp_path, mutual=False)
    with (
        running_redis_server(files) as demoted,
        running_redis_server(files) as hung,
        running_redis_server(files) as new,
    ):
        async with (
            _controls(demoted) as (to_demoted,),
            Forwarder(hung.port).serving() as service,
        ):
            settings = SessionStoreSettings(
                kind="redis",
                redis_url=f"rediss://127.0.0.1:{service.port}/0",
                ca_bundle=files.ca,
                timeout_seconds=1.0,
                connect_timeout_seconds=3.0,
            )
            store = await open_redis_store(settings, ttl_seconds=60, metrics=GatewayMetrics())
            try:
                await store.open({"issuerNonce": "n1"}, owner="backend-1")  # to `hung`
                # A second connection, to `demoted`, given back after the first: the next
                # operation takes it (the pool hands out the last given back).
                service.target = demoted.port
                demoted.pause()
                first = asyncio.create_task(store.open({"issuerNonce": "n2"}, owner="backend-1"))
                second = asyncio.create_task(store.open({"issuerNonce": "n3"}, owner="backend-1"))
                await asyncio.wait([first, second], return_when=asyncio.FIRST_COMPLETED)
                demoted.resume()
                await asyncio.gather(first, second)
                await to_demoted.replicaof("127.0.0.1", new.port)
                hung.pause()
                started = time.monotonic()
                with pytest.raises(SessionStoreUnavailable):
                    await store.open({"issuerNonce": "n4"}, owner="backend-1")
                assert time.monotonic() - started < 1.0 + 0.5
            finally:
                hung.resume()
                await store.close()
