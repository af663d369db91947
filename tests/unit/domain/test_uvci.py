"""UVCI form and its Luhn mod N check character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from signing_gateway.domain.uvci import (
    LUHN_ALPHABET,
    luhn_mod_n_check_character,
    luhn_mod_n_is_valid,
    repeated_uvcis,
    validate_uvci,
)

# The check character of the official eu-dcc-schema examples (all 26 carry this UVCI).
OFFICIAL_EXAMPLE = "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1"


def test_official_example_check_character_is_reproduced():
    """The algorithm gives '1' for the official examples' UVCI (alphabet A-Z, 0-9, '/', ':')."""
    identifier = OFFICIAL_EXAMPLE.partition("#")[0]
    assert luhn_mod_n_check_character(identifier) == "1"
    assert luhn_mod_n_is_valid(identifier + "1")


@pytest.mark.parametrize(
    ("identifier", "check"),
    [
        # By hand, N = 38, A=0 B=1 /=36 :=37, rightmost doubled, base-38 digits summed:
        ("A", "A"),  # 2*0 = 0 -> check 0 = A
        ("B", "/"),  # 2*1 = 2 -> check 38-2 = 36 = /
        ("AB", "/"),  # 2*1 + 0 = 2 -> 36 = /
        ("BA", ":"),  # 2*0 + 1 = 1 -> 37 = :
        ("::", "C"),  # 2*37 = 74 = 1*38 + 36 -> 1+36, plus 37: 74 mod 38 = 36 -> 2 = C
    ],
)
def test_small_inputs_match_hand_computation(identifier, check):
    """Short inputs give the check characters computed by hand from the Luhn mod N rule."""
    assert luhn_mod_n_check_character(identifier) == check


@pytest.mark.parametrize(
    "uvci",
    [
        OFFICIAL_EXAMPLE,
        "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7",
        "URN:UVCI:01:NL:187/37512422923",
        "URN:UVCI:01:NL:187/37512422923#Z",
        "URN:UVCI:" + "A" * 71,
    ],
)
def test_well_formed_uvci_is_accepted(uvci):
    """Canonical UVCIs, with or without a correct check character, are accepted unchanged."""
    assert validate_uvci(uvci) == uvci


@pytest.mark.parametrize(
    ("uvci", "error_type"),
    [
        ("URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#2", "uvci_checksum"),
        ("URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB8#1", "uvci_checksum"),
        ("URN:UVCI:01:NL:ABC#", "uvci_checksum"),
        ("URN:UVCI:01:NL:ABC#12", "uvci_checksum"),
        # The characters around '#' pass the Luhn check, but '#' takes exactly one after it.
        ("URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB71#", "uvci_checksum"),
        ("URN:UVCI:01:NL:ABC#1L", "uvci_checksum"),
        ("URN:UVCI:01:NL:ABC##", "uvci_charset"),
        ("URN:UVCI:01:NL:ABC#a", "uvci_charset"),
        ("URN:UVCI:01-NL-ABC", "uvci_charset"),
        ("URN:UVCI:01:nl:abc", "uvci_charset"),
        ("URN:UVCI:01:NL:ABC DEF", "uvci_charset"),
        ("URN:UVCI:", "uvci_charset"),
        ("urn:uvci:01:NL:ABC", "uvci_prefix"),
        ("01:NL:1312D00", "uvci_prefix"),
        ("URN/UVCI/01/NL/ABC", "uvci_prefix"),
        ("URN:UVCI:" + "A" * 72, "uvci_too_long"),
    ],
)
def test_malformed_uvci_is_rejected(uvci, error_type):
    """Wrong check characters, charset, prefix or length are each refused with their own type."""
    with pytest.raises(PydanticCustomError) as info:
        validate_uvci(uvci)
    assert info.value.type == error_type


@pytest.mark.parametrize("check", ["", "1L"], ids=["none", "two"])
def test_check_character_count_is_told(check):
    """A '#' with no character or two after it is told to carry exactly one."""
    with pytest.raises(PydanticCustomError) as info:
        validate_uvci(f"URN:UVCI:01:NL:ABC#{check}")
    assert info.value.message() == "UVCI must have exactly one check character after '#'"


def test_wrong_check_character_message_names_the_right_one():
    """The checksum error tells the issuer which check character was expected."""
    with pytest.raises(PydanticCustomError) as info:
        validate_uvci("URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#2")
    assert "expected '1'" in info.value.message()


_bodies = st.text(alphabet=LUHN_ALPHABET, min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(body=_bodies)
def test_generated_check_character_validates(body):
    """Appending the computed check character always gives a valid UVCI."""
    uvci = f"URN:UVCI:{body}"
    check = luhn_mod_n_check_character(uvci)
    assert luhn_mod_n_is_valid(uvci + check)
    assert validate_uvci(f"{uvci}#{check}") == f"{uvci}#{check}"


@settings(max_examples=200, deadline=None)
@given(body=_bodies, data=st.data())
def test_any_single_substitution_is_detected(body, data):
    """Changing any one character of a checked UVCI makes the check fail (Luhn mod N property)."""
    checked = f"URN:UVCI:{body}" + luhn_mod_n_check_character(f"URN:UVCI:{body}")
    position = data.draw(st.integers(0, len(checked) - 1))
    replacement = data.draw(st.sampled_from(LUHN_ALPHABET).filter(lambda c: c != checked[position]))
    altered = checked[:position] + replacement + checked[position + 1 :]
    assert not luhn_mod_n_is_valid(altered)


@pytest.mark.parametrize(
    ("uvcis", "repeats"),
    [
        ([OFFICIAL_EXAMPLE, "URN:UVCI:01:NL:OTHER"], {}),
        ([OFFICIAL_EXAMPLE, OFFICIAL_EXAMPLE], {1: 0}),
        ([OFFICIAL_EXAMPLE.partition("#")[0], None, OFFICIAL_EXAMPLE], {2: 0}),
        (
            ["URN:UVCI:01:NL:A", "URN:UVCI:01:NL:B", "URN:UVCI:01:NL:A", "URN:UVCI:01:NL:B"],
            {2: 0, 3: 1},
        ),
        (["URN:UVCI:01:NL:A", "URN:UVCI:01:NL:AB", "URN:UVCI:01:NL:A/B"], {}),
        ([None, None], {}),
    ],
    ids=["distinct", "equal", "check-character-aside", "each-names-its-first", "prefixes", "none"],
)
def test_repeated_uvcis_name_each_repeat_and_its_first(uvcis, repeats):
    """A UVCI repeats an earlier one of the same identifier (before `#`); None is not compared."""
    assert repeated_uvcis(uvcis) == repeats
