"""Shared fixtures for the whole suite.

Every test runs with blockbuster switched on: a blocking call (``time.sleep``, sync file or
socket I/O, a blocking lock) made on a running event loop from ``signing_gateway`` or
``fake_signer`` code fails the test. That holds for an ``async def`` test, a Hypothesis test of a
coroutine, and a sync test that drives a loop itself (``asyncio.Runner``, a server thread); code
with no loop running in its thread (a sync test's own code, a worker thread) may block.

A blocking call raises ``BlockingError`` where it is made, and code that catches every exception
(a readiness probe, a refresher loop, a log handler) would hide it; so each one is also noted, and
the test fails at teardown for any that it did not say it expected.

An error an event loop reports to its default exception handler (a task's exception never
retrieved, a callback that raised) is only logged by asyncio; it fails the test here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import blockbuster.blockbuster
import pytest
from blockbuster import BlockBuster, BlockingError, blockbuster_ctx

#: Blocking is reported when one of these packages is on the stack of the blocking call, so a
#: library blocking on our behalf counts too; the test code itself is not scanned (a test may
#: start a subprocess synchronously before it awaits anything).
SCANNED_PACKAGES = ["signing_gateway", "fake_signer"]

#: Library functions that may block on the loop: FastAPI looks up an endpoint's source file once,
#: on the endpoint's first request, for its error messages, and keeps what it found.
MAY_BLOCK = [("fastapi/routing.py", "_extract_endpoint_context")]

#: Whether a test's setup or call failed: its teardown then reports no blocking call again.
FAILED = pytest.StashKey[bool]()


@dataclass
class BlockingCalls:
    """One test's detector and the blocking calls it caught, whether caught again or not."""

    detector: BlockBuster
    seen: list[BlockingError] = field(default_factory=list)

    def expected(self) -> list[BlockingError]:
        """Take the calls seen so far as meant (a test of the detector): they fail no test."""
        seen = self.seen[:]
        self.seen.clear()
        return seen


#: The calls of the running test; blockbuster raises this class where a call blocks.
_noted: list[BlockingError] = []


class NotedBlockingError(BlockingError):
    """A `BlockingError` that notes itself for the running test's teardown."""

    def __init__(self, func: str) -> None:
        super().__init__(func)
        _noted.append(self)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note on the item whether its setup or call failed."""
    report = yield
    if call.when in {"setup", "call"} and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def blocking_detector(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BlockingCalls]:
    """Fail any test whose package code blocks a running event loop, even if that is caught."""
    monkeypatch.setattr(blockbuster.blockbuster, "BlockingError", NotedBlockingError)
    _noted.clear()
    with blockbuster_ctx(SCANNED_PACKAGES) as detector:
        for function in detector.functions.values():
            for filename, name in MAY_BLOCK:
                function.can_block_in(filename, name)
        yield BlockingCalls(detector, _noted)
    unexpected = [str(call) for call in _noted]
    _noted.clear()
    if unexpected and not request.node.stash.get(FAILED, False):
        pytest.fail(f"blocking calls on the event loop, caught where they were made: {unexpected}")


@pytest.fixture(autouse=True)
def loop_errors(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[dict[str, Any]]]:
    """Fail any test whose event loop had an error that nothing handled but asyncio's log."""
    errors: list[dict[str, Any]] = []
    default = asyncio.BaseEventLoop.default_exception_handler

    def noted(loop: asyncio.BaseEventLoop, context: dict[str, Any]) -> None:
        errors.append(context)
        default(loop, context)

    monkeypatch.setattr(asyncio.BaseEventLoop, "default_exception_handler", noted)
    yield errors
    unexpected = [f"{c.get('message')}: {c.get('exception')!r}" for c in errors]
    if unexpected and not request.node.stash.get(FAILED, False):
        pytest.fail(f"errors the event loop only logged: {unexpected}")
