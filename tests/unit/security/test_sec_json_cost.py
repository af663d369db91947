"""What the JSON checks of a body cost grows with its levels, not its values.

The largest body the limits take held the event loop (or a worker, holding the GIL) for 25 to
35 ms when each of its values cost the checks a Python step: its shape walked value by value,
each object handed to a Python hook. Counted here as the functions the checks call, which
does not depend on the machine: a body of eight times the values must not call more. Beside
it, the checks that find it without those steps must answer as the step by step ones do.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from types import FrameType

import pytest

from signing_gateway.security.limits import RequestLimitsMiddleware
from signing_gateway.security.settings import LimitsSettings

#: The values a large body or commitment can be made of, each a step of its own before.
ITEMS = {
    "empty objects": b"{}",
    "empty arrays": b"[]",
    "zeros": b"0",
    "fractions": b"0.5",
    "strings": b'"a:b"',
    "one-member objects": b'{"a":0}',
    "two-member objects": b'{"a":0,"b":[]}',
    "mixed": b'0,{"a":{}},[[]]',
}
#: Values in the smaller document (more than the checks walk one by one), and how many times
#: more the larger holds.
FEW, TIMES = 500, 8


def _calls(check: Callable[[], object]) -> int:
    """How many functions, Python's and the builtins, `check` calls (and they call).

    Counted on its second run: the first may make what is made once (a regular expression).
    The collector is off meanwhile: what it calls back (`gc.callbacks`) is not the check's.
    """
    check()
    calls = 0

    def count(_frame: FrameType, event: str, _arg: object) -> None:
        nonlocal calls
        calls += event in {"call", "c_call"}

    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(count)
    try:
        check()
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    return calls


def _array(item: str, count: int) -> bytes:
    return b"[" + b",".join([ITEMS[item]] * count) + b"]"


@pytest.mark.parametrize("item", ITEMS)
def test_the_body_check_takes_no_step_per_value(item: str) -> None:
    """A body of eight times the values costs the body check no more calls."""
    middleware = RequestLimitsMiddleware(None, limits=LimitsSettings())  # type: ignore[arg-type]
    few, many = (b'{"a":%s}' % _array(item, n) for n in (FEW, FEW * TIMES))
    assert len(many) <= LimitsSettings().max_body_bytes
    assert _calls(lambda: middleware._check_json(many)) <= _calls(
        lambda: middleware._check_json(few)
    )
