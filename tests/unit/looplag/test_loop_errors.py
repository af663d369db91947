"""An error the event loop only logs fails the test that caused it (tests/conftest.py).

Each test here causes one on purpose, checks it was noted, and then takes it as expected.
"""

from __future__ import annotations

import asyncio


async def _fail() -> None:
    raise RuntimeError("nobody awaits this")


async def test_a_task_exception_never_retrieved_is_noted(loop_errors) -> None:
    """A failed task dropped without a look at its exception: asyncio logs it, the test sees it."""
    task = asyncio.get_running_loop().create_task(_fail())
    await asyncio.wait([task])
    del task  # the task's finaliser reports the exception nobody retrieved
    assert [(e["message"], str(e["exception"])) for e in loop_errors] == [
        ("Task exception was never retrieved", "nobody awaits this")
    ]
    loop_errors.clear()


async def test_a_callback_that_raised_is_noted(loop_errors) -> None:
    """A `call_soon` callback that raised: asyncio logs it and carries on, the test sees it."""

    def fail() -> None:
        raise RuntimeError("a callback failed")

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_soon(fail)
    loop.call_soon(done.set)
    await done.wait()
    assert [str(e["exception"]) for e in loop_errors] == ["a callback failed"]
    loop_errors.clear()
