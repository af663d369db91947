"""What the JSON checks of a body and of a commitment cost grows with its levels, not its values.

The largest body the limits take held the event loop (or a worker, holding the GIL) for 25 to
35 ms when each of its values cost the checks a Python step: its shape walked value by value,
each object handed to a Python hook. Counted here as the functions the checks call, which
does not depend on the machine: a body of eight times the values must not call more. Beside
it, the checks that find it without those steps must answer as the step by step ones do.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing_gateway.issuance import commitment
from signing_gateway.security.limits import RequestLimitsMiddleware
from signing_gateway.security.settings import LimitsSettings
from tests.support.profiling import calls_made

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
NONCE = base64.b64encode(b"0123456789abcdef").decode()


def _calls(check: Callable[[], object]) -> int:
    """How many functions, Python's and the builtins, `check` calls (and they call).

    Counted on its second run: the first may make what is made once (a regular expression).
    """
    check()
    return len(calls_made(check))


def _array(item: str, count: int) -> bytes:
    return b"[" + b",".join([ITEMS[item]] * count) + b"]"


def _commitment(item: str, count: int) -> bytes:
    """A commitment (decoded) holding `count` of `item` beside the session's nonce."""
    return b'{"issuerNonce":"%s","x":%s}' % (NONCE.encode(), _array(item, count))


@pytest.mark.parametrize("item", ITEMS)
def test_the_body_check_takes_no_step_per_value(item: str) -> None:
    """A body of eight times the values costs the body check no more calls."""
    middleware = RequestLimitsMiddleware(None, limits=LimitsSettings())  # type: ignore[arg-type]
    few, many = (b'{"a":%s}' % _array(item, n) for n in (FEW, FEW * TIMES))
    assert len(many) <= LimitsSettings().max_body_bytes
    assert _calls(lambda: middleware._check_json(many)) <= _calls(
        lambda: middleware._check_json(few)
    )


@pytest.mark.parametrize("item", ITEMS)
def test_the_commitment_checks_take_no_step_per_value(item: str) -> None:
    """A commitment of eight times the values costs its checks no more calls, both of them."""
    limits = LimitsSettings()
    few, many = (_commitment(item, n) for n in (FEW, FEW * TIMES))
    assert len(many) <= commitment.MAX_COMMITMENT_BYTES

    def shape(document: bytes) -> Callable[[], object]:
        text = base64.b64encode(document).decode()
        return lambda: commitment._checked(text, limits, ("issueCommitmentMessage",))

    def simulation(document: bytes) -> Callable[[], object]:
        return lambda: commitment._simulation_problem(document, NONCE)

    assert shape(many)() == many
    assert simulation(many)() is None
    assert _calls(shape(many)) <= _calls(shape(few))
    assert _calls(simulation(many)) <= _calls(simulation(few))


#: JSON texts, most of them valid: objects that may repeat a key (escaped or not), numbers
#: past a double's range and past `int()`'s digits, lone surrogates, NaN, text after the end.
_keys = st.sampled_from(['"a"', '"b"', '"a:"', '"a\\u003a"', '"\\ud800"', '"\\u0061"'])
_scalars = st.sampled_from(["0", "1e999", "9" * 5000, '""', '":"', '"\\udc00"', "NaN", "null"])
_documents = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        | st.lists(st.tuples(_keys, children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    document=_documents,
    after=st.sampled_from(["", " ", "x", "}", ',"a":1}']),
    max_depth=st.integers(1, 4),
    max_chars=st.integers(1, 4),
)
def test_the_commitment_shape_is_judged_as_the_parser_meets_it(
    document: str, after: str, max_depth: int, max_chars: int
) -> None:
    """Pin the commitment check to the answer of one parse with a hook per object."""
    limits = LimitsSettings(max_json_depth=max_depth, max_json_string_chars=max_chars)
    raw = (document + after).encode()
    assert commitment._shape_problem(raw, limits) == commitment._problem_in_order(raw, limits)


def test_a_deeply_nested_commitment_is_judged_as_the_parser_meets_it() -> None:
    """Pin the answer for nesting past what orjson writes and past the parser's recursion."""
    limits = LimitsSettings()
    for depth in (300, sys.getrecursionlimit() + 10):
        raw = json.dumps({"a": 1}).encode()[:-1] + b',"b":' + b"[" * depth + b"]" * depth + b"}"
        assert commitment._shape_problem(raw, limits) == commitment._problem_in_order(raw, limits)
