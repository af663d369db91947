"""Domestic issuance on a Redis session store: any replica takes any session, once; down, 503.

Each gateway is the real app with `session_store.kind=redis`; only the Redis client it builds
is replaced by a fakeredis one, every gateway of a test sharing one fake server (the Lua
scripts run). The signers are the respx mocks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from fakeredis.aioredis import FakeRedis

from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test
from tests.api.readiness import readyz_when_probed
from tests.api.signer_mocks import MockedSigners, commitment, decode_b64_json
from tests.conftest import BlockingCalls
from tests.support.gateway import SignerKeys, make_settings, running_gateway
from tests.support.polling import until_answered
from tests.support.stoken_stores import REDIS_SESSIONS, sessions_on

STORE_DOWN = "session-store-unavailable"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeredis.FakeServer]:
    """The one Redis server of the test's gateways."""
    server = fakeredis.FakeServer()
    with sessions_on(monkeypatch, server):
        yield server


def _replica(keys: SignerKeys, **overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """A gateway keeping its issuance sessions in the shared Redis store."""
    return running_gateway(make_settings(keys, **{"session_store": REDIS_SESSIONS, **overrides}))


@pytest.fixture
async def gateway(
    test_keys: SignerKeys, server: fakeredis.FakeServer, mocked: MockedSigners
) -> AsyncIterator[httpx.AsyncClient]:
    """One gateway on the shared store."""
    async with _replica(test_keys) as client:
        yield client


async def _prepared(gateway: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    answer = await gateway.post("/v1/domestic/prepare-issue", headers=headers)
    assert answer.status_code == 200, answer.text
    stoken: str = answer.json()["stoken"]
    return stoken


def _issue(stoken: str) -> dict[str, Any]:
    return {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }


def _credentials(stoken: str) -> dict[str, Any]:
    return {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
        "european": [eu_test()],
    }


async def test_a_session_opened_by_one_replica_is_issued_once_by_another(
    test_keys: SignerKeys,
    server: fakeredis.FakeServer,
    mocked: MockedSigners,
    blocking_detector: BlockingCalls,
):
    """Pin what the shared store is for: any replica takes the session, and only once.

    The replay, on either replica, is the 401 of a used stoken and reaches no signer. The
    event loop is watched for blocking calls throughout, as in every async test.
    """
    assert blocking_detector.detector.functions["os.stat"].activated
    async with _replica(test_keys) as first, _replica(test_keys) as second:
        stoken = await _prepared(first)
        issued = await second.post("/v1/domestic/issue", json=_issue(stoken))
        assert issued.status_code == 200, issued.text
        assert len(decode_b64_json(issued.json()["createCredentialMessages"])) == 1
        for replica in (first, second):
            replay = await replica.post("/v1/domestic/issue", json=_issue(stoken))
            assert_problem(replay, 401, "stoken-invalid")
        reader = FakeRedis(server=server)
        assert await reader.dbsize() == 0  # nothing left behind
        await reader.aclose()
    assert mocked.issue.call_count == 1


async def test_credentials_take_the_shared_session_too(
    gateway: httpx.AsyncClient, mocked: MockedSigners
):
    """/v1/credentials signs with a session from the shared store, once."""
    stoken = await _prepared(gateway)
    answer = await gateway.post("/v1/credentials", json=_credentials(stoken))
    assert answer.status_code == 200, answer.text
    assert answer.json()["domesticGreencard"] is not None
    replay = await gateway.post("/v1/credentials", json=_credentials(stoken))
    assert_problem(replay, 401, "stoken-invalid")
    assert mocked.issue.call_count == 1


def _assert_store_down(answer: httpx.Response) -> dict[str, Any]:
    """The 503 of a store that did not answer: problem+json, come back in a second."""
    problem = assert_problem(answer, 503, STORE_DOWN)
    assert answer.headers["retry-after"] == "1"
    return problem


async def test_a_store_that_is_down_is_a_503_and_reaches_no_signer_for_issue(
    gateway: httpx.AsyncClient, server: fakeredis.FakeServer, mocked: MockedSigners
):
    """Pin the answers while Redis is down, and that the stoken serves once it is back.

    prepare-issue's signer call comes first (its nonce then expires unused); issue and
    /v1/credentials take the session before any signer call, so they reach none. The take
    failed without a word from Redis, so the session is still there.
    """
    stoken = await _prepared(gateway)
    prepared_calls = mocked.prepare_issue.call_count
    server.connected = False
    _assert_store_down(await gateway.post("/v1/domestic/prepare-issue"))
    assert mocked.prepare_issue.call_count == prepared_calls + 1
    issue = _assert_store_down(await gateway.post("/v1/domestic/issue", json=_issue(stoken)))
    assert "retry with the same stoken" in issue["detail"]
    _assert_store_down(await gateway.post("/v1/credentials", json=_credentials(stoken)))
    assert (mocked.issue.call_count, mocked.get_credential.call_count) == (0, 0)

    server.connected = True
    issued = await gateway.post("/v1/domestic/issue", json=_issue(stoken))
    assert issued.status_code == 200, issued.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize(("required", "status"), [(False, 200), (True, 503)])
async def test_readiness_names_the_session_store(
    test_keys: SignerKeys,
    server: fakeredis.FakeServer,
    mocked: MockedSigners,
    required: bool,
    status: int,
):
    """/readyz lists `session-store` (a PING): down fails readiness only if it is required.

    Every replica shares the store: required, all of them would leave service at once.
    """
    store = REDIS_SESSIONS.model_copy(update={"required": required})
    async with _replica(
        test_keys, session_store=store, readiness_probe_interval_seconds=0.05
    ) as gateway:
        ready = await readyz_when_probed(gateway)
        assert ready.status_code == 200, ready.text
        assert ready.json()["dependencies"]["session-store"]["status"] == "up"
        server.connected = False
        down = await until_answered(
            lambda: gateway.get("/readyz"),
            lambda answer: answer.json()["dependencies"]["session-store"]["status"] == "down",
        )
    assert down.status_code == status, down.text


@pytest.fixture
def token_issuer() -> LocalTokenIssuer:
    """Tokens for two callers of one gateway."""
    return LocalTokenIssuer(issuer="https://idp.test/", audience="signing-gateway")


async def test_another_callers_stoken_is_refused_and_left_for_its_owner(
    test_keys: SignerKeys,
    server: fakeredis.FakeServer,
    mocked: MockedSigners,
    token_issuer: LocalTokenIssuer,
    tmp_path: Path,
):
    """Pin owner-only sessions on the shared store: another caller's 401 spends nothing."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(token_issuer.jwks()))
    auth = AuthSettings(
        mode="jwt", jwks_file=jwks, audience="signing-gateway", issuer="https://idp.test/"
    )

    def caller(subject: str) -> dict[str, str]:
        token = token_issuer.mint(subject=subject, scopes=["domestic:sign"])
        return {"Authorization": f"Bearer {token}"}

    owner, other = caller("backend-1"), caller("backend-2")
    async with _replica(test_keys, auth=auth) as first, _replica(test_keys, auth=auth) as second:
        stoken = await _prepared(first, owner)
        foreign = await second.post("/v1/domestic/issue", json=_issue(stoken), headers=other)
        assert_problem(foreign, 401, "stoken-invalid")
        assert mocked.issue.call_count == 0
        used = await second.post("/v1/domestic/issue", json=_issue(stoken), headers=owner)
        assert used.status_code == 200, used.text
    assert mocked.issue.call_count == 1
