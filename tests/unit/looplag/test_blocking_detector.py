"""The suite-wide blocking detector is really on for async tests (and off for sync ones)."""

from __future__ import annotations

import pytest
from blockbuster import BlockingError

from signing_gateway.domain.valuesets import ValueSetName, value_set


async def test_sync_file_read_on_the_loop_fails_an_async_test() -> None:
    """Reading a package file from gateway code inside a coroutine raises BlockingError."""
    uncached = value_set.__wrapped__  # the file read behind the start-up cache
    with pytest.raises(BlockingError):
        uncached(ValueSetName.TEST_RESULT)


def test_sync_tests_may_read_files() -> None:
    """Outside a running loop the same read is allowed: the detector watches the loop only."""
    uncached = value_set.__wrapped__
    assert "260415000" in uncached(ValueSetName.TEST_RESULT)
