"""Pure ASGI middleware reading the caller's `X-Request-Timeout` (seconds) on arrival.

The value is kept with the arrival time in a context variable; `request_deadline` then uses
the smaller of it (minus the time already spent) and the configured deadline. A malformed
value is answered 400 problem+json: a caller who asked for a bound should learn it was not
understood rather than silently get the default. So is the field given twice: two lines of it
mean what one line with both values, comma-separated, means (RFC 9110 5.3), which is no number;
taking one of them would silently drop the other's bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.types import ASGIApp, Receive, Scope, Send

from signing_gateway.errors import PROBLEM_BASE, send_problem
from signing_gateway.issuance.deadline import (
    REQUEST_TIMEOUT_HEADER,
    CallerBudget,
    caller_budget_var,
    parse_request_timeout_fields,
    request_timeout_fields,
)
from signing_gateway.resilience.drain import EXEMPT_PATHS
from signing_gateway.runtime.cpu_gate import ARRIVED_AT


class CallerTimeoutMiddleware:
    """Bind the caller's requested budget for the duration of its request."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap the next ASGI app."""
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Parse the header (if any), bind it, and call the app.

        Without the header this hands back the app's own awaitable: no frame of this
        middleware then stays on the stack for the whole signer wait of the request.
        """
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            # Probes and metrics do no signer work: the header means nothing to them.
            return self.app(scope, receive, send)
        values = request_timeout_fields(scope)
        if not values:
            return self.app(scope, receive, send)
        return self._bound(scope, receive, send, values)

    async def _bound(self, scope: Scope, receive: Receive, send: Send, values: list[bytes]) -> None:
        try:
            seconds = parse_request_timeout_fields(values)
        except ValueError:
            await _bad_header(scope, send, repeated=len(values) > 1)
            return
        # Counted from arrival: the CPU gate notes when the request came in, before it waited
        # there for a permit (see runtime/cpu_gate).
        arrived = scope.get(ARRIVED_AT)
        if arrived is None:
            arrived = asyncio.get_running_loop().time()
        token = caller_budget_var.set(CallerBudget(arrived, seconds))
        try:
            await self.app(scope, receive, send)
        finally:
            caller_budget_var.reset(token)


async def _bad_header(scope: Scope, send: Send, *, repeated: bool) -> None:
    detail = f"{REQUEST_TIMEOUT_HEADER} must be a positive number of seconds"
    if repeated:
        detail += ", given once"
    await send_problem(
        send,
        scope,
        status=400,
        type_=PROBLEM_BASE + "bad-request",
        title="Bad request",
        detail=detail,
    )
