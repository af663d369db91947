"""The fake signer's table-driven Base45 encoder against RFC 9285 and the ``base45`` package."""

from __future__ import annotations

import random

import base45
import pytest

from fake_signer.base45 import b45encode


@pytest.mark.parametrize(
    ("data", "text"),
    [(b"", b""), (b"AB", b"BB8"), (b"Hello!!", b"%69 VD92EX0"), (b"ietf!", b"QED8WEX0")],
)
def test_rfc_9285_examples(data: bytes, text: bytes) -> None:
    """The RFC's own examples, odd and even lengths."""
    assert b45encode(data) == text


def test_agrees_with_the_package_on_every_length_and_edge_value() -> None:
    """Random data of every length up to 400 bytes, and the extreme pair and byte values."""
    rng = random.Random(45)  # noqa: S311 - repeatable test data, not secrets
    samples = [rng.randbytes(n) for n in range(400)] + [b"\xff\xff", b"\x00\x00", b"\xff", b"\x00"]
    for data in samples:
        assert b45encode(data) == base45.b45encode(data), data.hex()
