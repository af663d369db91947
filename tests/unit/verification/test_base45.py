"""The verification path's Base45 decoder against RFC 9285 and the base45 package."""

from __future__ import annotations

import base45
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing_gateway.verification.base45 import ALPHABET, b45decode

# RFC 9285, sections 4.3 and 4.4 (the examples, both directions).
RFC_EXAMPLES = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("decoded", "encoded"), RFC_EXAMPLES)
def test_rfc_9285_examples_decode(decoded, encoded):
    """Every example of RFC 9285 decodes to its bytes."""
    assert b45decode(encoded) == decoded


@given(st.binary(max_size=2048))
def test_round_trips_with_the_base45_package(data):
    """Whatever the package encodes, this decoder gives back the same bytes as the package."""
    encoded = base45.b45encode(data).decode("ascii")
    assert b45decode(encoded) == data == base45.b45decode(encoded)


@given(st.text(alphabet=ALPHABET, max_size=64))
def test_agrees_with_the_package_on_any_alphabet_string(text):
    """On any string over the alphabet both accept the same inputs and decode them alike."""
    try:
        expected: bytes | None = base45.b45decode(text)
    except ValueError:
        expected = None
    try:
        got: bytes | None = b45decode(text)
    except ValueError:
        got = None
    assert got == expected


@pytest.mark.parametrize(
    "text",
    [
        "A",  # a dangling character
        "BB8A",  # likewise after a full group
        "GGW",  # a group above 0xFFFF (65536)
        ":::",  # the largest group, far above
        "::",  # a final pair above 0xFF
        "V5",  # a final pair of 0x100, the first value above a byte
        "bb8",  # lower case is outside the alphabet
        "BB8\n",  # no trailing newline is stripped
        "BÉ8",  # not ASCII
        "BB\x008",  # a NUL
    ],
)
def test_refuses_invalid_input(text):
    """Characters outside the alphabet, bad lengths and out-of-range groups raise ValueError."""
    with pytest.raises(ValueError, match="not Base45"):
        b45decode(text)


def test_a_final_pair_of_0xff_is_the_largest_one_decoded():
    """Pin that a final pair of exactly 0xFF ("U5", 30 + 5 * 45) is a byte, not refused."""
    assert b45decode("U5") == b"\xff"
    assert b45decode("BB8U5") == b"AB\xff"


def test_empty_input_is_empty():
    """The empty string decodes to no bytes."""
    assert b45decode("") == b""
