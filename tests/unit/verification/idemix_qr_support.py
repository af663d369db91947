"""Taking real NL2 QRs apart and putting them back together, to tamper with one field.

``proof_fields`` decodes a QR into its seven members (disclosure time, C, A, EResponse,
VResponse, AResponse(s), ADisclosed); ``make_qr`` encodes them again, in the v2 or v3 layout.
The encoder is written here from the format, independently of the verifier's decoder.
"""

from __future__ import annotations

from typing import Any

import pytest

from signing_gateway.verification.base45 import ALPHABET
from signing_gateway.verification.errors import CredentialVerificationError
from signing_gateway.verification.idemix import (
    _DisclosureProof,
    decode_qr_base45,
    verify_static_qr,
)
from signing_gateway.verification.idemix_der import (
    TAG_SEQUENCE,
    decode_integer,
    encode_integer,
    encode_sequence,
    read_single,
    sequence_items,
)

#: A QR's proof members; ``replace(fields, c=...)`` changes one.
ProofFields = _DisclosureProof


def qr_base45(payload: bytes) -> str:
    """minvws/base45-go's encoding: the payload as one base-45 number, most significant first."""
    value = int.from_bytes(payload, "big")
    digits = []
    while value:
        value, digit = divmod(value, 45)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def proof_fields(qr: str) -> ProofFields:
    """The members of a v2 QR's proof."""
    items = sequence_items(read_single(decode_qr_base45(qr[4:]), TAG_SEQUENCE))
    numbers = [decode_integer(item, signed=True) for item in items[:6]]
    disclosed = tuple(decode_integer(item) for item in sequence_items(items[6][1]))
    time, c, a, e, v, response = numbers
    return ProofFields(time, c, a, e, v, (response,), disclosed)


def proof_der(fields: ProofFields, version: int = 2) -> bytes:
    """The DER of ``fields`` in the layout of ``version``."""
    if version == 2:
        (response,) = fields.a_responses
        responses = encode_integer(response)
    else:
        responses = encode_sequence(map(encode_integer, fields.a_responses))
    numbers = (fields.disclosure_time, fields.c, fields.a, fields.e_response, fields.v_response)
    return encode_sequence(
        [
            *map(encode_integer, numbers),
            responses,
            encode_sequence(map(encode_integer, fields.a_disclosed)),
        ]
    )


def make_qr(fields: ProofFields, version: int = 2) -> str:
    """An ``NL<version>:`` QR holding ``fields``."""
    return f"NL{version}:" + qr_base45(proof_der(fields, version))


def attribute_bytes(value: bytes) -> int:
    """A present attribute's number from its bytes."""
    return (int.from_bytes(value, "big") << 1) + 1


def attribute(text: str) -> int:
    """A present attribute's number from its text."""
    return attribute_bytes(text.encode())


def reason(qr: str, keys: Any, **options: Any) -> str:
    """The reason verify_static_qr refuses ``qr`` with."""
    with pytest.raises(CredentialVerificationError) as caught:
        verify_static_qr(qr, keys, **options)
    return caught.value.reason


def detail(qr: str, keys: Any, **options: Any) -> str:
    """The detail of that refusal."""
    with pytest.raises(CredentialVerificationError) as caught:
        verify_static_qr(qr, keys, **options)
    return caught.value.detail
