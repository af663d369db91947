"""The suite-wide blocking detector is really on wherever gateway code runs on a loop.

Each test here makes a blocking call on purpose, checks it was seen, and then takes it as
expected, so that the detector's own teardown check lets the test pass.
"""

from __future__ import annotations

import asyncio

import pytest
from blockbuster import BlockingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signing_gateway.domain.valuesets import ValueSetName, value_set
from signing_gateway.observability.readiness import ReadinessMonitor

#: The file read behind the start-up cache: gateway code that blocks when run on a loop.
uncached = value_set.__wrapped__


async def _read_value_set() -> None:
    uncached(ValueSetName.TEST_RESULT)


async def test_sync_file_read_on_the_loop_fails_an_async_test(blocking_detector) -> None:
    """Reading a package file from gateway code inside a coroutine raises BlockingError."""
    with pytest.raises(BlockingError):
        await _read_value_set()
    assert len(blocking_detector.expected()) == 1


def test_sync_tests_may_read_files(blocking_detector) -> None:
    """Outside a running loop the same read is allowed: the detector watches the loop only."""
    assert "260415000" in uncached(ValueSetName.TEST_RESULT)
    assert blocking_detector.expected() == []


def test_a_sync_test_running_a_loop_is_watched(blocking_detector) -> None:
    """A sync test that drives a loop itself (as the OpenAPI fuzzer does) is watched on it."""
    with asyncio.Runner() as runner, pytest.raises(BlockingError):
        runner.run(_read_value_set())
    assert len(blocking_detector.expected()) == 1


# The detector is one for the whole test, every example included: that is what is wanted here.
@settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(example=st.integers())
async def test_a_hypothesis_test_of_a_coroutine_is_watched(blocking_detector, example) -> None:
    """A Hypothesis test of a coroutine is a sync function to pytest, yet it is watched."""
    assert isinstance(example, int)
    with pytest.raises(BlockingError):
        await _read_value_set()
    assert len(blocking_detector.expected()) == 1


async def test_a_blocking_call_caught_by_gateway_code_is_still_seen(blocking_detector) -> None:
    """A readiness probe takes any exception as "down": the call is seen all the same."""
    monitor = ReadinessMonitor({"eu": (_read_value_set, True)}, interval=60, timeout=1)
    await monitor.check_now()
    assert monitor.states["eu"].status == "down"
    assert len(blocking_detector.expected()) == 1
