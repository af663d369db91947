"""The strict DER reader for Idemix proofs: one encoding per value, nothing trailing."""

from __future__ import annotations

import pytest

from signing_gateway.verification.idemix_der import (
    TAG_INTEGER,
    TAG_PRINTABLE_STRING,
    TAG_SEQUENCE,
    TAG_UTF8_STRING,
    DerError,
    decode_integer,
    decode_string,
    encode_integer,
    encode_sequence,
    read_single,
    sequence_items,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "020100"),
        (127, "02017f"),
        (128, "02020080"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
    ],
)
def test_integers_encode_minimally_and_read_back(value, encoded):
    """INTEGERs are written in minimal two's complement (as Go writes them) and read back."""
    assert encode_integer(value).hex() == encoded
    assert decode_integer((TAG_INTEGER, bytes.fromhex(encoded)[2:]), signed=True) == value


def test_long_lengths_encode_minimally():
    """A 200-byte SEQUENCE gets the one-octet long form, a 300-byte one the two-octet form."""
    assert encode_sequence([b"\x00" * 200])[:3].hex() == "3081c8"
    assert encode_sequence([b"\x00" * 300])[:4].hex() == "3082012c"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty INTEGER"),
        ("0001", "non-minimal"),
        ("007f", "non-minimal"),
        ("ff80", "non-minimal"),
        ("ffff", "non-minimal"),
        ("80", "negative"),
        ("ff7f", "negative"),
    ],
)
def test_malformed_or_negative_integers_are_refused(content, message):
    """Empty, padded and (where unsigned) negative INTEGERs are refused."""
    with pytest.raises(DerError, match=message):
        decode_integer((TAG_INTEGER, bytes.fromhex(content)))


def test_padding_needed_for_the_sign_is_not_redundant():
    """A 0x00 before a byte with its top bit set is needed, and read as positive."""
    assert decode_integer((TAG_INTEGER, bytes.fromhex("0080"))) == 128
    assert decode_integer((TAG_INTEGER, bytes.fromhex("ff7f")), signed=True) == -129


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "empty"),
        ("3004020101", "truncated: content"),
        ("30", "truncated: no length"),
        ("3081", "truncated: length"),
        ("3080020101", "indefinite"),
        ("308103020101", "non-minimal length"),
        ("30820003020101", "non-minimal length"),
        ("3085ffffffffff", "length too long"),
        ("300302010100", "trailing bytes"),
        ("0201ff", "tag 0x02"),
    ],
)
def test_malformed_elements_are_refused(data, message):
    """Truncation, indefinite or padded lengths, trailing bytes and a wrong tag are refused."""
    with pytest.raises(DerError, match=message):
        sequence_items(read_single(bytes.fromhex(data), TAG_SEQUENCE))


def test_sequence_members_must_each_be_whole():
    """A member running past its SEQUENCE's end is refused."""
    with pytest.raises(DerError, match="truncated"):
        sequence_items(read_single(bytes.fromhex("30050205010203"), TAG_SEQUENCE))


def test_strings_are_printable_or_utf8():
    """PrintableString and UTF8String read; characters outside their sets are refused."""
    assert decode_string((TAG_PRINTABLE_STRING, b"VWS-TEST-0")) == "VWS-TEST-0"
    assert decode_string((TAG_UTF8_STRING, "é".encode())) == "é"
    with pytest.raises(DerError, match="PrintableString"):
        decode_string((TAG_PRINTABLE_STRING, b"a_b"))
    with pytest.raises(DerError, match="UTF-8"):
        decode_string((TAG_UTF8_STRING, b"\xff"))
    with pytest.raises(DerError, match="string"):
        decode_string((TAG_INTEGER, b"\x01"))


def test_long_length_with_a_leading_zero_octet_is_refused():
    """A long-form length padded with a zero octet is refused, even where the long form is due."""
    data = bytes.fromhex("30820080") + b"\x04\x7e" + b"\x00" * 126
    with pytest.raises(DerError, match="non-minimal length"):
        read_single(data, TAG_SEQUENCE)
    assert len(read_single(bytes.fromhex("3081 80") + data[4:], TAG_SEQUENCE)) == 128


def test_integer_under_another_tag_is_refused():
    """Only an INTEGER's tag is read as an INTEGER, whatever its content."""
    with pytest.raises(DerError, match="where an INTEGER was expected"):
        decode_integer((TAG_PRINTABLE_STRING, b"\x01"))
