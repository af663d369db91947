"""Person names and other free text in a DCC.

Free text (``fn``, ``gn``, issuer, test name, testing centre) is stored NFC-normalised, so that the
same name typed on two keyboards signs to the same bytes. Its length is checked before and after
normalisation: nothing the schema refuses for length slips through by composing characters, and
nothing signed breaks the schema's bound where normalisation makes a text longer.
Control characters (Unicode Cc), lone surrogates and line/paragraph separators are refused: they
have no place on a certificate and render unpredictably. So are private-use code points (Co),
which mean what a private agreement says (a verifier shows an empty box or a vendor's logo), and
the 66 noncharacters (U+FDD0 to U+FDEF, and U+FFFE and U+FFFF of every plane), which Unicode
keeps out of text for good. Other code points unassigned in the Unicode version Python's
``unicodedata`` knows stay allowed: a later version may have given them to a name's script
(Unicode 15 added 4,192 CJK ideographs, rare names among them), and a person's name is not
refused because the gateway's Python is older.

What a verifier shows must be what is signed, and must show someone. So format characters (Cf)
are refused, but for those a name's script or keyboard puts inside words: the zero-width
non-joiner and joiner (Persian, Indic scripts), the zero-width space (the Khmer keyboard
types it between words), the Mongolian vowel separator, and the implicit direction
marks LRM, RLM and ALM (Hebrew, Persian and Arabic keyboards type them; they have no scope and
cannot reorder letters, only move punctuation beside them). Refused are the bidirectional
embeddings, overrides and isolates (U+202A-202E, U+2066-2069: U+202E before "neznaJ" shows
"Jansen"), the tag characters, U+FEFF and every other invisible format control, and the
code points Unicode reserves as default-ignorable (U+2065, U+FFF0-FFF8, the unassigned ones of
U+E0000-E0FFF): a renderer shows them as nothing. A text that is not empty must hold a visible
character: one of only spaces, marks, the characters kept above or the Hangul fillers names
nobody. A run of combining marks (variation selectors included) and kept format characters may be
at most 30 long: the bound Unicode's Stream-Safe Text Format (UAX #15) sets on a run of
non-starters, chosen "significantly beyond what is required for any linguistic or technical
usage"; an unbounded stack paints over the text around it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import TYPE_CHECKING, Annotated, Any, Final, Self, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from signing_gateway.domain.errors import object_rule

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import GetJsonSchemaHandler
    from pydantic.config import JsonDict
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

    from signing_gateway.domain.errors import Loc

TEXT_MAX_LENGTH: Final = 80
_CONTROL: Final = (
    "text_control_character",
    "Must not contain control characters, found U+{codepoint}",
)
#: The refused general categories, each with its error type and message.
_FORBIDDEN_CATEGORIES: Final = {
    "Cc": _CONTROL,
    "Cs": _CONTROL,
    "Zl": _CONTROL,
    "Zp": _CONTROL,
    "Co": (
        "text_private_use_character",
        "Must not contain private-use characters, found U+{codepoint}",
    ),
}
_NONCHARACTER: Final = ("text_noncharacter", "Must not contain noncharacters, found U+{codepoint}")
_BIDI_CONTROL: Final = (
    "text_bidi_control",
    "Must not contain bidirectional embeddings, overrides or isolates, found U+{codepoint}",
)
_FORMAT_CHARACTER: Final = (
    "text_format_character",
    "Must not contain invisible format characters, found U+{codepoint}",
)
#: LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI: the explicit bidirectional formatting characters.
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: The format characters (Cf) kept, all zero-width: ALM, the Mongolian vowel separator, the
#: zero-width space, non-joiner and joiner, LRM and RLM (see the module docstring).
_FORMAT_KEPT: Final = frozenset("\u061c\u180e\u200b\u200c\u200d\u200e\u200f")
#: Unicode's Default_Ignorable_Code_Point ranges (first, last), adjacent ones joined, as
#: DerivedCoreProperties.txt gives them in Unicode 14.0 (Python's `unicodedata` lacks the
#: property): code points a renderer shows as nothing when it has no glyph for them, so a text
#: of them shows no one. Most are format characters (refused, but for the kept), marks (the
#: variation selectors, counted in a combining run) or the Hangul fillers; the rest are
#: reserved, and refused: a later Unicode may give them only to more invisible characters.
_DEFAULT_IGNORABLE: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
#: Letters and a symbol shown as nothing: the Hangul fillers and the blank braille pattern.
_BLANK_GRAPHICS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")
#: The longest run of combining marks and kept format characters: Unicode's Stream-Safe Text
#: Format (UAX #15) bounds a run of non-starters at 30.
MAX_COMBINING_RUN: Final = 30
_TRANSLITERATED = re.compile(r"[A-Z<]*")


def _free_text(value: str) -> str:
    """Normalise to NFC and check length and characters; return the normalised text.

    The schema's bound holds for the text as given (the caller's DCC) and as signed (the DCC
    every verifier checks against the schema), so both are checked. A few characters grow
    under NFC (those excluded from composition, such as U+0958, come out as two): the text as
    signed can break the bound when the text as given does not, and the message says so.
    """
    if len(value) > TEXT_MAX_LENGTH:
        raise PydanticCustomError(
            "text_too_long",
            "Must be at most {max_length} characters, got {length}",
            {"max_length": TEXT_MAX_LENGTH, "length": len(value)},
        )
    normalised = unicodedata.normalize("NFC", value)
    if len(normalised) > TEXT_MAX_LENGTH:
        raise PydanticCustomError(
            "text_too_long",
            "Must be at most {max_length} characters after Unicode normalisation (NFC), "
            "which turns the {given_length} given into {length}",
            {
                "max_length": TEXT_MAX_LENGTH,
                "given_length": len(value),
                "length": len(normalised),
            },
        )
    _check_characters(normalised)
    return normalised


def _check_characters(text: str) -> None:
    """Refuse a character no certificate should hold, a text showing nothing, a mark pile-up."""
    if text.isascii():
        _check_ascii(text)
    else:
        _check_each_character(text)


def _check_each_character(text: str) -> None:
    """`_check_characters` for any text, one character at a time.

    Only a character of a category that can be refused (`_REFUSABLE_CATEGORIES`) is looked
    at further, an unassigned one in a table (`_unassigned_refusals`): 80 unassigned code
    points cost 28 µs looked at in Python calls each.
    """
    visible = False
    run = 0
    for char, category in zip(text, map(unicodedata.category, text), strict=True):
        if category in _REFUSABLE_CATEGORIES:
            refusal = (
                _unassigned_refusals().get(char)
                if category == "Cn"
                else _assigned_refusal(char, category)
            )
            if refusal is not None:
                error_type, message = refusal
                raise PydanticCustomError(error_type, message, {"codepoint": f"{ord(char):04X}"})
        if category[0] == "M" or char in _FORMAT_KEPT:
            run += 1
            if run > MAX_COMBINING_RUN:
                raise PydanticCustomError(
                    "text_combining_run",
                    "Must not stack more than {max_run} combining marks or zero-width "
                    "characters in a row",
                    {"max_run": MAX_COMBINING_RUN},
                )
        else:
            run = 0
            visible = visible or (category != "Zs" and char not in _BLANK_GRAPHICS)
    if text and not visible:
        raise _invisible()


def _check_ascii(text: str) -> None:
    """`_check_characters` for ASCII text, at C speed: the one check per character cost ~7 µs.

    In ASCII only the control characters are refused, only the space is blank, and there are
    no marks to pile up.
    """
    if not text.isprintable():
        control = next(char for char in text if not char.isprintable())
        raise PydanticCustomError(*_CONTROL, {"codepoint": f"{ord(control):04X}"})
    if text.isspace():
        raise _invisible()


def _invisible() -> PydanticCustomError:
    return PydanticCustomError("text_invisible", "Must hold a visible character, or be left empty")


#: The general categories a character may be refused for: those refused outright, format
#: characters (but the kept ones) and unassigned code points (the noncharacters and the
#: default-ignorable ones).
_REFUSABLE_CATEGORIES: Final = frozenset({*_FORBIDDEN_CATEGORIES, "Cf", "Cn"})


def _assigned_refusal(char: str, category: str) -> tuple[str, str] | None:
    """The error type and message refusing `char` (of general `category`, not Cn), or None."""
    refusal = _FORBIDDEN_CATEGORIES.get(category)
    if refusal is not None:
        return refusal
    if category == "Cf" and char not in _FORMAT_KEPT:
        return _BIDI_CONTROL if char in _BIDI_CONTROLS else _FORMAT_CHARACTER
    return None


@functools.cache
def _unassigned_refusals() -> dict[str, tuple[str, str]]:
    """The error type and message refusing each code point refused when unassigned (Cn).

    Unicode's 66 noncharacters (never assigned, never text), and the Default_Ignorable_Code_Point
    ones (`_DEFAULT_IGNORABLE`), about 4,300 code points in all; made on first use.
    """
    noncharacters = [
        *range(0xFDD0, 0xFDF0),
        *(plane << 16 | low for plane in range(17) for low in (0xFFFE, 0xFFFF)),
    ]
    refusals = dict.fromkeys(map(chr, noncharacters), _NONCHARACTER)
    for first, last in _DEFAULT_IGNORABLE:
        for codepoint in range(first, last + 1):
            refusals.setdefault(chr(codepoint), _FORMAT_CHARACTER)
    return refusals


def _transliterated(value: str) -> str:
    """Check an ICAO 9303 transliterated name: A-Z and '<' only, a letter among them, at most 80."""
    if len(value) > TEXT_MAX_LENGTH:
        raise PydanticCustomError(
            "text_too_long",
            "Must be at most {max_length} characters, got {length}",
            {"max_length": TEXT_MAX_LENGTH, "length": len(value)},
        )
    if not _TRANSLITERATED.fullmatch(value):
        raise PydanticCustomError(
            "transliterated_name",
            "Must be the ICAO 9303 transliteration: only A-Z and '<', got '{value}'",
            {"value": value},
        )
    if value and not value.strip("<"):
        # '<' only separates the parts of a name (and fills the MRZ): alone it names nobody.
        raise PydanticCustomError(
            "transliterated_name_no_letter",
            "Must hold a letter A-Z, or be left empty: '<' only separates the parts of a name",
        )
    return value


def reject_null(value: object) -> object:
    """Refuse an explicit JSON null for an optional field: absent is allowed, null is not."""
    if value is None:
        raise PydanticCustomError("null_not_allowed", "Leave the field out instead of sending null")
    return value


_NULL_ARM: Final = {"type": "null"}


class _NullNotInSchema:
    """Drop the ``null`` arm from a field's JSON schema: the field is optional, not nullable.

    pydantic's ``SkipJsonSchema[None]`` would do the same to the schema, but it turns
    ``X | None`` into a two-armed union for validation too, and a bad value then reports an
    error per arm (``dcc.v.list[VaccinationEntry].0.dn`` and ``dcc.v.none``) instead of one at
    its place. This leaves validation alone and edits only the schema.
    """

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        arms = schema.get("anyOf")
        if not isinstance(arms, list) or _NULL_ARM not in arms:
            return schema
        kept = [arm for arm in arms if arm != _NULL_ARM]
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


_Value = TypeVar("_Value")

Omittable = Annotated[_Value | None, BeforeValidator(reject_null), _NullNotInSchema()]
"""A field that may be left out but not sent as null: ``None`` in Python means "absent".

The JSON schema (and so the published OpenAPI document) shows only the value's own type, so
clients generated from it leave the field out rather than send the null that is refused.
"""

# The JSON schema (so the published OpenAPI document) shows each form as the official DCC
# schema does; the validators check more than it can say (NFC, the characters refused).
FreeText = Annotated[
    str, AfterValidator(_free_text), Field(json_schema_extra={"maxLength": TEXT_MAX_LENGTH})
]
"""Free text up to 80 characters, stored NFC-normalised, without the characters refused above."""

OptionalFreeText = Omittable[FreeText]
"""Free text that may be left out (but not sent as null)."""

TransliteratedName = Annotated[
    str,
    AfterValidator(_transliterated),
    Field(
        json_schema_extra={
            "pattern": f"^{_TRANSLITERATED.pattern}$",
            "maxLength": TEXT_MAX_LENGTH,
        }
    ),
]
"""A name transliterated per ICAO 9303 (``^[A-Z<]*$``, at most 80 characters)."""

OptionalTransliteratedName = Omittable[TransliteratedName]
"""A transliterated name that may be left out (but not sent as null)."""


def _name_missing() -> PydanticCustomError:
    return PydanticCustomError(
        "name_missing",
        "At least one of 'fnt' (transliterated surname) and 'gnt' (transliterated forename) "
        "must be present and non-empty",
    )


def _raw_name_missing(data: Mapping[str, Any]) -> list[tuple[Loc, PydanticCustomError]]:
    """The name rule on a raw ``nam``: a malformed fnt or gnt is there, to be corrected.

    Only one left out, null (refused as null at its place) or empty names nothing. A value of
    another type is there however it reads in Python: `0`, `false`, `[]` were taken for none.
    """
    named = any(data.get(name) not in (None, "") for name in ("fnt", "gnt"))
    return [] if named else [((), _name_missing())]


#: The name rule as the JSON schema says it: fnt or gnt present and not empty.
_A_TRANSLITERATED_NAME_SHOWN: Final[JsonDict] = {
    "anyOf": [
        {"required": [name], "properties": {name: {"minLength": 1}}} for name in ("fnt", "gnt")
    ]
}


class PersonName(BaseModel):
    """``nam``: surname and forename, as written and transliterated; one transliteration needed."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        # As the official schema says it (an anyOf of the two), empty refused as the model does.
        json_schema_extra=_A_TRANSLITERATED_NAME_SHOWN,
    )

    family_name: OptionalFreeText = Field(default=None, alias="fn")
    family_name_transliterated: OptionalTransliteratedName = Field(default=None, alias="fnt")
    given_name: OptionalFreeText = Field(default=None, alias="gn")
    given_name_transliterated: OptionalTransliteratedName = Field(default=None, alias="gnt")

    # A missing transliteration is named with the fields' errors, not after them.
    _name_rule_beside_field_errors = object_rule(_raw_name_missing)

    @model_validator(mode="after")
    def _needs_a_transliterated_name(self) -> Self:
        """Since schema 1.3.2 a DCC names the holder by fnt, gnt or both; empty does not count."""
        if not (self.family_name_transliterated or self.given_name_transliterated):
            raise _name_missing()
        return self
