"""The DER that Idemix (gabi, CoronaCheck) writes: a strict reader and the few encoders needed.

Go's ``encoding/asn1`` marshals the proofs of an NL2 QR, the credential metadata and the
input of gabi's Fiat-Shamir hash (``HashCommit``: a SEQUENCE of INTEGERs). Only what those
use is read: SEQUENCE, INTEGER, OCTET STRING and the two string types Go writes for a Go
``string`` (PrintableString, UTF8String).

The reader refuses what Go never writes, so that one proof has one encoding: trailing bytes,
an indefinite or non-minimal length, a non-minimal INTEGER, an empty one. Every refusal is a
`DerError` (a ValueError).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "TAG_INTEGER",
    "TAG_OCTET_STRING",
    "TAG_PRINTABLE_STRING",
    "TAG_SEQUENCE",
    "TAG_UTF8_STRING",
    "DerError",
    "decode_integer",
    "decode_string",
    "encode_integer",
    "encode_octet_string",
    "encode_printable_string",
    "encode_sequence",
    "read_single",
    "sequence_items",
]

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_UTF8_STRING = 0x0C
TAG_PRINTABLE_STRING = 0x13
TAG_SEQUENCE = 0x30

_SHORT_FORM_MAX = 0x7F
_LONG_FORM = 0x80
#: Length octets a long-form length may use: 4 covers any input this reader is handed.
_MAX_LENGTH_OCTETS = 4
_PRINTABLE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)


class DerError(ValueError):
    """Raised when bytes are not the DER this reader takes."""


def _read_length(data: bytes, offset: int) -> tuple[int, int]:
    """The length at ``offset`` and the offset after it; minimal form only."""
    if offset >= len(data):
        raise DerError("truncated: no length")
    first = data[offset]
    offset += 1
    if first <= _SHORT_FORM_MAX:
        return first, offset
    count = first & _SHORT_FORM_MAX
    if count == 0:
        raise DerError("indefinite length")
    if count > _MAX_LENGTH_OCTETS:
        raise DerError("length too long")
    octets = data[offset : offset + count]
    if len(octets) != count:
        raise DerError("truncated: length")
    length = int.from_bytes(octets, "big")
    if octets[0] == 0 or length <= _SHORT_FORM_MAX:
        raise DerError("non-minimal length")
    return length, offset + count


def _read_element(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, content, offset after the element) of the element at ``offset``."""
    tag = data[offset]
    length, start = _read_length(data, offset + 1)
    end = start + length
    if end > len(data):
        raise DerError("truncated: content")
    return tag, data[start:end], end


def read_single(data: bytes, tag: int) -> bytes:
    """The content of ``data``, which must be exactly one element with ``tag``."""
    if not data:
        raise DerError("empty")
    found, content, end = _read_element(data, 0)
    if found != tag:
        raise DerError(f"tag 0x{found:02x} where 0x{tag:02x} was expected")
    if end != len(data):
        raise DerError("trailing bytes")
    return content


def sequence_items(content: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) of each element of a SEQUENCE's ``content``."""
    items: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(content):
        tag, item, offset = _read_element(content, offset)
        items.append((tag, item))
    return items


def decode_integer(item: tuple[int, bytes], *, signed: bool = False) -> int:
    """The INTEGER ``item``; a negative one only where ``signed``."""
    tag, content = item
    if tag != TAG_INTEGER:
        raise DerError(f"tag 0x{tag:02x} where an INTEGER was expected")
    if not content:
        raise DerError("empty INTEGER")
    # A leading 0x00 (0xFF) is redundant when the next byte's top bit is already 0 (1).
    redundant = content[:1] in (b"\x00", b"\xff") and (content[0] >> 7) == (content[1:2] >= b"\x80")
    if len(content) > 1 and redundant:
        raise DerError("non-minimal INTEGER")
    value = int.from_bytes(content, "big", signed=True)
    if value < 0 and not signed:
        raise DerError("negative INTEGER where none can be")
    return value


def decode_string(item: tuple[int, bytes]) -> str:
    """A PrintableString or UTF8String ``item`` (what Go writes for a ``string``)."""
    tag, content = item
    if tag == TAG_PRINTABLE_STRING:
        if not _PRINTABLE.issuperset(content):
            raise DerError("PrintableString with a character outside its set")
        return content.decode("ascii")
    if tag == TAG_UTF8_STRING:
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DerError("UTF8String that is not UTF-8") from exc
    raise DerError(f"tag 0x{tag:02x} where a string was expected")


def _encode(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length <= _SHORT_FORM_MAX:
        return bytes((tag, length)) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, _LONG_FORM | len(octets))) + octets + content


def encode_integer(value: int) -> bytes:
    """An INTEGER in minimal two's complement, as Go writes a ``*big.Int`` or ``int``."""
    size = ((value if value >= 0 else ~value).bit_length() + 8) // 8
    return _encode(TAG_INTEGER, value.to_bytes(size, "big", signed=True))


def encode_sequence(parts: Iterable[bytes]) -> bytes:
    """A SEQUENCE of already encoded ``parts``."""
    return _encode(TAG_SEQUENCE, b"".join(parts))


def encode_octet_string(value: bytes) -> bytes:
    """An OCTET STRING."""
    return _encode(TAG_OCTET_STRING, value)


def encode_printable_string(value: str) -> bytes:
    """A PrintableString (what Go writes for a ``string`` of printable characters only)."""
    raw = value.encode("ascii")
    if not _PRINTABLE.issuperset(raw):
        raise DerError("not a PrintableString")
    return _encode(TAG_PRINTABLE_STRING, raw)
