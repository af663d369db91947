"""Base45 encoding (RFC 9285) for the credentials the fake signer hands out.

The ``base45`` package encodes in a Python loop (a ``divmod`` per byte pair and a string join
per character): 15 % of the fake signer's CPU per ``/get_credential`` under the 5,000-request
burst. Here every 16-bit value maps to its three characters through one table built at import
(65,536 short strings), so a credential's ~300 bytes are ~150 lookups done by ``map`` in C.
"""

from __future__ import annotations

import sys
from array import array

__all__ = ["ALPHABET", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_BASE = 45
_PAIR_TO_TEXT = tuple(
    ALPHABET[value % _BASE] + ALPHABET[value // _BASE % _BASE] + ALPHABET[value // _BASE**2]
    for value in range(1 << 16)
)
_SWAP = sys.byteorder == "little"


def b45encode(data: bytes) -> bytes:
    """Encode ``data`` as Base45 ASCII bytes (two characters for a trailing odd byte)."""
    even = len(data) & ~1
    pairs = array("H", data[:even])
    if _SWAP:
        pairs.byteswap()  # the pairs are big-endian 16-bit values
    text = "".join(map(_PAIR_TO_TEXT.__getitem__, pairs))
    if even != len(data):
        last = data[-1]
        text += ALPHABET[last % _BASE] + ALPHABET[last // _BASE]
    return text.encode("ascii")
