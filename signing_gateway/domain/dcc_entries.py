"""The three DCC groups' entries: vaccination (``v``), test (``t``) and recovery (``r``).

Field names in Python say what a field is; the aliases are the DCC's short wire names, and error
locations use the wire names. Every coded field must hold an active code of its value set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from signing_gateway.domain.dcc_dates import (
    COMPLETE_DATE_PATTERN,
    MAX_FRACTION_DIGITS,
    STRICT_RFC3339_MAX_LENGTH,
    STRICT_RFC3339_PATTERN,
    complete_date,
    parse_complete_date,
    past_complete_date,
    past_instant,
)
from signing_gateway.domain.dcc_names import FreeText, Omittable, OptionalFreeText
from signing_gateway.domain.uvci import UVCI_MAX_LENGTH, UVCI_PATTERN, validate_uvci
from signing_gateway.domain.valuesets import ValueSetName, value_set

if TYPE_CHECKING:
    from pydantic.config import JsonDict

RAPID_ANTIGEN_TEST: Final = "LP217198-3"
"""Test type code of a rapid antigen test, which must name its device (``ma``)."""


def _coded(name: ValueSetName) -> AfterValidator:
    """Build a validator that accepts only active codes of the named value set."""

    def check(code: str) -> str:
        codes = value_set(name)
        if code in codes.active:
            return code
        if code in codes.inactive:
            raise PydanticCustomError(
                "value_set_inactive",
                "Code '{code}' of value set {value_set} is no longer active",
                {"code": code, "value_set": codes.value_set_id},
            )
        raise PydanticCustomError(
            "value_set_unknown",
            "Unknown code '{code}': not in value set {value_set}",
            {"code": code, "value_set": codes.value_set_id},
        )

    return AfterValidator(check)


#: The largest dose number taken: 2**53 - 1, the largest integer every JSON parser reads
#: exactly (RFC 7493, I-JSON). The schema sets no maximum; without one, a number the signer's
#: JSON encoder cannot even write (2**64 and up) reached it and failed there.
MAX_DOSE_COUNT = 2**53 - 1


def _dose_count(value: int) -> int:
    if not 1 <= value <= MAX_DOSE_COUNT:
        raise PydanticCustomError(
            "dose_count",
            "Must be a whole number from 1 to {max}, got {value}",
            {"value": value, "max": MAX_DOSE_COUNT},
        )
    return value


class _MissingRatDevice:
    """Stands in for an absent ``ma`` on a rapid antigen test, so the error lands on ``ma``."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING_RAT_DEVICE: Final = _MissingRatDevice()


def _test_device_present(value: object) -> object:
    if value is _MISSING_RAT_DEVICE:
        raise PydanticCustomError(
            "rat_device_required",
            "A rapid antigen test (tt LP217198-3) must name its device in 'ma'",
        )
    return value


Disease = Annotated[str, _coded(ValueSetName.DISEASE_AGENT_TARGETED)]
Country = Annotated[str, _coded(ValueSetName.COUNTRY)]
# The JSON schema shows each form as far as it can say it (not the value sets, not "past").
_DATE_SHOWN: Final = Field(json_schema_extra={"format": "date", "pattern": COMPLETE_DATE_PATTERN})
DoseCount = Annotated[
    int,
    AfterValidator(_dose_count),
    Field(json_schema_extra={"minimum": 1, "maximum": MAX_DOSE_COUNT}),
]
Uvci = Annotated[
    str,
    AfterValidator(validate_uvci),
    Field(json_schema_extra={"pattern": UVCI_PATTERN, "maxLength": UVCI_MAX_LENGTH}),
]
PastDate = Annotated[str, AfterValidator(past_complete_date), _DATE_SHOWN]
CalendarDate = Annotated[str, AfterValidator(complete_date), _DATE_SHOWN]
PastInstant = Annotated[
    str,
    AfterValidator(past_instant),
    Field(
        json_schema_extra={
            "format": "date-time",
            "pattern": STRICT_RFC3339_PATTERN,
            "maxLength": STRICT_RFC3339_MAX_LENGTH,
        }
    ),
]
TestDevice = Annotated[
    Omittable[Annotated[str, _coded(ValueSetName.TEST_MANUFACTURER)]],
    BeforeValidator(_test_device_present),
]

_ENTRY_CONFIG: Final = ConfigDict(extra="forbid", frozen=True, strict=True)


class VaccinationEntry(BaseModel):
    """One ``v`` entry. A dose number above the series size is allowed: boosters (3/2, 2/1)."""

    model_config = _ENTRY_CONFIG

    disease: Disease = Field(alias="tg")
    vaccine: Annotated[str, _coded(ValueSetName.VACCINE_PROPHYLAXIS)] = Field(alias="vp")
    product: Annotated[str, _coded(ValueSetName.VACCINE_MEDICINAL_PRODUCT)] = Field(alias="mp")
    manufacturer: Annotated[str, _coded(ValueSetName.VACCINE_MAH_MANF)] = Field(alias="ma")
    dose_number: DoseCount = Field(alias="dn")
    series_doses: DoseCount = Field(alias="sd")
    date: PastDate = Field(alias="dt")
    country: Country = Field(alias="co")
    issuer: FreeText = Field(alias="is")
    certificate_id: Uvci = Field(alias="ci")


#: The device rule as the JSON schema says it: a rapid antigen test names its device.
_RAT_DEVICE_SHOWN: Final[JsonDict] = {
    "if": {"required": ["tt"], "properties": {"tt": {"const": RAPID_ANTIGEN_TEST}}},
    "then": {"required": ["ma"]},
}


class TestEntry(BaseModel):
    """One ``t`` entry: a NAA test (optionally named) or a rapid antigen test (device required)."""

    model_config = ConfigDict(**_ENTRY_CONFIG, json_schema_extra=_RAT_DEVICE_SHOWN)

    disease: Disease = Field(alias="tg")
    test_type: Annotated[str, _coded(ValueSetName.TEST_TYPE)] = Field(alias="tt")
    test_name: OptionalFreeText = Field(default=None, alias="nm")
    device: TestDevice = Field(default=None, alias="ma")
    sample_collected: PastInstant = Field(
        alias="sc",
        description=(
            "RFC 3339 date-time with an offset, like 2021-06-11T17:30:00Z. Signed as given and "
            "read by verifier apps, so stricter than RFC 3339: upper-case 'T' and 'Z' only, no "
            f"leap second (:60), at most {MAX_FRACTION_DIGITS} fraction digits (what the apps' "
            f"date-time parsers read), so at most {STRICT_RFC3339_MAX_LENGTH} characters."
        ),
    )
    result: Annotated[str, _coded(ValueSetName.TEST_RESULT)] = Field(alias="tr")
    testing_centre: OptionalFreeText = Field(default=None, alias="tc")
    country: Country = Field(alias="co")
    issuer: FreeText = Field(alias="is")
    certificate_id: Uvci = Field(alias="ci")

    @model_validator(mode="before")
    @classmethod
    def _mark_missing_rat_device(cls, data: Any) -> Any:  # noqa: ANN401 - raw input, any shape
        """Make an absent ``ma`` of a rapid antigen test visible to the ``ma`` validator."""
        if isinstance(data, dict) and data.get("tt") == RAPID_ANTIGEN_TEST and "ma" not in data:
            return {**data, "ma": _MISSING_RAT_DEVICE}
        return data


class RecoveryEntry(BaseModel):
    """One ``r`` entry. Validity may start or end in the future; the positive test may not."""

    model_config = _ENTRY_CONFIG

    disease: Disease = Field(alias="tg")
    first_positive: PastDate = Field(alias="fr")
    country: Country = Field(alias="co")
    issuer: FreeText = Field(alias="is")
    valid_from: CalendarDate = Field(alias="df")
    valid_until: CalendarDate = Field(alias="du")
    certificate_id: Uvci = Field(alias="ci")

    @field_validator("valid_from")
    @classmethod
    def _valid_from_after_first_positive(cls, value: str, info: ValidationInfo) -> str:
        """A recovery cannot be valid before the positive test it rests on."""
        first_positive = info.data.get("first_positive")
        if first_positive is not None and parse_complete_date(value) < parse_complete_date(
            first_positive
        ):
            raise PydanticCustomError(
                "recovery_date_order",
                "Valid-from date {df} lies before the first positive test {fr}",
                {"df": value, "fr": first_positive},
            )
        return value

    @field_validator("valid_until")
    @classmethod
    def _valid_until_after_valid_from(cls, value: str, info: ValidationInfo) -> str:
        """Validity must not end before it starts."""
        valid_from = info.data.get("valid_from")
        if valid_from is not None and parse_complete_date(value) < parse_complete_date(valid_from):
            raise PydanticCustomError(
                "recovery_date_order",
                "Valid-until date {du} lies before the valid-from date {df}",
                {"du": value, "df": valid_from},
            )
        return value
