"""Unique certificate identifiers (UVCI, the DCC ``ci`` field) and their Luhn mod N check character.

Form accepted here: ``URN:UVCI:`` (upper case, as the eHealth Network guidelines write it), then
the identifier blocks in the charset ``A-Z 0-9 / :``, optionally followed by ``#`` and one check
character. At most 80 characters in all (the schema's limit).

The check character is Luhn mod N over the alphabet ``A-Z0-9/:`` (N = 38, "A" has code point 0),
computed over the whole identifier before the ``#``, prefix included. That alphabet order is the
one the schema project's reference implementation uses, and the one that reproduces the check
character "1" of ``URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1`` in the official examples;
the digits-first order gives "B" there.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from collections.abc import Iterable

UVCI_PREFIX: Final = "URN:UVCI:"
UVCI_MAX_LENGTH: Final = 80
LUHN_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"

_CHARSET: Final = "[A-Z0-9/:]"
_BODY = re.compile(f"{_CHARSET}+")
#: The form as a JSON schema pattern (the check character's value it cannot say).
UVCI_PATTERN: Final = f"^{UVCI_PREFIX}{_CHARSET}+(?:#{_CHARSET})?$"
_CODE_POINTS: Final = {char: index for index, char in enumerate(LUHN_ALPHABET)}


def _luhn_sum(text: str, *, double_rightmost: bool) -> int:
    """Sum the Luhn mod N addends of text, walking from the right."""
    n = len(LUHN_ALPHABET)
    total = 0
    factor = 2 if double_rightmost else 1
    for char in reversed(text):
        addend = factor * _CODE_POINTS[char]
        # Sum of the two base-N "digits" of the addend (it is below 2N, so at most two).
        total += addend // n + addend % n
        factor = 3 - factor
    return total % n


def luhn_mod_n_check_character(text: str) -> str:
    """Return the check character for text (which must only use the Luhn alphabet)."""
    n = len(LUHN_ALPHABET)
    return LUHN_ALPHABET[(n - _luhn_sum(text, double_rightmost=True)) % n]


def luhn_mod_n_is_valid(text_with_check: str) -> bool:
    """Tell whether the last character of the text is the right check character for the rest."""
    return _luhn_sum(text_with_check, double_rightmost=False) == 0


def validate_uvci(value: str) -> str:
    """Return the UVCI unchanged if it is well formed, else raise a PydanticCustomError."""
    if len(value) > UVCI_MAX_LENGTH:
        raise PydanticCustomError(
            "uvci_too_long",
            "UVCI must be at most {max_length} characters, got {length}",
            {"max_length": UVCI_MAX_LENGTH, "length": len(value)},
        )
    if not value.startswith(UVCI_PREFIX):
        raise PydanticCustomError(
            "uvci_prefix", "UVCI must start with 'URN:UVCI:' (upper case, colon separated)"
        )
    identifier, hash_sign, check = value.partition("#")
    body = identifier.removeprefix(UVCI_PREFIX)
    if not _BODY.fullmatch(body) or not _BODY.fullmatch(check or "A"):
        raise PydanticCustomError(
            "uvci_charset",
            "UVCI may only use A-Z, 0-9, '/' and ':' after 'URN:UVCI:', "
            "with at most one '#' before the check character",
        )
    if hash_sign:
        if len(check) != 1:
            raise PydanticCustomError(
                "uvci_checksum", "UVCI must have exactly one check character after '#'"
            )
        if not luhn_mod_n_is_valid(identifier + check):
            raise PydanticCustomError(
                "uvci_checksum",
                "UVCI check character '{given}' is wrong: expected '{expected}'",
                {"given": check, "expected": luhn_mod_n_check_character(identifier)},
            )
    return value


def repeated_uvcis(uvcis: Iterable[str | None]) -> dict[int, int]:
    """Each UVCI naming the certificate an earlier one names: its index, and the first one's.

    The UVCIs are well formed (`validate_uvci`: kept as given, so compared as given; lower case
    is refused there, not folded), or None, which is not compared. Two name one certificate
    when their identifiers are equal: the text before a ``#``, since the check character
    only repeats what the identifier says: given with one and without, it is one certificate.
    """
    first_of: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for index, uvci in enumerate(uvcis):
        if uvci is None:
            continue
        identifier = uvci.partition("#")[0]
        first = first_of.setdefault(identifier, index)
        if first != index:
            repeats[index] = first
    return repeats
