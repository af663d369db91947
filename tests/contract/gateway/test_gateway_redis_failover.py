"""A Redis failover under a gateway keeping its sessions there, with real `redis-server`s.

Behind an address that follows the primary (a Kubernetes Service, here a TCP forwarder in the
test), the connections made before a failover stay on the old primary, now a replica: the
gateway drops them at the first `READONLY` and serves sessions on the new primary.
Skipped without `redis-server` on PATH (failed instead where `TEST_REQUIRE_REDIS=1`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from tests.api.observability.scrape import scrape
from tests.contract.gateway.gateway_process import running_gateway_process
from tests.contract.gateway.test_gateway_redis_sessions import (
    _assert_issued,
    _env,
    _issue,
    _store_env,
)
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.polling import until_answered
from tests.support.redis_server import RedisServer, running_redis_server
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


@contextlib.asynccontextmanager
async def _controls(*servers: RedisServer) -> AsyncIterator[list[Redis]]:
    """A client of each server, to change its role."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(Redis(port=server.port, decode_responses=True))
            for server in servers
        ]
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
