"""EU DCC issuance requests: the payload model, the key usage and the expiration rule.

Validate with ``EuRequest.model_validate(body, context={"now": now})``; every failure is a
pydantic ``ValidationError`` whose errors carry the wire location (``("dcc", "v", 0, "dn")``) and
a rule-specific type (``uvci_checksum``, ``date_in_future``, ...). Rules that need the signing
certificate or the issuance policy live in :func:`resolve_expiration`, which raises
:class:`~signing_gateway.domain.errors.DomainValidationError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Self

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

from signing_gateway.domain.dcc_birth import DccEntry, check_events_after_birth
from signing_gateway.domain.dcc_dates import (
    DOB_PATTERN,
    RFC3339_EXAMPLES,
    end_of_date,
    parse_complete_date,
    parse_rfc3339,
)
from signing_gateway.domain.dcc_dates import date_of_birth as _valid_date_of_birth
from signing_gateway.domain.dcc_entries import RecoveryEntry, TestEntry, VaccinationEntry
from signing_gateway.domain.dcc_names import Omittable, PersonName
from signing_gateway.domain.errors import (
    DomainValidationError,
    FieldError,
    object_rule,
)
from signing_gateway.domain.uvci import validate_uvci

if TYPE_CHECKING:
    from signing_gateway.domain.errors import Loc

#: The most digits of the schema version's patch number: 1.3.0 to 1.3.999. The official
#: schema bounds no part of ``ver``; three digits leave room for every patch release to come.
_PATCH_DIGITS: Final = 3
_SCHEMA_VERSION = re.compile(rf"1\.3\.(0|[1-9][0-9]{{0,{_PATCH_DIGITS - 1}}})")
#: The longest schema version taken: ``1.3.`` and the patch number.
SCHEMA_VERSION_MAX_LENGTH: Final = len("1.3.") + _PATCH_DIGITS


class KeyUsage(StrEnum):
    """What a signing key may sign; each DCC group has exactly one."""

    VACCINATION = "vaccination"
    TEST = "test"
    RECOVERY = "recovery"

    @property
    def group(self) -> str:
        """The DCC group (``v``, ``t`` or ``r``) this key usage signs."""
        return _GROUP_OF_USAGE[self]


_GROUP_OF_USAGE: Final = {KeyUsage.VACCINATION: "v", KeyUsage.TEST: "t", KeyUsage.RECOVERY: "r"}
_USAGE_OF_GROUP: Final = {group: usage for usage, group in _GROUP_OF_USAGE.items()}
_KEY_USAGES: Final = frozenset(usage.value for usage in KeyUsage)


def _schema_version(value: str) -> str:
    if len(value) > SCHEMA_VERSION_MAX_LENGTH:  # named by its length: not repeated in the answer
        raise PydanticCustomError(
            "dcc_version",
            "Schema version must be 1.3.x (like 1.3.0) with a patch number below 1000, "
            "at most {max_length} characters, got {length}",
            {"max_length": SCHEMA_VERSION_MAX_LENGTH, "length": len(value)},
        )
    if not _SCHEMA_VERSION.fullmatch(value):
        raise PydanticCustomError(
            "dcc_version",
            "Schema version must be 1.3.x (like 1.3.0) with a patch number below 1000, "
            "got '{value}'",
            {"value": value},
        )
    return value


def _single_entry(entries: object) -> object:
    # Counted before the entries are validated: a group of 377 entries of 64 unknown keys each
    # made 27,898 errors (136 ms on the event loop) before a count checked after them spoke.
    if isinstance(entries, list) and len(entries) != 1:
        raise PydanticCustomError(
            "group_entry_count",
            "A DCC group must hold exactly one entry, got {count}",
            {"count": len(entries)},
        )
    return entries


_SINGLE_ENTRY: Final = BeforeValidator(_single_entry)
# The JSON schema says it too, as it says the other forms a client can check before sending.
_ONE_ENTRY_SHOWN: Final = Field(json_schema_extra={"minItems": 1, "maxItems": 1})
VaccinationGroup = Annotated[Omittable[list[VaccinationEntry]], _SINGLE_ENTRY, _ONE_ENTRY_SHOWN]
TestGroup = Annotated[Omittable[list[TestEntry]], _SINGLE_ENTRY, _ONE_ENTRY_SHOWN]
RecoveryGroup = Annotated[Omittable[list[RecoveryEntry]], _SINGLE_ENTRY, _ONE_ENTRY_SHOWN]


def _second_group() -> PydanticCustomError:
    return PydanticCustomError(
        "dcc_group_count", "A DCC carries exactly one of 'v', 't' and 'r'; remove the others"
    )


def _no_group() -> PydanticCustomError:
    return PydanticCustomError(
        "dcc_group_count",
        "A DCC carries exactly one of 'v' (vaccination), 't' (test) and 'r' (recovery)",
    )


def _raw_groups(dcc: Mapping[str, Any]) -> list[str]:
    """The groups a raw DCC gives (null is no group: it is refused as null at its place)."""
    return [group for group in _USAGE_OF_GROUP if dcc.get(group) is not None]


def _raw_group_count(dcc: Mapping[str, Any]) -> list[tuple[Loc, PydanticCustomError]]:
    """The group rules on a raw DCC: none at all, or each group after the first."""
    groups = _raw_groups(dcc)
    if not groups:
        return [((), _no_group())]
    return [((group,), _second_group()) for group in groups[1:]]


class Dcc(BaseModel):
    """An EU DCC payload (schema 1.3.x) with exactly one of ``v``/``t``/``r``, one entry in it.

    Strings are kept as given (after NFC normalisation of free text): dates and times are not
    reformatted, because the signed payload must be the one the issuer asked for.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        # Exactly one group, as the schema can say it: one of v, t and r present.
        json_schema_extra={"oneOf": [{"required": [group]} for group in ("v", "t", "r")]},
    )

    version: Annotated[str, AfterValidator(_schema_version)] = Field(
        alias="ver",
        description=(
            "Schema version 1.3.x, patch number 0 to 999 (the official schema bounds none of it)."
        ),
        json_schema_extra={
            "pattern": f"^{_SCHEMA_VERSION.pattern}$",
            "maxLength": SCHEMA_VERSION_MAX_LENGTH,
        },
    )
    name: PersonName = Field(alias="nam")
    date_of_birth: Annotated[str, AfterValidator(_valid_date_of_birth)] = Field(
        alias="dob",
        description=(
            "Date of birth: empty (unknown), YYYY, YYYY-MM or YYYY-MM-DD, not in the future. "
            "No vaccination (dt), test (sc, its date in UTC+14) or first positive test (fr) may "
            "lie before it, compared at its precision."
        ),
        json_schema_extra={"pattern": DOB_PATTERN},
    )
    vaccination: VaccinationGroup = Field(default=None, alias="v")
    test: TestGroup = Field(default=None, alias="t")
    recovery: RecoveryGroup = Field(default=None, alias="r")

    # A group too many, or none, is named with the fields' errors, not after them.
    _group_rule_beside_field_errors = object_rule(_raw_group_count)

    @field_validator("test", "recovery")
    @classmethod
    def _no_second_group(cls, value: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        """Refuse a group when an earlier one is already present, at the later group's place."""
        if value is not None and any(
            info.data.get(earlier) is not None for earlier in ("vaccination", "test")
        ):
            raise _second_group()
        return value

    @field_validator("vaccination", "test", "recovery")
    @classmethod
    def _no_event_before_birth(
        cls, value: list[Any] | None, info: ValidationInfo
    ) -> list[Any] | None:
        """Refuse a vaccination, test or first positive test before the (valid) date of birth."""
        date_of_birth = info.data.get("date_of_birth")
        if value is not None and date_of_birth is not None:
            check_events_after_birth(date_of_birth, value)
        return value

    @model_validator(mode="after")
    def _one_group(self) -> Self:
        """Refuse a DCC with no group at all (several are refused field by field)."""
        present = [g for g in (self.vaccination, self.test, self.recovery) if g is not None]
        if not present:
            raise _no_group()
        return self

    @property
    def group(self) -> str:
        """The wire name of the group present: ``v``, ``t`` or ``r``."""
        if self.vaccination is not None:
            return "v"
        return "t" if self.test is not None else "r"

    @property
    def entry(self) -> DccEntry:
        """The single entry of the group present."""
        group = self.vaccination or self.test or self.recovery
        if not group:  # pragma: no cover - excluded by validation
            raise AssertionError("validated DCC without a group")
        return group[0]

    @property
    def key_usage(self) -> KeyUsage:
        """The key usage that signs this DCC's group."""
        return _USAGE_OF_GROUP[self.group]

    def uvci(self) -> str:
        """The certificate identifier (``ci``) of the entry."""
        return self.entry.certificate_id

    def signing_payload(self) -> dict[str, Any]:
        """The exact JSON object to sign: wire names, no absent fields, strings as validated."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _rfc3339_expiration(value: object) -> object:
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, datetime):
        return value
    raise PydanticCustomError(
        "rfc3339_datetime", f"Must be an RFC 3339 date-time string like {RFC3339_EXAMPLES}"
    )


def _key_usage_mismatch(given: KeyUsage, group: str) -> PydanticCustomError:
    return PydanticCustomError(
        "key_usage_mismatch",
        "keyUsage '{given}' does not match the DCC group '{group}' (needs '{expected}')",
        {"given": given.value, "group": group, "expected": _USAGE_OF_GROUP[group].value},
    )


def _raw_key_usage_mismatch(request: Mapping[str, Any]) -> list[tuple[Loc, PydanticCustomError]]:
    """The key usage rule on a raw request whose DCC gives one group (whatever else is wrong)."""
    given, dcc = request.get("keyUsage"), request.get("dcc")
    if not isinstance(given, str) or given not in _KEY_USAGES or not isinstance(dcc, Mapping):
        return []
    groups = _raw_groups(dcc)
    if len(groups) != 1 or _USAGE_OF_GROUP[groups[0]] is KeyUsage(given):
        return []
    return [(("keyUsage",), _key_usage_mismatch(KeyUsage(given), groups[0]))]


def raw_uvci(request: object) -> tuple[Loc, str] | None:
    """Where a raw EuRequest's UVCI is, and the UVCI, if its DCC has one that is well formed.

    That is, one group of one entry whose ``ci`` passes `validate_uvci`: for rules comparing
    several requests, beside the errors of each (`object_rule`), or once all are valid.
    """
    dcc = request.get("dcc") if isinstance(request, Mapping) else None
    if not isinstance(dcc, Mapping) or len(groups := _raw_groups(dcc)) != 1:
        return None
    entries = dcc[groups[0]]
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], Mapping):
        return None
    uvci = entries[0].get("ci")
    try:
        return (("dcc", groups[0], 0, "ci"), validate_uvci(uvci)) if isinstance(uvci, str) else None
    except PydanticCustomError:
        return None


class EuRequest(BaseModel):
    """A request for one EU DCC: the payload, and optionally key usage and expiration time."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # dcc first: the key usage check below reads the validated DCC.
    dcc: Dcc
    key_usage: Omittable[KeyUsage] = Field(default=None, alias="keyUsage")
    # The RFC 3339 parser inside Omittable: null is refused before it is parsed.
    expiration_time: Omittable[Annotated[datetime, BeforeValidator(_rfc3339_expiration)]] = Field(
        default=None,
        alias="expirationTime",
        description=(
            "RFC 3339 date-time with an offset, like 2027-05-20T00:00:00Z; 'T' and 'Z' may be "
            "lower case, and a leap second (:60) counts as :59. Must lie in the future and "
            "within the signing certificate's validity; sent to the signer in UTC, rounded "
            "down to the second. Left out: now plus the key usage's default validity, for a "
            "recovery never past the end of its 'du'."
        ),
    )

    @field_validator("key_usage", mode="before")
    @classmethod
    def _key_usage_value(cls, value: object) -> object:
        """Turn the wire string into the enum here, so strict mode accepts it from JSON."""
        if value is None or isinstance(value, KeyUsage):
            return value
        try:
            return KeyUsage(value) if isinstance(value, str) else KeyUsage("")
        except ValueError:
            raise PydanticCustomError(
                "key_usage",
                "keyUsage must be one of 'vaccination', 'test', 'recovery', got '{value}'",
                {"value": value},
            ) from None

    @field_validator("key_usage")
    @classmethod
    def _key_usage_matches_group(
        cls, value: KeyUsage | None, info: ValidationInfo
    ) -> KeyUsage | None:
        """A key usage given must be the one for the DCC's group."""
        dcc = info.data.get("dcc")
        if value is not None and dcc is not None and value is not dcc.key_usage:
            raise _key_usage_mismatch(value, dcc.group)
        return value

    # A keyUsage not matching the DCC's group is named with the DCC's errors too.
    _key_usage_rule_beside_field_errors = object_rule(_raw_key_usage_mismatch)

    def effective_key_usage(self) -> KeyUsage:
        """The key usage to sign with: the one given, else the one the DCC's group implies."""
        return self.key_usage or self.dcc.key_usage


def resolve_expiration(
    request: EuRequest,
    *,
    now: datetime,
    default_validity: Mapping[KeyUsage, timedelta],
    not_after: datetime | None,
) -> datetime:
    """Return the expiration time to sign with: UTC, whole seconds (rounded down).

    Without ``expirationTime`` it is ``now`` plus the default validity for the key usage, capped
    at the end of a recovery's ``du`` (the DCC says it is valid until then, so its signature
    should not outlive that day) and at ``not_after`` (the signing certificate cannot vouch
    beyond its own validity). A given value must carry an offset, lie after ``now`` and not after
    ``not_after``. Raises DomainValidationError at ``("expirationTime",)``, or at the recovery's
    ``du`` when that day is over and no default is left.
    """
    if now.tzinfo is None or (not_after is not None and not_after.tzinfo is None):
        raise ValueError("now and not_after must be timezone-aware")
    given = request.expiration_time
    content_end = _recovery_end(request.dcc) if given is None else None
    if given is None:
        candidate = now + default_validity[request.effective_key_usage()]
        for bound in (content_end, not_after):
            candidate = candidate if bound is None else min(candidate, bound)
    elif given.tzinfo is None:
        raise _expiration_error("expirationTime must carry a UTC offset (like Z or +02:00)")
    else:
        candidate = given
    try:
        result = candidate.astimezone(UTC).replace(microsecond=0)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise _expiration_error(
            "expirationTime must lie between the years 1 and 9999 in UTC"
        ) from None
    if result <= now:
        raise _no_future_left(request, content_end=content_end, not_after=not_after)
    if not_after is not None and result > not_after:
        raise _expiration_error(
            f"expirationTime must not lie after the signing certificate's validity "
            f"({not_after.astimezone(UTC).isoformat()})"
        )
    return result


def _expiration_error(msg: str) -> DomainValidationError:
    return DomainValidationError([FieldError(loc=("expirationTime",), msg=msg)])


def _no_future_left(
    request: EuRequest, *, content_end: datetime | None, not_after: datetime | None
) -> DomainValidationError:
    """The error for an expiration not after now, naming what ended first."""
    if content_end is not None and (not_after is None or content_end <= not_after):
        return _recovery_ended(request.dcc)
    if request.expiration_time is None:
        return _expiration_error("the signing certificate's validity has ended")
    return _expiration_error("expirationTime must lie in the future")


def _recovery_end(dcc: Dcc) -> datetime | None:
    """The end of a recovery's ``du`` (over everywhere on Earth); None for the other groups."""
    if dcc.recovery is None:
        return None
    return end_of_date(parse_complete_date(dcc.recovery[0].valid_until))


def _recovery_ended(dcc: Dcc) -> DomainValidationError:
    until = dcc.recovery[0].valid_until if dcc.recovery else ""
    msg = (
        f"the recovery is valid until {until}, which is over: a credential signed now would "
        "already have expired"
    )
    return DomainValidationError([FieldError(loc=("dcc", "r", 0, "du"), msg=msg)])
