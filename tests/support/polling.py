"""Waiting in async tests for something to happen: poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    predicate: Callable[[], object], limit: float = 5.0, *, interval: float = 0.01
) -> None:
    """Return once `predicate()` is true; fail the test if it is not within `limit` seconds.

    `interval` is the wait between looks: 0 looks at every turn of the loop, for a state that
    lasts only milliseconds.
    """
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(interval)


async def until_answered(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], object], limit: float = 5.0
) -> T:
    """Return the first answer of `probe()` that is `done`; fail the test if none is in `limit` s.

    For a condition only an await can read, such as a field of /readyz.
    """
    deadline = time.monotonic() + limit
    while not done(answer := await probe()):
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)
    return answer
