"""Strict CBOR decoding: one item, no repeated map key, every legitimate encoding still read."""

from __future__ import annotations

import pytest

from signing_gateway.verification.cbor import decode_item
from signing_gateway.verification.errors import CredentialVerificationError


def reason_of(hex_text: str) -> str:
    """The reason decode_item refuses the CBOR written as ``hex_text`` with."""
    with pytest.raises(CredentialVerificationError) as caught:
        decode_item(bytes.fromhex(hex_text), "item")
    assert "item" in caught.value.detail
    return caught.value.reason


@pytest.mark.parametrize(
    "hex_text",
    [
        "a2 01 01 01 02",
        "a2 01 01 1b0000000000000001 02",
        "a2 390103 01 3a00000103 02",
        "a2 6161 01 7f6161ff 02",
        "a2 7f61616162ff 01 7f62616161ff 02",
        "a2 4161 01 5f4161ff 02",
        "a2 01 01 f93c00 02",
        "a2 01 01 f5 02",
        "bf 01 01 01 02 ff",
        "a1 01 81 a2 01 01 01 02",
        "d2 84 40 a2 04 41 01 04 41 02 40 40",
        "a2 a10101 01 a10101 02",
    ],
    ids=[
        "int-twice",
        "int-minimal-and-8-byte-head",
        "minus-260-in-3-and-5-bytes",
        "text-definite-and-chunked",
        "text-chunked-two-ways",
        "bytes-definite-and-chunked",
        "int-and-half-float",
        "int-and-true",
        "indefinite-map",
        "nested-in-array",
        "inside-cose-tag",
        "map-as-key",
    ],
)
def test_repeated_map_key_is_refused(hex_text):
    """Two keys with the same decoded value in one map, at any depth, give decode-failed."""
    with pytest.raises(CredentialVerificationError) as caught:
        decode_item(bytes.fromhex(hex_text), "item", outer_tag=18)
    assert caught.value.reason == "decode-failed"
    assert caught.value.detail.endswith("repeats a map key")


@pytest.mark.parametrize(
    "hex_text",
    ["a10102 00", "a10102 a10103", "80 ff", "d2 80 d2 80", "4100 41"],
    ids=["zero-byte", "second-map", "stray-break", "second-tag", "truncated-second-item"],
)
def test_bytes_after_the_item_are_refused(hex_text):
    """Anything after the one top-level item, even a well-formed second item, is refused."""
    assert reason_of(hex_text) == "decode-failed"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"\x81" * 10_000 + b"\x00",
        b"\xa1\x01" * 10_000 + b"\x00",
        b"\xc6" * 10_000 + b"\x00",
        b"\x62\xc3\x28",
    ],
    ids=["empty", "break", "huge-array", "deep-arrays", "deep-maps", "deep-tags", "bad-utf8"],
)
def test_malformed_or_too_deep_input_is_decode_failed(data):
    """Malformed and over-deep input give decode-failed, never another exception."""
    with pytest.raises(CredentialVerificationError) as caught:
        decode_item(data, "item")
    assert caught.value.reason == "decode-failed"


@pytest.mark.parametrize(
    ("hex_text", "expected"),
    [
        ("a2 01 01 6131 02", {1: 1, "1": 2}),
        ("a2 4131 01 6131 02", {b"1": 1, "1": 2}),
        ("a2 01 01 20 02", {1: 1, -1: 2}),
        ("bf 1b0000000000000001 7f6141ff 3b0000000000000103 9f01ff ff", {1: "A", -260: [1]}),
        ("83 f93e00 fa47c35040 fb3fb999999999999a", [1.5, 100000.5, 0.1]),
        ("5f 4161 4162 ff", b"ab"),
    ],
    ids=[
        "int-and-text",
        "bytes-and-text",
        "one-and-minus-one",
        "non-minimal-indefinite",
        "float-widths",
        "chunked-bytes",
    ],
)
def test_valid_encodings_decode(hex_text, expected):
    """Distinct keys, non-minimal heads, indefinite lengths and any float width are accepted."""
    assert decode_item(bytes.fromhex(hex_text), "item") == expected


@pytest.mark.parametrize("opener", ["81", "a101"], ids=["arrays", "maps"])
def test_nesting_is_capped_at_400_containers(opener):
    """400 nested arrays or maps decode; one more level is decode-failed, as the module states."""
    assert decode_item(bytes.fromhex(opener * 400 + "00"), "item") is not None
    assert reason_of(opener * 401 + "00") == "decode-failed"
