"""Dutch domestic credential attributes and the issuance policy that bounds them.

The domestic credential carries every attribute as a string (the Idemix attribute encoding), so
the model keeps them as strings too and checks their exact form: no leading zeros, no padding,
nothing a verifier could read two ways.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from signing_gateway.domain.dcc_names import Omittable
from signing_gateway.domain.errors import FieldError

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from signing_gateway.domain.errors import Loc


@dataclass(frozen=True, slots=True)
class _Rule:
    """Accept exactly the strings matching `pattern`; the JSON schema shows the pattern too.

    So the published OpenAPI document says what each attribute may hold, as CONTRACT.md does,
    and a client that checks against it refuses what the gateway refuses.
    """

    pattern: str
    error_type: str
    message: str

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: str) -> str:
            if not compiled.fullmatch(value):
                raise PydanticCustomError(self.error_type, self.message, {"value": value})
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "pattern": f"^(?:{self.pattern})$"}


Flag = Annotated[str, _Rule(r"[01]", "domestic_flag", "Must be '0' or '1', got '{value}'")]
#: The most digits of a validFrom. Twelve reach past the year 30000: anything longer is a
#: mistake, not a date (thirteen are what a clock in milliseconds gives now).
UNIX_SECONDS_MAX_DIGITS: Final = 12
UnixSeconds = Annotated[
    str,
    _Rule(
        rf"0|[1-9][0-9]{{0,{UNIX_SECONDS_MAX_DIGITS - 1}}}",
        "unix_seconds",
        f"Must be unix seconds, written as at most {UNIX_SECONDS_MAX_DIGITS} digits without "
        "leading zeros (not milliseconds), got '{value}'",
    ),
]
#: The most digits of a validForHours: 999999 hours are over a century.
HOURS_MAX_DIGITS: Final = 6
#: The largest validForHours the attribute can be written with.
MAX_VALID_FOR_HOURS: Final = 10**HOURS_MAX_DIGITS - 1
Hours = Annotated[
    str,
    _Rule(
        rf"[1-9][0-9]{{0,{HOURS_MAX_DIGITS - 1}}}",
        "positive_integer",
        f"Must be a positive whole number of hours, written as at most {HOURS_MAX_DIGITS} "
        "digits without leading zeros, got '{value}'",
    ),
]
Initial = Annotated[
    str, _Rule(r"[A-Z]?", "name_initial", "Must be one letter A-Z or empty, got '{value}'")
]
BirthDay = Annotated[
    str,
    _Rule(
        r"(?:[1-9]|[12][0-9]|3[01])?",
        "birth_day",
        "Must be a day '1' to '31' (no leading zero) or empty, got '{value}'",
    ),
]
BirthMonth = Annotated[
    str,
    _Rule(
        r"(?:[1-9]|1[0-2])?",
        "birth_month",
        "Must be a month '1' to '12' (no leading zero) or empty, got '{value}'",
    ),
]
#: The most days each month (1 to 12) can have: no year is given, so February has a 29th.
_DAYS_IN_MONTH: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
CATEGORY_MAX_LENGTH: Final = 8
# Short codes only (CoronaCheck used "", "1", "2", "3"): letters, digits, nothing to escape.
Category = Annotated[
    str,
    _Rule(
        rf"[A-Z0-9]{{0,{CATEGORY_MAX_LENGTH}}}",
        "domestic_category",
        f"Must be at most {CATEGORY_MAX_LENGTH} characters A-Z or 0-9, got '{{value}}'",
    ),
]


class DomesticAttributes(BaseModel):
    """The attributes of one domestic credential, all strings as the credential carries them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    is_specimen: Flag = Field(alias="isSpecimen")
    is_paper_proof: Flag = Field(alias="isPaperProof")
    valid_from: UnixSeconds = Field(
        alias="validFrom",
        description="Unix seconds; by default no earlier than 720 hours before now and no "
        "later than 336 hours after it (the gateway's domestic policy settings)",
    )
    valid_for_hours: Hours = Field(
        alias="validForHours",
        description="By default at most 2160 (the gateway's domestic policy settings)",
    )
    first_name_initial: Initial = Field(alias="firstNameInitial")
    last_name_initial: Initial = Field(alias="lastNameInitial")
    birth_day: BirthDay = Field(alias="birthDay")
    birth_month: BirthMonth = Field(alias="birthMonth")
    category: Omittable[Category] = Field(default=None, alias="category")

    @field_validator("birth_month")
    @classmethod
    def _month_has_the_day(cls, value: str, info: ValidationInfo) -> str:
        """A birth day and month given together must name a day of the year (29 February too).

        The message names neither: they are part of the holder's date of birth.
        """
        day = info.data.get("birth_day")
        if value and day and int(day) > _DAYS_IN_MONTH[int(value) - 1]:
            raise PydanticCustomError(
                "birth_date",
                "birthDay and birthMonth name no date: the month given has fewer days than "
                "birthDay",
            )
        return value

    def wire(self) -> dict[str, str]:
        """The attributes as the signer takes them: wire names, category only when given."""
        return self.model_dump(by_alias=True, exclude_none=True)


@dataclass(frozen=True, slots=True)
class DomesticPolicy:
    """How far validFrom may lie from now, and how long a credential may be valid."""

    max_valid_from_past: timedelta
    max_valid_from_future: timedelta
    max_valid_for_hours: int


def policy_hours(span: timedelta) -> str:
    """A policy window as the settings give it: 720 hours, not "30 days, 0:00:00"."""
    return f"{span.total_seconds() / 3600:g} hours"


def check_domestic_policy(
    attrs: DomesticAttributes, policy: DomesticPolicy, *, now: datetime, loc: Loc
) -> list[FieldError]:
    """Return the policy violations of attrs (empty when none), located under loc."""
    errors: list[FieldError] = []
    valid_from = int(attrs.valid_from)
    # In seconds, not datetimes: `now ± timedelta` overflows past the year 9999, and no
    # window (up to timedelta's own maximum) may turn a request into an OverflowError. The
    # bounds are the first and last whole second inside the window, as the message names them.
    earliest = math.ceil(now.timestamp() - policy.max_valid_from_past.total_seconds())
    latest = math.floor(now.timestamp() + policy.max_valid_from_future.total_seconds())
    if not earliest <= valid_from <= latest:
        errors.append(
            FieldError(
                loc=(*loc, "validFrom"),
                msg=(
                    f"validFrom must lie between {earliest} and "
                    f"{latest} (at most {policy_hours(policy.max_valid_from_past)} before and "
                    f"{policy_hours(policy.max_valid_from_future)} after now), got {valid_from}"
                ),
            )
        )
    hours = int(attrs.valid_for_hours)
    if hours > policy.max_valid_for_hours:
        errors.append(
            FieldError(
                loc=(*loc, "validForHours"),
                msg=f"validForHours must be at most {policy.max_valid_for_hours}, got {hours}",
            )
        )
    return errors
