"""CBOR tags: refused wherever they stand, but for one opening tag the caller names.

cbor2 resolves many tags itself (value sharing, string references, bignums, self-describe), so
a tagged item can decode to other content than a reader without those tags sees.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing_gateway.verification.cbor import decode_item
from signing_gateway.verification.errors import CredentialVerificationError
from tests.support.credentials import loose_cbor


def refusal(hex_text: str, outer_tag: int | None = None) -> CredentialVerificationError:
    """The error decode_item refuses the CBOR written as ``hex_text`` with."""
    with pytest.raises(CredentialVerificationError) as caught:
        decode_item(bytes.fromhex(hex_text), "item", outer_tag=outer_tag)
    assert caught.value.reason == "decode-failed"
    return caught.value


TAGGED = {
    "epoch-date-alone": "c1 1a 00000000",
    "in-array": "82 01 c2 41 01",
    "map-value": "a1 01 c2 41 01",
    "map-key": "a1 c2 41 01 01",
    "five-levels-down": "81 81 81 a1 01 81 d8 1c 01",
    "in-indefinite-array": "9f 01 d8 1d 00 ff",
    "in-indefinite-map": "bf 61 61 d9 d9f7 01 ff",
    "value-sharing": "82 d8 1c 02 d8 1d 00",
    "string-reference": "d9 0100 82 63 616263 d8 19 00",
    "bignum-holding-2": "c2 41 02",
    "negative-bignum": "c3 41 01",
    "self-describe-inside": "81 d9 d9f7 01",
    "self-describe-outside": "d9 d9f7 01",
    "two-byte-head-for-tag-2": "d8 02 41 02",
    "eight-byte-head": "81 db 0000000000000012 80",
    "unregistered": "d9 ffff 01",
    "in-chunked-string": "5f c2 41 01 ff",
    "after-the-item": "01 c2 41 01",
}


@pytest.mark.parametrize("hex_text", TAGGED.values(), ids=TAGGED.keys())
def test_a_tag_anywhere_is_refused(hex_text):
    """A tag at the top, in an array or map, as a key, or nested deep gives decode-failed."""
    assert "holds a CBOR tag" in refusal(hex_text).detail


@pytest.mark.parametrize("hex_text", ["dc", "dd 01", "de 01", "df 01"])
def test_reserved_tag_heads_are_refused(hex_text):
    """Major type 6 with reserved additional information (28-31) gives decode-failed."""
    assert "holds a CBOR tag" in refusal(hex_text).detail


@pytest.mark.parametrize(
    "hex_text",
    ["d2 84 40 a0 40 40", "d8 12 84 40 a0 40 40", "db 0000000000000012 84 40 a0 40 40"],
    ids=["one-byte-head", "two-byte-head", "nine-byte-head"],
)
def test_the_named_outer_tag_is_accepted(hex_text):
    """The opening tag the caller names decodes, in its shortest head or a longer one."""
    item = decode_item(bytes.fromhex(hex_text), "item", outer_tag=18)
    assert isinstance(item, cbor2.CBORTag)
    assert (item.tag, list(item.value)) == (18, [b"", {}, b"", b""])


@pytest.mark.parametrize(
    "hex_text",
    [
        "d2 d2 84 40 a0 40 40",
        "d9 d9f7 d2 84 40 a0 40 40",
        "d3 84 40 a0 40 40",
        "d8 13 84 40 a0 40 40",
        "d9 d9f7 84 40 a0 40 40",
        "d2 84 40 a1 04 c2 41 01 40 40",
        "84 40 a1 04 d2 41 01 40 40",
    ],
    ids=[
        "tag-18-twice",
        "self-describe-around-it",
        "another-outer-tag",
        "another-outer-tag-in-a-two-byte-head",
        "self-describe-in-its-place",
        "tag-inside-it",
        "tag-18-not-outermost",
    ],
)
def test_only_the_one_outer_tag_is_accepted(hex_text):
    """Beyond the single opening tag named, any tag, 18 or 55799 included, gives decode-failed."""
    assert "holds a CBOR tag" in refusal(hex_text, outer_tag=18).detail


def test_a_tag_is_refused_when_no_outer_tag_is_named():
    """Without outer_tag, even a COSE_Sign1 tag at the top gives decode-failed."""
    assert "holds a CBOR tag" in refusal("d2 84 40 a0 40 40").detail


TAG_BYTES_AS_CONTENT = {
    "byte-string": ("41 c2", b"\xc2"),
    "every-tag-byte-in-bytes": ("58 1c" + bytes(range(0xC0, 0xDC)).hex(), bytes(range(0xC0, 0xDC))),
    "two-byte-length": ("59 0020" + "d9" * 32, b"\xd9" * 32),
    "text": ("62 c380", "\u00c0"),
    "chunked-text": ("7f 62 c380 62 c381 ff", "\u00c0\u00c1"),
    "chunked-bytes": ("5f 41 d2 42 d81c ff", b"\xd2\xd8\x1c"),
    "map-key": ("a1 41 c6 01", {b"\xc6": 1}),
    "last-bytes-of-input": ("82 01 43 c2 4101", [1, b"\xc2\x41\x01"]),
}


@pytest.mark.parametrize(
    ("hex_text", "expected"), TAG_BYTES_AS_CONTENT.values(), ids=TAG_BYTES_AS_CONTENT.keys()
)
def test_tag_byte_values_inside_strings_are_content(hex_text, expected):
    """Bytes 0xc0-0xdb inside a text or byte string are content, never read as a tag."""
    assert decode_item(bytes.fromhex(hex_text), "item") == expected


@pytest.mark.parametrize(
    ("hex_text", "expected"),
    [
        ("9f 01 9f 02 ff ff", [1, [2]]),
        ("bf 61 61 bf 61 62 02 ff ff", {"a": {"b": 2}}),
        ("9f 5f 41 c0 ff 7f 61 61 ff bf ff ff", [b"\xc0", "a", {}]),
        ("82 f9 3c00 fb 3ff0000000000000", [1.0, 1.0]),
    ],
    ids=["nested-arrays", "nested-maps", "strings-and-empty-map", "floats"],
)
def test_untagged_indefinite_items_decode(hex_text, expected):
    """Indefinite-length arrays, maps and strings with no tag decode as before."""
    assert decode_item(bytes.fromhex(hex_text), "item") == expected


TRUNCATED = {
    "length-byte-missing": "78",
    "length-cut": "59 01",
    "content-short": "59 0005 4142",
    "four-byte-length-beyond-end": "5a 00000100 41",
    "eight-byte-length-huge": "5b ffffffffffffffff",
    "integer-head-cut": "1b 0000",
    "float-cut": "fb 3ff0",
    "array-short": "82 01",
    "map-value-missing": "a1 01",
    "indefinite-array-open": "9f 01",
    "chunked-text-open": "7f 61 61",
    "outer-tag-alone": "d2",
}


@pytest.mark.parametrize("hex_text", TRUNCATED.values(), ids=TRUNCATED.keys())
def test_truncated_input_is_refused(hex_text):
    """Input that ends inside a head, a string or a container gives decode-failed."""
    refusal(hex_text, outer_tag=18)


@pytest.mark.parametrize("hex_text", ["1c", "3d", "5e", "9f 1f ff", "fc"])
def test_reserved_heads_are_refused(hex_text):
    """Additional information 28-30, or an indefinite-length integer, gives decode-failed."""
    refusal(hex_text)


LABELS = st.text(max_size=4) | st.integers(-(2**63), 2**63 - 1)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
UNTAGGED = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(LABELS, inner, max_size=4),
    max_leaves=20,
)
MAYBE_TAGGED = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(LABELS, inner, max_size=4)
        | st.builds(cbor2.CBORTag, st.integers(0, 2**64 - 1), inner)
    ),
    max_leaves=20,
)


def holds_a_tag(value: Any) -> bool:
    """Whether ``value`` is, or holds at any depth, a CBORTag."""
    if isinstance(value, cbor2.CBORTag):
        return True
    if isinstance(value, dict):
        return any(map(holds_a_tag, value.values()))
    return isinstance(value, list) and any(map(holds_a_tag, value))


@given(UNTAGGED)
def test_any_untagged_item_decodes_in_either_encoding(value):
    """Any untagged item decodes to itself, written minimally or with every liberty allowed."""
    assert decode_item(cbor2.dumps(value), "item") == value
    assert decode_item(loose_cbor(value), "item") == value


@given(MAYBE_TAGGED)
def test_an_item_is_refused_exactly_when_it_holds_a_tag(value):
    """Wherever a tag of any number stands, the item is refused; with none it decodes."""
    data = cbor2.dumps(value)
    if holds_a_tag(value):
        assert "holds a CBOR tag" in refusal(data.hex()).detail
    else:
        assert decode_item(data, "item") == value
