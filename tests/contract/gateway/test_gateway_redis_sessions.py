"""Issuance sessions in a real Redis (`session_store.kind=redis`), through real gateway processes.

Replicas and `--workers` processes sharing one `redis-server` take each other's sessions, each
still single use and its opener's only; a Redis that stops answering makes only the session
routes answer 503 `session-store-unavailable`, within the store's timeout, and the gateway
serves sessions again once it is back; `rediss://` works with a CA bundle and mutual TLS;
the least-privileged ACL user of docs/operations.md is accepted by Redis and runs the store.
Skipped without `redis-server` on PATH (failed instead where `TEST_REQUIRE_REDIS=1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from signing_gateway.api import examples
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes
from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    gateway_env,
    running_gateway_process,
    serving_workers,
    wait_ready,
)
from tests.contract.gateway.independent_verify import b64d, verify_issue_item
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.polling import until, until_answered
from tests.support.redis_server import (
    RedisServer,
    RedisTls,
    running_redis_server,
    tls_files,
)
from tests.support.sessions import open_session

pytestmark = pytest.mark.timeout(60)

#: The store's bound on one operation: an outage is answered within it and `MARGIN_S`.
TIMEOUT_S = 0.5
MARGIN_S = 1.0
#: Issuances through `serve --workers` on fresh connections.
PAIRS = 16
#: New connections for every request: a worker of `serve --workers` may take any of them.
FRESH = httpx.Limits(max_keepalive_connections=0)


def _store_env(redis: RedisServer, **store: str) -> dict[str, str]:
    """Settings of sessions kept in `redis` (`store`: more `SESSION_STORE__*`, unprefixed)."""
    settings = {"KIND": "redis", "REDIS_URL": redis.url, "TIMEOUT_SECONDS": str(TIMEOUT_S)}
    return {f"SIGNING_GATEWAY_SESSION_STORE__{k}": v for k, v in {**settings, **store}.items()}


def _env(fakes: tuple[FakeSignerProcess, FakeSignerProcess], **settings: str) -> dict[str, str]:
    """Settings of a gateway in front of `fakes`, with `settings` (`SIGNING_GATEWAY_*`) added."""
    eu, domestic = fakes
    # Readiness checked often and briefly: a store that stops answering shows soon.
    return gateway_env(
        eu.base_url,
        domestic.base_url,
        SIGNING_GATEWAY_READINESS_PROBE_TIMEOUT_SECONDS=str(TIMEOUT_S),
        **settings,
    )


async def _issue(
    client: httpx.AsyncClient, session: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST /v1/domestic/issue for one credential with `session` (from `open_session`)."""
    body = {**session, "credentialsAttributes": [domestic_attributes()]}
    return await client.post("/v1/domestic/issue", json=body, headers=headers)


def _assert_issued(
    answer: httpx.Response, session: dict[str, str], domestic: FakeSignerProcess
) -> None:
    """`answer` is 200 with a signature the domestic signer's published key verifies.

    Over the nonce of `session`'s prepare-issue, whichever gateway that was.
    """
    assert answer.status_code == 200, answer.text
    [key] = httpx.get(f"{domestic.base_url}/keys", timeout=5).json()["domestic"]
    nonce = orjson.loads(b64d(session["issueCommitmentMessage"]))["issuerNonce"]
    [item] = orjson.loads(b64d(answer.json()["createCredentialMessages"]))
    verify_issue_item(item, nonce, b64d(key["publicKey"]))


@contextlib.contextmanager
def _replicas(env: dict[str, str]) -> Iterator[list[GatewayProcess]]:
    """Two gateway processes (one replica each) with `env`, started side by side."""
    with contextlib.ExitStack() as stack:
        gateways = [
            stack.enter_context(running_gateway_process(env, ready=False)) for _ in range(2)
        ]
        for gateway in gateways:
            wait_ready(gateway)
        yield gateways


@contextlib.asynccontextmanager
async def _served(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tls: RedisTls | None = None, **store: str
) -> AsyncIterator[tuple[RedisServer, httpx.AsyncClient]]:
    """A Redis (over TLS with `tls`), a gateway keeping its sessions there, and a client of it."""
    with (
        running_redis_server(tls) as redis,
        running_gateway_process(_env(fakes, **_store_env(redis, **store))) as gateway,
    ):
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
            yield redis, client


def _caller(issuer: LocalTokenIssuer, subject: str) -> dict[str, str]:
    """The Authorization header of caller `subject`, allowed domestic issuance."""
    token = issuer.mint(subject=subject, scopes=["domestic:sign"])
    return {"Authorization": f"Bearer {token}"}


async def test_replicas_sharing_a_redis_take_each_others_sessions_once_and_only_the_openers(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
):
    """A session opened on replica A is issued on B (200, verified), then refused on A (401).

    And one opened on B by caller X and presented on A by caller Y is refused 401, and is
    still X's to use. Before, each replica kept its own sessions: B answered 401.
    """
    issuer = LocalTokenIssuer(issuer="https://issuer.test", audience="signing-gateway")
    jwks = tmp_path / "jwks.json"
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    auth = {
        "SIGNING_GATEWAY_AUTH__MODE": "jwt",
        "SIGNING_GATEWAY_AUTH__JWKS_FILE": str(jwks),
        "SIGNING_GATEWAY_AUTH__ISSUER": issuer.issuer,
        "SIGNING_GATEWAY_AUTH__AUDIENCE": issuer.audience,
    }
    x, y = _caller(issuer, "backend-x"), _caller(issuer, "backend-y")
    with (
        running_redis_server() as redis,
        _replicas(_env(fakes, **_store_env(redis), **auth)) as (a, b),
    ):
        async with (
            httpx.AsyncClient(base_url=a.base_url, headers=x, timeout=10) as on_a,
            httpx.AsyncClient(base_url=b.base_url, headers=x, timeout=10) as on_b,
        ):
            session = await open_session(on_a)
            _assert_issued(await _issue(on_b, session), session, fakes[1])
            assert_problem(await _issue(on_a, session), 401, "stoken-invalid")

            xs = await open_session(on_b)
            assert_problem(await _issue(on_a, xs, headers=y), 401, "stoken-invalid")
            _assert_issued(await _issue(on_a, xs), xs, fakes[1])


@contextlib.asynccontextmanager
async def _paused(worker: psutil.Process) -> AsyncIterator[None]:
    """`worker` stopped (SIGSTOP) for the block: the other worker accepts every connection."""
    worker.suspend()
    try:
        await until(lambda: worker.status() == psutil.STATUS_STOPPED)
        yield
    finally:
        worker.resume()


@pytest.mark.parametrize(("store", "crossed"), [("redis", 200), ("memory", 401)])
async def test_serve_workers_take_each_others_sessions_through_redis(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], store: str, crossed: int
):
    """`serve --workers 2`: a session one worker opened is issued by the other; every pair 200.

    The crossing is forced (each worker paused in turn); then prepare-issue and issue pairs on
    fresh connections, which the workers take as they come, all succeed. With the memory
    store the same crossing is refused 401: a worker knows only its own sessions.
    """
    async with contextlib.AsyncExitStack() as stack:
        settings = {}
        if store == "redis":
            settings = _store_env(stack.enter_context(running_redis_server()))
        # At INFO: each worker logs when it serves.
        env = _env(fakes, SIGNING_GATEWAY_LOG_LEVEL="INFO", **settings)
        gateway = stack.enter_context(running_gateway_process(env, "--workers", "2"))
        first, second = await serving_workers(gateway, 2)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=gateway.base_url, timeout=10, limits=FRESH)
        )
        async with _paused(first):
            session = await open_session(client)
        async with _paused(second):
            answer = await _issue(client, session)
        if crossed == 401:
            assert_problem(answer, 401, "stoken-invalid")
            return
        _assert_issued(answer, session, fakes[1])

        async def pair() -> int:
            return (await _issue(client, await open_session(client))).status_code

        statuses = await asyncio.gather(*(pair() for _ in range(PAIRS)))
    assert statuses == [200] * PAIRS


async def _readiness(client: httpx.AsyncClient, store_status: str) -> httpx.Response:
    """/readyz, once it shows the session store `store_status` (up or down)."""
    return await until_answered(
        lambda: client.get("/readyz"),
        lambda ready: ready.json()["dependencies"]["session-store"]["status"] == store_status,
    )


async def _timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The answer to `request`, and the seconds it took."""
    started = time.monotonic()
    answer = await request
    return answer, time.monotonic() - started


def _assert_store_unavailable(answer: httpx.Response, seconds: float) -> None:
    assert_problem(answer, 503, "session-store-unavailable")
    assert answer.headers["retry-after"] == "1"
    assert seconds < TIMEOUT_S + MARGIN_S, f"answered after {seconds:.2f} s"


@pytest.mark.parametrize(
    ("outage", "required"), [("paused", False), ("stopped", True)], ids=["paused", "stopped"]
)
async def test_a_redis_outage_fails_only_the_session_routes_in_time_until_it_is_back(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], outage: str, required: bool
):
    """Redis paused (SIGSTOP) or stopped: prepare-issue and issue answer 503 within the timeout.

    Problem+json `session-store-unavailable` with Retry-After; meanwhile /v1/dcc answers 200,
    /healthz 200, and /readyz shows the store down: still ready (200) unless the store is
    `required` (503). Once Redis is back, sessions are issued again.
    """
    async with _served(fakes, REQUIRED=str(required).lower()) as (redis, client):
        opened = await open_session(client)
        if outage == "paused":
            redis.pause()
        else:
            redis.stop()

        _assert_store_unavailable(*await _timed(client.post("/v1/domestic/prepare-issue")))
        _assert_store_unavailable(*await _timed(_issue(client, opened)))
        dcc = await client.post("/v1/dcc", json=examples.EU_VACCINATION)
        assert dcc.status_code == 200, dcc.text
        assert (await client.get("/healthz")).status_code == 200
        ready = await _readiness(client, "down")
        assert ready.status_code == (503 if required else 200)
        assert ready.json()["dependencies"]["session-store"]["required"] is required

        if outage == "paused":
            redis.resume()
        else:
            redis.start()
        assert (await _readiness(client, "up")).status_code == 200
        session = await open_session(client)
        _assert_issued(await _issue(client, session), session, fakes[1])


@pytest.mark.parametrize("mutual", [False, True], ids=["ca-bundle", "mutual-tls"])
async def test_sessions_are_kept_in_redis_over_tls(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path, mutual: bool
):
    """rediss:// with the server's CA bundle (and a client certificate where Redis asks one).

    /readyz shows the store up, and a session is opened and issued.
    """
    tls = tls_files(tmp_path, mutual=mutual)
    store = {"CA_BUNDLE": str(tls.ca)}
    if mutual:
        store |= {"CLIENT_CERT": str(tls.client_cert), "CLIENT_KEY": str(tls.client_key)}
    async with _served(fakes, tls, **store) as (_, client):
        assert (await _readiness(client, "up")).status_code == 200
        session = await open_session(client)
        _assert_issued(await _issue(client, session), session, fakes[1])


def _guides_acl_user() -> list[str]:
    """The words of docs/operations.md's `ACL SETUSER` for the store, its password filled in."""
    guide = (Path(__file__).parents[3] / "docs" / "operations.md").read_text(encoding="utf-8")
    [line] = re.findall(r"`(ACL SETUSER signing-gateway [^`]+)`", guide)
    return [PASSWORD_WORD if word == ">PASSWORD" else word for word in line.split()]


#: The ACL user's password in the guide's line (`>PASSWORD`), as a test sets it.
PASSWORD_WORD = ">acl-test-password"
#: The password of the user that sets the server up, once the default user is switched off.
ADMIN_PASSWORD = "acl-test-admin"


async def test_the_guides_least_privileged_acl_user_runs_the_store(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path
):
    """The user docs/operations.md tells operators to create is accepted and is enough.

    The guide's own line, run on the test's redis-server, then the default user switched off:
    through database 1 (`+select`), readiness is up, a session is opened and issued, a replay is
    refused, and Redis logged no command the user was denied (each would be an `ACL LOG` entry,
    and a step of the store that fails).
    """
    password = tmp_path / "redis-password"
    password.write_text(PASSWORD_WORD.removeprefix(">") + "\n", encoding="utf-8")
    with running_redis_server() as redis:
        set_up = redis.command(
            _guides_acl_user(),
            ["ACL", "SETUSER", "admin", "on", f">{ADMIN_PASSWORD}", "allcommands", "allkeys"],
            ["ACL", "SETUSER", "default", "off"],
        )
        assert set_up == [b"+OK"] * 3
        store = _store_env(
            redis,
            REDIS_URL=redis.url.removesuffix("/0") + "/1",
            REDIS_USERNAME="signing-gateway",
            REDIS_PASSWORD_FILE=str(password),
        )
        with running_gateway_process(_env(fakes, **store)) as gateway:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
                assert (await _readiness(client, "up")).status_code == 200
                session = await open_session(client)
                _assert_issued(await _issue(client, session), session, fakes[1])
                assert_problem(await _issue(client, session), 401, "stoken-invalid")
        [denied] = redis.command(["AUTH", "admin", ADMIN_PASSWORD], ["ACL", "LOG"])[1:]
    assert denied == b"*0", "the store was denied a command: see ACL LOG"
