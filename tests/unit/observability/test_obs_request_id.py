"""Which request id a caller's X-Request-ID becomes: kept when short and safe to log, else new."""

from __future__ import annotations

import re

import pytest

from signing_gateway.observability.context import (
    accept_or_generate,
    current_request_id,
    request_id_of,
)

MINTED = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize("given", ["a", "x" * 128, "trace-7:x.y_z", "AZaz09._:-"])
def test_a_short_safe_id_is_kept(given: str):
    """Letters, digits and `._:-`, 1 to 128 of them."""
    assert accept_or_generate(given) == given


@pytest.mark.parametrize(
    "given",
    ["x" * 129, "", "two words", "a/b", "é", "abc\n", "id\r\nX-Injected: 1", "a\tb", "{}"],
)
def test_anything_else_is_replaced_by_a_minted_id(given: str):
    """Too long, empty, or holding what could break or forge a log line: a new id instead."""
    assert MINTED.fullmatch(accept_or_generate(given))


def test_minted_ids_are_32_hex_digits_and_new_each_time():
    """A uuid4 in hex: no dashes, never the same twice."""
    first, second = accept_or_generate(None), accept_or_generate(None)
    assert MINTED.fullmatch(first)
    assert first != second


def test_only_the_x_request_id_header_is_read():
    """Other headers, whatever they hold, are not the request id."""
    headers = [(b"x-correlation-id", b"corr-1"), (b"x-request-id", b"req-1")]
    assert request_id_of(headers) == "req-1"
    assert MINTED.fullmatch(request_id_of([(b"x-correlation-id", b"corr-1")]))


@pytest.mark.parametrize(
    "values", [[b"req-1", b"req-2"], [b"req-1", b"req-1"], [b"req-1", b"two words"]]
)
def test_an_id_given_twice_is_replaced_by_a_minted_id(values: list[bytes]):
    """Two X-Request-ID fields are one list of two (`req-1, req-2`), which is no id: a new one.

    The first was kept, though a proxy in front may have logged the other.
    """
    headers = [(b"x-request-id", values[0]), (b"accept", b"*/*"), (b"x-request-id", values[1])]
    assert MINTED.fullmatch(request_id_of(headers))
    assert request_id_of(headers[:2]) == "req-1"


def test_outside_a_request_the_id_is_a_dash():
    """What logs written outside any request show (and leave out)."""
    assert current_request_id() == "-"
