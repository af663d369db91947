"""One overall deadline per inbound request, around all of its signer work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from signing_gateway.errors import DeadlineExceeded, GatewayError


@asynccontextmanager
async def request_deadline(seconds: float) -> AsyncIterator[None]:
    """Cancel the enclosed signer work after `seconds` and answer 504 instead."""
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            yield
    except TimeoutError as exc:
        if scope.expired():
            raise DeadlineExceeded(
                f"the signers did not finish within {seconds:g} s; nothing was issued"
            ) from exc
        raise


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_leaf(exc)
        if isinstance(exc, GatewayError):
            return exc
    return group


async def all_or_nothing(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run `calls` concurrently; on the first failure cancel the rest and raise that failure.

    The failure raised is the first gateway error (it names its part); anything else is a bug
    and propagates as the exception group.
    """
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    try:
        async with asyncio.TaskGroup() as group:
            for index, call in enumerate(calls):
                group.create_task(run(index, call))
    except BaseExceptionGroup as eg:
        leaf = _first_leaf(eg)
        if leaf is eg:
            raise
        raise leaf from None
    return results
