"""Redis memory per issuance session, as the gateway's Redis store writes them.

``python -m bench.session_memory [--sessions N]``: starts a throwaway ``redis-server`` on a
free loopback port (`procs.redis_server`: no persistence), opens N sessions through
`RedisStokenStore` (a prepare-issue message of the shape a domestic signer sends, 28
credentials, one owner), and prints `INFO memory`'s ``used_memory`` before and after, and the
difference divided by N: what a session costs the server's ``maxmemory``
(docs/operations.md, "Issuance sessions in Redis").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import tempfile
from pathlib import Path

from redis.asyncio import Redis

from bench.procs import redis_server, stop_children_on_sigterm
from signing_gateway.issuance.redis_stokens import open_redis_store
from signing_gateway.issuance.store_settings import SessionStoreSettings
from signing_gateway.observability.metrics import GatewayMetrics

#: Sessions opened at once: the store's connection pool bounds what is in flight anyway.
BATCH = 500
#: Long enough that none expires during the run.
TTL_SECONDS = 600


def _message() -> dict[str, object]:
    """A prepare-issue message: the issuer's key id, an 80-bit nonce, the credential amount."""
    nonce = base64.b64encode(secrets.token_bytes(10)).decode()
    return {"issuerPkId": "VWS-CC-1", "issuerNonce": nonce, "credentialAmount": 28}


async def _server_memory(client: Redis) -> tuple[str, int]:
    """The server's version and `used_memory`."""
    server, memory = await client.info("server"), await client.info("memory")
    return str(server["redis_version"]), int(memory["used_memory"])


async def measure(url: str, sessions: int) -> tuple[str, int, int]:
    """The server's version, and `used_memory` before and after opening `sessions` sessions."""
    settings = SessionStoreSettings(kind="redis", redis_url=url)
    store = await open_redis_store(settings, ttl_seconds=TTL_SECONDS, metrics=GatewayMetrics())
    async with Redis.from_url(url) as client:
        version, before = await _server_memory(client)
        for start in range(0, sessions, BATCH):
            count = min(BATCH, sessions - start)
            opened = (store.open(_message(), owner="coronacheck-backend") for _ in range(count))
            await asyncio.gather(*opened)
        _, after = await _server_memory(client)
        if (stored := await client.dbsize()) != sessions:
            raise RuntimeError(f"{stored} keys in Redis, not {sessions}")
    await store.close()
    return version, before, after


def main() -> None:
    """Start the server, measure, print; the server stops with the run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    args = parser.parse_args()
    stop_children_on_sigterm()
    with tempfile.TemporaryDirectory() as logs, redis_server(Path(logs)) as url:
        version, before, after = asyncio.run(measure(url, args.sessions))
    per_session = (after - before) / args.sessions
    print(
        f"redis {version}: {args.sessions} sessions, used_memory {before} -> {after} bytes, "
        f"{per_session:.0f} bytes a session"
    )


if __name__ == "__main__":
    main()
