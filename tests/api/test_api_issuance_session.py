"""What a failed /issue leaves of its stoken: a retry as advised, or a new session, never both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import httpx
import pytest

from signing_gateway.issuance.stoken import InMemoryStokenStore
from signing_gateway.security.audit_trail import AuditTrail, QueuedRecord
from signing_gateway.settings import DomesticPolicySettings, ResilienceSettings, SignerSettings
from signing_gateway.signers.domestic import DomesticSignerClient
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test
from tests.api.signer_mocks import Handler, MockedSigners, SlowCall, commitment, domestic_issuing
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    running_gateway,
)

KEPT = "retry with the same stoken"
SPENT = "start again with POST /v1/domestic/prepare-issue"


def _gateway(
    keys: SignerKeys,
    *,
    raise_app_exceptions: bool = True,
    domestic: DomesticPolicySettings | None = None,
    **resilience: Any,
) -> Any:
    """An in-process gateway whose two signers share the given resilience settings."""
    policy = ResilienceSettings(**resilience)
    return running_gateway(
        make_settings(
            keys,
            eu_signer=SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, resilience=policy),
            domestic_signer=SignerSettings(
                url=DOMESTIC_SIGNER_URL, allow_plain_http=True, resilience=policy
            ),
            domestic=domestic or DomesticPolicySettings(),
        ),
        raise_app_exceptions=raise_app_exceptions,
    )


@pytest.fixture
async def gateway(test_keys: SignerKeys, signers) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway making one attempt per signer call: each failure reaches the caller as is."""
    async with _gateway(test_keys, max_attempts=1) as client:
        yield client


def _first_then_signing(
    keys: SignerKeys, failure: httpx.Response | Exception
) -> list[httpx.Response | Exception | Handler]:
    """The respx side effects of /issue: `failure` once (answered or raised), then signing."""
    # A list, not one function that raises: respx chains an exception raised by a function
    # side effect into a cause cycle.
    return [failure, *[domestic_issuing(keys)] * 3]


async def _issue_body(gateway: httpx.AsyncClient) -> dict[str, Any]:
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    return {
        "stoken": prepared.json()["stoken"],
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes()],
    }


async def _credentials_body(gateway: httpx.AsyncClient) -> dict[str, Any]:
    issue = await _issue_body(gateway)
    return {
        "stoken": issue["stoken"],
        "issueCommitmentMessage": issue["issueCommitmentMessage"],
        "domestic": issue["credentialsAttributes"],
        "european": [eu_test()],
    }


NEVER_TAKEN = {
    "503-retry-after": (
        httpx.Response(503, text="busy", headers={"Retry-After": "5"}),
        503,
        "signer-unavailable",
    ),
    "429": (httpx.Response(429, text="busy"), 503, "signer-unavailable"),
    "refused": (httpx.ConnectError("refused"), 503, "signer-unavailable"),
    # Timeouts before the request was sent (no connection): a 504, and nothing went out.
    "connect-timeout": (httpx.ConnectTimeout("no connection made"), 504, "signer-timeout"),
    "pool-timeout": (httpx.PoolTimeout("no free connection"), 504, "signer-timeout"),
}


@pytest.mark.parametrize("case", NEVER_TAKEN.values(), ids=NEVER_TAKEN.keys())
async def test_issue_retry_as_advised_works_after_a_refused_or_throttled_call(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, case
):
    """A call the signer refused, throttled or never got keeps the stoken: the retry is issued."""
    failure, status, slug = case
    mocked.issue.mock(side_effect=_first_then_signing(test_keys, failure))
    body = await _issue_body(gateway)
    first = await gateway.post("/v1/domestic/issue", json=body)
    assert KEPT in assert_problem(first, status, slug)["detail"]
    assert status == 504 or int(first.headers["retry-after"]) >= 1
    retry = await gateway.post("/v1/domestic/issue", json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 2


async def test_issue_retry_as_advised_works_after_an_open_breaker(
    test_keys: SignerKeys, mocked: MockedSigners
):
    """A 503 from an open breaker sent nothing: once it closes, the same stoken is issued."""
    async with _gateway(
        test_keys, max_attempts=1, breaker_consecutive_failures=1, breaker_open_seconds=0.2
    ) as gateway:
        body = await _issue_body(gateway)
        mocked.issue_static.mock(return_value=httpx.Response(500, text="boom"), side_effect=None)
        static = {"credentialAttributes": domestic_attributes()}
        assert (await gateway.post("/v1/domestic/static", json=static)).status_code == 502
        opened = time.monotonic()
        first = await gateway.post("/v1/domestic/issue", json=body)
        assert KEPT in assert_problem(first, 503, "signer-unavailable")["detail"]
        assert mocked.issue.call_count == 0
        # The breaker's open period is the behaviour under test: let exactly that much pass.
        await asyncio.sleep(max(0.0, opened + 0.25 - time.monotonic()))
        retry = await gateway.post("/v1/domestic/issue", json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


async def test_session_that_expired_while_its_unsent_issue_waited_says_to_start_again(
    test_keys: SignerKeys, mocked: MockedSigners
):
    """Throttled after the session's TTL ran out: not put back, so no retry with its stoken."""
    throttled_late = SlowCall(
        1.1, then=lambda _: httpx.Response(503, text="busy", headers={"Retry-After": "1"})
    )
    mocked.issue.mock(side_effect=throttled_late)
    short = DomesticPolicySettings(stoken_ttl_seconds=1)
    async with _gateway(test_keys, max_attempts=1, domestic=short) as gateway:
        body = await _issue_body(gateway)
        first = await gateway.post("/v1/domestic/issue", json=body)
        detail = assert_problem(first, 503, "signer-unavailable")["detail"]
        assert KEPT not in detail
        assert "start again with POST /v1/domestic/prepare-issue" in detail
        assert_problem(await gateway.post("/v1/domestic/issue", json=body), 401, "stoken-invalid")
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize(
    ("retry_after", "ttl", "kept"),
    [("30", 20, False), ("20", 20, False), ("2", 20, True)],
    ids=["wait-past-expiry", "wait-to-expiry", "wait-within-life"],
)
async def test_a_retry_after_beyond_the_session_says_to_start_again(
    test_keys: SignerKeys, mocked: MockedSigners, retry_after: str, ttl: int, kept: bool
):
    """Pin that a 503 never tells the caller to wait past its session, then use the stoken.

    The session goes back (the signer never saw it), but a retry as the Retry-After advises
    would come after it expired and meet a 401: the detail says to start again instead.
    """
    throttled = httpx.Response(503, text="busy", headers={"Retry-After": retry_after})
    mocked.issue.mock(return_value=throttled, side_effect=None)
    lasting = DomesticPolicySettings(stoken_ttl_seconds=ttl)
    async with _gateway(test_keys, max_attempts=1, domestic=lasting) as gateway:
        body = await _issue_body(gateway)
        first = await gateway.post("/v1/domestic/issue", json=body)
        detail = assert_problem(first, 503, "signer-unavailable")["detail"]
        assert int(first.headers["retry-after"]) == int(retry_after)
        assert (KEPT in detail) is kept
        assert ("start again with POST /v1/domestic/prepare-issue" in detail) is not kept
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout("no connection made"), httpx.PoolTimeout("no connection")]
)
async def test_issue_timing_out_before_it_was_sent_is_retried(
    test_keys: SignerKeys, mocked: MockedSigners, failure
):
    """`/issue` is never replayed, but a call that never left is not a replay: it is retried."""
    mocked.issue.mock(side_effect=_first_then_signing(test_keys, failure))
    async with _gateway(test_keys, max_attempts=2) as gateway:
        body = await _issue_body(gateway)
        answer = await gateway.post("/v1/domestic/issue", json=body)
    assert answer.status_code == 200, answer.text
    assert mocked.issue.call_count == 2


MAYBE_TAKEN = {
    "read-timeout": (httpx.ReadTimeout("slow"), 504, "signer-timeout"),
    "connection-lost": (httpx.RemoteProtocolError("hung up"), 502, "signer-bad-response"),
    "500": (httpx.Response(500, text="boom"), 502, "signer-bad-response"),
}


@pytest.mark.parametrize("case", MAYBE_TAKEN.values(), ids=MAYBE_TAKEN)
async def test_issue_that_may_have_reached_the_signer_spends_the_stoken(
    gateway, mocked: MockedSigners, test_keys: SignerKeys, case
):
    """After a call the signer may have taken, the detail says to start again; a retry is 401."""
    failure, status, slug = case
    mocked.issue.mock(side_effect=_first_then_signing(test_keys, failure))
    body = await _issue_body(gateway)
    first = await gateway.post("/v1/domestic/issue", json=body)
    assert SPENT in assert_problem(first, status, slug)["detail"]
    assert_problem(await gateway.post("/v1/domestic/issue", json=body), 401, "stoken-invalid")
    assert mocked.issue.call_count == 1


async def test_one_stoken_never_reaches_the_signer_twice(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """While one issue holds the session, the same stoken is refused; put back, it serves once."""
    at_signer, release = asyncio.Event(), asyncio.Event()

    async def throttled(_: httpx.Request) -> httpx.Response:
        at_signer.set()
        await release.wait()
        return httpx.Response(503, text="busy", headers={"Retry-After": "5"})

    mocked.issue.mock(side_effect=throttled)
    body = await _issue_body(gateway)
    holder = asyncio.create_task(gateway.post("/v1/domestic/issue", json=body))
    await asyncio.wait_for(at_signer.wait(), timeout=5)
    assert_problem(await gateway.post("/v1/domestic/issue", json=body), 401, "stoken-invalid")
    release.set()
    assert_problem(await holder, 503, "signer-unavailable")
    assert mocked.issue.call_count == 1

    mocked.issue.mock(side_effect=domestic_issuing(test_keys))
    answers = await asyncio.gather(
        *(gateway.post("/v1/domestic/issue", json=body) for _ in range(3))
    )
    assert sorted(a.status_code for a in answers) == [200, 401, 401]
    assert mocked.issue.call_count == 2


async def test_credentials_retry_as_advised_works_after_a_throttled_domestic_signer(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """/v1/credentials: a throttled domestic /issue keeps the stoken, and the retry is issued."""
    throttled = httpx.Response(503, text="busy", headers={"Retry-After": "5"})
    mocked.issue.mock(side_effect=_first_then_signing(test_keys, throttled))
    body = await _credentials_body(gateway)
    first = await gateway.post("/v1/credentials", json=body)
    problem = assert_problem(first, 503, "signer-unavailable")
    assert (problem["part"], KEPT in problem["detail"]) == ("domestic", True)
    retry = await gateway.post("/v1/credentials", json=body)
    assert retry.status_code == 200, retry.text
    assert retry.json()["domesticGreencard"] is not None
    assert mocked.issue.call_count == 2


async def test_credentials_eu_failure_before_the_domestic_call_was_sent_keeps_the_stoken(
    test_keys: SignerKeys, mocked: MockedSigners
):
    """An EU failure that cancels the domestic call while it waits to retry keeps the stoken."""
    throttled = asyncio.Event()

    def throttle(_: httpx.Request) -> httpx.Response:
        throttled.set()
        return httpx.Response(503, text="busy", headers={"Retry-After": "1"})

    async def fail_while_domestic_waits(_: httpx.Request) -> httpx.Response:
        await throttled.wait()
        # The gateway waits out the domestic Retry-After (1 s) before its next attempt: the
        # EU 500 lands inside that wait, and the task group cancels the domestic call there.
        await asyncio.sleep(0.2)
        return httpx.Response(500, text="boom")

    mocked.issue.mock(side_effect=[throttle, domestic_issuing(test_keys)])
    eu_sign = mocked.get_credential.side_effect
    mocked.get_credential.mock(side_effect=fail_while_domestic_waits)
    async with _gateway(test_keys) as gateway:
        body = await _credentials_body(gateway)
        first = await gateway.post("/v1/credentials", json=body)
        problem = assert_problem(first, 502, "signer-bad-response")
        assert (problem["part"], KEPT in problem["detail"]) == ("european[0]", True)
        assert mocked.issue.call_count == 1
        mocked.get_credential.mock(side_effect=eu_sign)
        retry = await gateway.post("/v1/credentials", json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 2


async def test_credentials_eu_failure_after_the_domestic_signing_spends_the_stoken(
    gateway, mocked: MockedSigners
):
    """An EU failure after the domestic signer signed: start again, the same stoken is 401."""
    mocked.get_credential.mock(
        side_effect=SlowCall(0.1, then=lambda _: httpx.Response(500, text="boom"))
    )
    body = await _credentials_body(gateway)
    first = await gateway.post("/v1/credentials", json=body)
    problem = assert_problem(first, 502, "signer-bad-response")
    assert (problem["part"], SPENT in problem["detail"]) == ("european[0]", True)
    assert_problem(await gateway.post("/v1/credentials", json=body), 401, "stoken-invalid")
    assert mocked.issue.call_count == 1


async def test_issue_cut_off_by_the_deadline_at_the_signer_spends_the_stoken(
    gateway, mocked: MockedSigners, test_keys: SignerKeys
):
    """A deadline expiring while /issue is at the signer: 504, start again; the stoken is 401."""
    hanging = SlowCall(5.0, then=domestic_issuing(test_keys))
    mocked.issue.mock(side_effect=hanging)
    body = await _issue_body(gateway)
    first = await gateway.post(
        "/v1/domestic/issue", json=body, headers={"X-Request-Timeout": "0.3"}
    )
    assert first.status_code == 504, first.text
    assert SPENT in first.json()["detail"]
    assert_problem(await gateway.post("/v1/domestic/issue", json=body), 401, "stoken-invalid")
    assert (hanging.started, hanging.cancelled) == (1, 1)


@pytest.mark.parametrize("route", ["/v1/domestic/issue", "/v1/credentials"])
async def test_signed_but_unaudited_answer_says_to_start_again(
    gateway, mocked: MockedSigners, monkeypatch: pytest.MonkeyPatch, route
):
    """Signed, then withheld for want of an audit record: the 503 says the session is used up."""
    body = await (_issue_body if route.endswith("issue") else _credentials_body)(gateway)

    async def unwritable(self: AuditTrail, queued: QueuedRecord) -> bool:
        return False

    monkeypatch.setattr(AuditTrail, "written", unwritable)
    problem = assert_problem(await gateway.post(route, json=body), 503, "audit-unavailable")
    assert SPENT in problem["detail"]
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("route", ["/v1/domestic/issue", "/v1/credentials"])
async def test_issue_request_that_cannot_be_built_keeps_the_stoken(
    test_keys: SignerKeys, mocked: MockedSigners, monkeypatch: pytest.MonkeyPatch, route
):
    """A bug while the /issue request is built is a 500 that sent nothing: the stoken serves."""

    def unbuildable(self: DomesticSignerClient, **_: Any) -> NoReturn:
        raise TypeError("the body cannot be encoded")

    async with _gateway(test_keys, max_attempts=1, raise_app_exceptions=False) as gateway:
        body = await (_issue_body if route.endswith("issue") else _credentials_body)(gateway)
        with monkeypatch.context() as broken:
            broken.setattr(DomesticSignerClient, "issue", unbuildable)
            assert_problem(await gateway.post(route, json=body), 500, "internal")
        retry = await gateway.post(route, json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("route", ["/v1/domestic/issue", "/v1/credentials"])
async def test_unexpected_error_once_the_issue_was_sent_spends_the_stoken(
    test_keys: SignerKeys, mocked: MockedSigners, route
):
    """Any error after the /issue request went out (here a 500) leaves the stoken used: 401."""
    mocked.issue.mock(side_effect=_first_then_signing(test_keys, RuntimeError("lost in transit")))
    async with _gateway(test_keys, max_attempts=1, raise_app_exceptions=False) as gateway:
        body = await (_issue_body if route.endswith("issue") else _credentials_body)(gateway)
        assert_problem(await gateway.post(route, json=body), 500, "internal")
        assert_problem(await gateway.post(route, json=body), 401, "stoken-invalid")
    assert mocked.issue.call_count == 1


async def test_a_stopped_gateway_leaves_no_stoken_sweep_timer(test_keys: SignerKeys, mocked):
    """The stoken store's sweep timer is cancelled at shutdown, its sessions with it.

    Left on the loop, it would hold the store (every open session) until the oldest one's TTL.
    """
    loop = asyncio.get_running_loop()

    def sweep_timers() -> list[asyncio.TimerHandle]:
        scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
        return [
            handle
            for handle in scheduled
            if not handle.cancelled()
            and isinstance(getattr(handle._callback, "__self__", None), InMemoryStokenStore)
        ]

    async with running_gateway(make_settings(test_keys)) as client:
        assert (await client.post("/v1/domestic/prepare-issue")).status_code == 200
        assert len(sweep_timers()) == 1
    assert sweep_timers() == []
