"""SharedFields: one object per repeating header field, in bounded tables."""

from __future__ import annotations

from signing_gateway.runtime.header_fields import (
    MAX_KEPT,
    MAX_NAME_BYTES,
    MAX_VALUE_BYTES,
    SharedFields,
)

TOKEN = b"Bearer " + b"t" * 700


def _fresh(value: bytes) -> bytes:
    """An equal bytes object that is not `value` itself, as each parsed request has."""
    return bytes(bytearray(value))


def test_a_repeating_field_is_one_tuple_for_every_request():
    """The same token on two requests: the second gets the first request's tuple."""
    shared = SharedFields()
    first = shared.field(b"authorization", _fresh(TOKEN))
    second = shared.field(_fresh(b"authorization"), _fresh(TOKEN))
    assert second == (b"authorization", TOKEN)
    assert second is first


def test_different_values_are_different_fields():
    """Another token is its own field; neither replaces the other."""
    shared = SharedFields()
    one = shared.field(b"authorization", b"Bearer a")
    other = shared.field(b"authorization", b"Bearer b")
    assert other == (b"authorization", b"Bearer b")
    assert shared.field(b"authorization", _fresh(b"Bearer a")) is one


def test_a_field_that_differs_per_request_shares_only_its_name():
    """`x-request-id` and `content-length` keep their own values, under one name object."""
    shared = SharedFields()
    first = shared.field(b"x-request-id", b"one")
    second = shared.field(_fresh(b"x-request-id"), _fresh(b"one"))
    assert second == first
    assert second is not first
    assert second[0] is first[0]
    assert second[1] is not first[1]


def test_a_full_table_is_emptied_and_sharing_goes_on():
    """A caller sending a new value each time cannot grow the tables past their bound."""
    shared = SharedFields()
    largest = 0
    for n in range(3 * MAX_KEPT):
        shared.field(f"x-n{n}".encode(), b"v")
        shared.field(b"user-agent", str(n).encode())
        largest = max(largest, len(shared._names), len(shared._fields))
    assert largest == MAX_KEPT
    kept = shared.field(b"user-agent", b"same")
    assert shared.field(b"user-agent", _fresh(b"same")) is kept


def test_long_names_and_values_are_kept_per_request_only():
    """Nothing longer than the bounds is kept: a caller cannot pin large fields in the table."""
    shared = SharedFields()
    long_value = b"Bearer " + b"x" * MAX_VALUE_BYTES
    long_name = b"x-" + b"n" * MAX_NAME_BYTES
    one = shared.field(b"authorization", long_value)
    assert shared.field(b"authorization", _fresh(long_value)) is not one
    shared.field(long_name, b"v")
    assert all(len(value) <= MAX_VALUE_BYTES for _, value in shared._fields)
    assert long_name not in shared._names


def test_only_the_named_fields_share_their_values():
    """A table without `authorization` among its names keeps no token."""
    shared = SharedFields(frozenset({b"host"}))
    first = shared.field(b"authorization", b"Bearer t")
    assert shared.field(b"authorization", _fresh(b"Bearer t")) is not first
    assert shared.field(b"host", b"g") is shared.field(b"host", _fresh(b"g"))


def test_names_and_values_of_exactly_the_bounds_are_shared():
    """The bounds are inclusive: names of MAX_NAME_BYTES and values of MAX_VALUE_BYTES are kept."""
    shared = SharedFields()
    name = b"x-" + b"n" * (MAX_NAME_BYTES - 2)
    assert shared.field(name, b"v")[0] is shared.field(_fresh(name), b"v")[0]
    value = b"Bearer " + b"x" * (MAX_VALUE_BYTES - 7)
    one = shared.field(b"authorization", value)
    assert shared.field(b"authorization", _fresh(value)) is one
