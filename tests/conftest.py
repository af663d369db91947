"""Shared fixtures for the whole suite.

Every async test runs with blockbuster switched on: a blocking call (``time.sleep``, sync file or
socket I/O, a blocking lock) made on the event loop from ``signing_gateway`` or ``fake_signer``
code fails the test with ``BlockingError``. Sync tests are left alone: they own their thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

#: Blocking is reported when one of these packages is on the stack of the blocking call, so a
#: library blocking on our behalf counts too; the test code itself is not scanned (a test may
#: start a subprocess synchronously before it awaits anything).
SCANNED_PACKAGES = ["signing_gateway", "fake_signer"]


@pytest.fixture(autouse=True)
def blocking_detector(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail any async test whose code blocks the event loop (sync tests are not watched)."""
    if not inspect.iscoroutinefunction(request.function):
        yield None
        return
    with blockbuster_ctx(SCANNED_PACKAGES) as detector:
        yield detector
