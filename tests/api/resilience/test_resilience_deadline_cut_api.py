"""What a caller gets when its deadline cuts the signer work: one answer, naming the parts cut.

Signers that never answer (respx side effects that hang) behind a short `X-Request-Timeout`:
the attempt's timer is then armed for the deadline's instant, and on /v1/print and
/v1/credentials each part's attempt and the request's deadline fire in different tasks.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from signing_gateway.issuance import eu as eu_issuance
from signing_gateway.issuance.deadline import BUDGET_SPENT_BEFORE_SIGNING
from signing_gateway.settings import ResilienceSettings, SignerSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import MockedSigners, SlowCall, commitment
from tests.support.gateway import EU_SIGNER_URL, SignerKeys, make_settings, running_gateway

BUDGET = 0.3
#: In-process answers come within a few ms of the deadline; this allows for a loaded machine.
MARGIN = 0.25
SPENT = "start again with POST /v1/domestic/prepare-issue"


def _eu_settings(keys: SignerKeys, **resilience: Any) -> Any:
    eu = SignerSettings(
        url=EU_SIGNER_URL, allow_plain_http=True, resilience=ResilienceSettings(**resilience)
    )
    return make_settings(keys, eu_signer=eu)


async def _post(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], budget: float = BUDGET
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(path, json=body, headers={"X-Request-Timeout": str(budget)})
    return response, time.monotonic() - started


def _assert_cut(response: httpx.Response, took: float, unfinished: list[str]) -> dict[str, Any]:
    """A 504 deadline-exceeded within the budget, naming exactly the `unfinished` parts."""
    problem = assert_problem(response, 504, "deadline-exceeded")
    assert (problem["part"], problem["unfinishedParts"]) == (unfinished[0], unfinished)
    assert problem["detail"].startswith(", ".join(unfinished) + ": ")
    assert took < BUDGET + MARGIN
    return problem


async def _stoken(client: httpx.AsyncClient) -> str:
    prepared = await client.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    stoken: str = prepared.json()["stoken"]
    return stoken


async def test_dcc_cut_by_the_deadline_names_its_part(
    gateway: httpx.AsyncClient, mocked: MockedSigners
) -> None:
    """A hung EU signer: every /v1/dcc is 504 deadline-exceeded naming european, in time."""
    hung = SlowCall(3600)
    mocked.get_credential.mock(side_effect=hung)
    for _ in range(3):
        response, took = await _post(gateway, "/v1/dcc", eu_vaccination())
        _assert_cut(response, took, ["european"])
    assert (hung.started, hung.cancelled) == (3, 3)


async def test_dcc_with_no_time_left_for_an_attempt_sends_nothing(
    gateway: httpx.AsyncClient, mocked: MockedSigners
) -> None:
    """A budget under the 50 ms an attempt needs: the deadline's 504, not signer-timeout."""
    response, took = await _post(gateway, "/v1/dcc", eu_vaccination(), budget=0.04)
    _assert_cut(response, took, ["european"])
    assert mocked.signing_calls() == 0


async def test_dcc_whose_budget_runs_out_before_its_first_attempt_blames_no_signer(
    gateway: httpx.AsyncClient, mocked: MockedSigners, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin the 504 of a deadline spent on the loop before the signer call: no signer blamed.

    The loop is held (the request's own CPU work, or other requests') from inside the
    deadline's block until past the caller's 0.3 s budget, before the first attempt. Before,
    the answer said "the signer did not finish within 0.3 s" of a signer that was never called.
    """
    signing = eu_issuance.call_signer

    async def late_call_signer(*args: Any, **kwargs: Any) -> Any:
        until = time.perf_counter() + BUDGET + 0.05
        while time.perf_counter() < until:
            pass
        return await signing(*args, **kwargs)

    monkeypatch.setattr(eu_issuance, "call_signer", late_call_signer)
    response, _ = await _post(gateway, "/v1/dcc", eu_vaccination())
    problem = assert_problem(response, 504, "deadline-exceeded")
    assert problem["detail"] == f"european: {BUDGET_SPENT_BEFORE_SIGNING}"
    assert problem["unfinishedParts"] == ["european"]
    assert mocked.signing_calls() == 0
    # No call to count, so none counted as a timeout; the breaker learned nothing.
    metrics = await scrape(gateway)
    assert metrics.total("gateway_signer_calls_total", signer="eu") == 0
    ready = (await gateway.get("/readyz")).json()["signers"]
    assert {s["breaker"] for s in ready.values()} == {"closed"}


@pytest.mark.parametrize(
    ("hung", "unfinished"),
    [(["european"], ["european"]), (["domestic"], ["domestic"]), (["domestic", "european"], None)],
    ids=["european", "domestic", "both"],
)
async def test_print_cut_by_the_deadline_names_the_unfinished_parts(
    gateway: httpx.AsyncClient,
    mocked: MockedSigners,
    hung: list[str],
    unfinished: list[str] | None,
) -> None:
    """/v1/print: the same 504 every time, naming the parts still at a hung signer."""
    routes = {"european": mocked.get_credential, "domestic": mocked.issue_static}
    for part in hung:
        routes[part].mock(side_effect=SlowCall(3600))
    body = {"domestic": domestic_attributes(), "european": eu_test()}
    for _ in range(4):
        response, took = await _post(gateway, "/v1/print", body)
        _assert_cut(response, took, unfinished or hung)
    # The breaker and the call metric see deadline cuts of a signer not yet silent for an
    # attempt timeout (10 s), whichever timer each part saw first: "deadline", not counted.
    metrics = await scrape(gateway)
    labels = {"european": ("eu", "get_credential"), "domestic": ("domestic", "issue_static")}
    for part, (signer, endpoint) in labels.items():
        calls = {"signer": signer, "endpoint": endpoint}
        outcome = "deadline" if part in hung else "ok"
        assert metrics.value("gateway_signer_calls_total", **calls, outcome=outcome) == 4
        assert metrics.value("gateway_signer_calls_total", **calls, outcome="timeout") == 0
    ready = (await gateway.get("/readyz")).json()["signers"]
    assert {s["breaker"] for s in ready.values()} == {"closed"}


@pytest.mark.parametrize(
    ("hung", "unfinished"),
    [("european", ["european[0]", "european[1]"]), ("domestic", ["domestic"])],
)
async def test_credentials_cut_by_the_deadline_names_the_unfinished_parts(
    gateway: httpx.AsyncClient, mocked: MockedSigners, hung: str, unfinished: list[str]
) -> None:
    """/v1/credentials: the same 504 every time, naming each part still at a hung signer."""
    {"european": mocked.get_credential, "domestic": mocked.issue}[hung].mock(
        side_effect=SlowCall(3600)
    )
    for _ in range(3):
        body = {
            "stoken": await _stoken(gateway),
            "issueCommitmentMessage": commitment(),
            "domestic": [domestic_attributes()],
            "european": [eu_vaccination(), eu_test()],
        }
        response, took = await _post(gateway, "/v1/credentials", body)
        problem = _assert_cut(response, took, unfinished)
        # The domestic /issue reached the signer either way (signed, or cut while there).
        assert SPENT in problem["detail"]


async def test_print_part_timing_out_in_the_deadlines_loop_turn_is_cut_by_the_deadline(
    test_keys: SignerKeys, mocked: MockedSigners
) -> None:
    """An EU attempt timing out in the loop turn the deadline expires in: still its 504.

    The attempt (0.3 s) falls due just before the caller's deadline (0.4 s) and a stalled
    loop turn lets both fire together, the attempt's first: its part, running in a task of
    its own, sees its timeout before the deadline cancels it.
    """

    async def stall_then_hang(request: httpx.Request) -> httpx.Response:
        # Hold the loop from 0.25 s to 0.5 s after sending: both timers are then overdue.
        asyncio.get_running_loop().call_later(0.25, time.sleep, 0.25)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    mocked.get_credential.mock(side_effect=stall_then_hang)
    async with running_gateway(_eu_settings(test_keys, attempt_timeout_seconds=0.3)) as client:
        body = {"domestic": domestic_attributes(), "european": eu_test()}
        response, _ = await _post(client, "/v1/print", body, budget=0.4)
        problem = assert_problem(response, 504, "deadline-exceeded")
        assert problem["unfinishedParts"] == ["european"]
        # The attempt ran its whole own timeout: the breaker and the metric count a timeout.
        metrics = await scrape(client)
        eu = {"signer": "eu", "endpoint": "get_credential"}
        assert metrics.value("gateway_signer_calls_total", **eu, outcome="timeout") == 1


@pytest.mark.parametrize(
    ("path", "body", "part"),
    [
        ("/v1/dcc", eu_vaccination(), "european"),
        ("/v1/print", {"domestic": domestic_attributes(), "european": eu_test()}, "european"),
        ("/v1/credentials", {"european": [eu_vaccination(), eu_test()]}, "european[0]"),
    ],
    ids=["dcc", "print", "credentials"],
)
async def test_attempt_timeout_shorter_than_the_deadline_stays_a_signer_timeout(
    test_keys: SignerKeys, mocked: MockedSigners, path: str, body: dict[str, Any], part: str
) -> None:
    """A hung signer's own 0.1 s attempt timeout, 2 s of deadline left: signer-timeout."""
    mocked.get_credential.mock(side_effect=SlowCall(3600))
    settings = _eu_settings(test_keys, attempt_timeout_seconds=0.1, max_attempts=1)
    async with running_gateway(settings) as client:
        response, took = await _post(client, path, body, budget=2.0)
    problem = assert_problem(response, 504, "signer-timeout")
    assert problem["part"] == part
    assert "unfinishedParts" not in problem
    assert took < 1.0


@pytest.mark.parametrize("path", ["/v1/domestic/static", "/v1/domestic/prepare-issue"])
async def test_domestic_routes_cut_by_the_deadline_name_domestic(
    gateway: httpx.AsyncClient, mocked: MockedSigners, path: str
) -> None:
    """A hung domestic signer: /static and /prepare-issue are 504s naming the domestic part."""
    routes = {
        "/v1/domestic/static": (
            mocked.issue_static,
            {"credentialAttributes": domestic_attributes()},
        ),
        "/v1/domestic/prepare-issue": (mocked.prepare_issue, {}),
    }
    route, body = routes[path]
    hung = SlowCall(3600)
    route.mock(side_effect=hung)
    response, took = await _post(gateway, path, body)
    _assert_cut(response, took, ["domestic"])
    assert (hung.started, hung.cancelled) == (1, 1)
