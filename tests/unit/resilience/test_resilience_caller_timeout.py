"""`CallerTimeoutMiddleware`: the budget it binds and from when, what it refuses, no frame idle."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from signing_gateway.issuance.deadline import caller_budget_var
from signing_gateway.resilience.caller_timeout import CallerTimeoutMiddleware
from signing_gateway.runtime.cpu_gate import ARRIVED_AT


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "path": "/v1/dcc", "headers": headers, "state": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _send(message: dict[str, Any]) -> None:
    return None


async def test_without_the_header_the_apps_own_coroutine_is_handed_back() -> None:
    """Nothing to bind: the caller awaits the app directly, held for the whole signer wait."""
    budgets: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        budgets.append(caller_budget_var.get(None))

    awaitable = CallerTimeoutMiddleware(app)(_scope([]), _receive, _send)
    assert asyncio.iscoroutine(awaitable)
    assert awaitable.cr_code is app.__code__
    await awaitable
    assert budgets == [None]


async def test_with_the_header_the_budget_is_bound_for_the_app_and_reset_after() -> None:
    """A valid `X-Request-Timeout` is seen by the app and gone once the request ends."""
    budgets: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        budget = caller_budget_var.get(None)
        assert budget is not None
        budgets.append(budget.seconds)

    await CallerTimeoutMiddleware(app)(_scope([(b"x-request-timeout", b"2.5")]), _receive, _send)
    assert budgets == [2.5]
    assert caller_budget_var.get(None) is None


async def test_a_malformed_header_is_answered_400_without_calling_the_app() -> None:
    """The caller asked for a bound that was not understood: 400 problem+json."""
    sent: list[dict[str, Any]] = []
    called: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(True)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await CallerTimeoutMiddleware(app)(_scope([(b"x-request-timeout", b"soon")]), _receive, send)
    assert called == []
    assert sent[0]["status"] == 400


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"3", 3.0), (b"2.5", 2.5), (b"1e1", 10.0), (b"25E-1", 2.5), (b" \t2.5 ", 2.5)],
)
async def test_a_decimal_number_of_seconds_is_read_as_such(value: bytes, seconds: float) -> None:
    """Digits with an optional fraction and exponent, white space around them ignored."""
    budgets: list[float] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        budget = caller_budget_var.get(None)
        assert budget is not None
        budgets.append(budget.seconds)

    await CallerTimeoutMiddleware(app)(_scope([(b"x-request-timeout", value)]), _receive, _send)
    assert budgets == [seconds]


async def test_one_malformed_field_is_not_said_to_be_repeated() -> None:
    """A single unreadable value is refused as such; "given once" is for a repeated field."""
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app is not called")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await CallerTimeoutMiddleware(app)(_scope([(b"x-request-timeout", b"soon")]), _receive, send)
    body = json.loads(sent[1]["body"])
    assert body["detail"] == "X-Request-Timeout must be a positive number of seconds"


async def test_the_budget_counts_from_the_requests_arrival_not_from_this_middleware() -> None:
    """Time spent before the middleware (queued at the CPU gate) comes out of the budget."""
    arrivals: list[float] = []
    arrived = asyncio.get_running_loop().time() - 1.5  # waited 1.5 s for a CPU permit

    async def app(scope: Any, receive: Any, send: Any) -> None:
        budget = caller_budget_var.get(None)
        assert budget is not None
        arrivals.append(budget.arrived_at)

    scope = {**_scope([(b"x-request-timeout", b"2.5")]), ARRIVED_AT: arrived}
    await CallerTimeoutMiddleware(app)(scope, _receive, _send)
    assert arrivals == [arrived]
