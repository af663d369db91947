"""Dates and times in a DCC: parsing at the precision the schema allows, and "not in the future".

The DCC keeps every date as the string the issuer gave (that string is what gets signed); these
helpers only check it. "Now" comes from the pydantic validation context (``{"now": datetime}``) so
tests and callers can pin the clock; without it the wall clock is used.

A calendar date counts as "not in the future" when it is not after today's date in UTC+14, the
earliest time zone: an event that happened today anywhere on Earth is accepted, whatever the
server's clock zone. Instants (the test's sample time) may lead the clock by at most
``CLOCK_SKEW``, to absorb small differences between the issuer's and our clocks.

Every date, the date of an instant too, lies in the years ``MIN_YEAR`` to ``MAX_YEAR``: the range
the official schema gives the date of birth, held for the other dates as well, so that a year
mistyped as 0202 or 2202 is refused rather than signed.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final

from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from pydantic import ValidationInfo

EARLIEST_TIME_ZONE: Final = timezone(timedelta(hours=14))
#: The last time zone to finish a calendar day (UTC-12).
LATEST_TIME_ZONE: Final = timezone(timedelta(hours=-12))
CLOCK_SKEW: Final = timedelta(minutes=5)
MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2099
#: A year of MIN_YEAR to MAX_YEAR, as the JSON schema patterns below say it.
_YEAR_PATTERN: Final = "(?:19|20)[0-9]{2}"

#: How many parsed dates (of each kind) are kept: a DCC's rules read the same date more than
#: once (its own check, then the date-of-birth rule or a comparison with another date), and
#: a second read of a kept one costs a tenth of a parse. Enough for the requests in flight.
_PARSED_KEPT: Final = 256

_COMPLETE_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DOB = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")
#: A dob's form as a JSON schema pattern, years MIN_YEAR to MAX_YEAR as the official schema
#: gives it; whether the month and day are real it cannot say.
DOB_PATTERN: Final = rf"^(?:{_YEAR_PATTERN}(?:-[0-9]{{2}}){{0,2}})?$"
#: A complete date's form as a JSON schema pattern (its "format": "date" checks the day).
COMPLETE_DATE_PATTERN: Final = rf"^{_YEAR_PATTERN}-[0-9]{{2}}-[0-9]{{2}}$"
# RFC 3339 section 5.6: "T" and "Z" may be lower case (its NOTE), the second may be 60.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
#: The most fraction digits an instant signed as given may carry: nanoseconds, what the
#: verifier apps' date-time parsers read (Java's ISO parsers stop at nine).
MAX_FRACTION_DIGITS: Final = 9
#: The longest instant signed as given: ``2021-06-11T17:30:00.123456789+02:00``.
STRICT_RFC3339_MAX_LENGTH: Final = 26 + MAX_FRACTION_DIGITS
#: The form of an instant signed as given (see parse_strict_rfc3339) as a JSON schema pattern.
STRICT_RFC3339_PATTERN: Final = (
    rf"^{_YEAR_PATTERN}-[0-9]{{2}}-[0-9]{{2}}T[0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}}"
    rf"(?:\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?(?:Z|[+-][0-9]{{2}}:[0-9]{{2}})$"
)
_LEAP_SECOND: Final = 60
RFC3339_EXAMPLES: Final = "2021-06-11T17:30:00Z or 2021-06-11T17:30:00+02:00"


def now_from(info: ValidationInfo) -> datetime:
    """Return the reference instant: the context's ``now`` if given, else the wall clock."""
    context = info.context
    if isinstance(context, dict):
        now = context.get("now")
        if isinstance(now, datetime):
            if now.tzinfo is None:
                raise ValueError("validation context 'now' must be timezone-aware")
            return now
    return datetime.now(UTC)


def latest_acceptable_date(now: datetime) -> date:
    """Return the last calendar date that is not in the future somewhere on Earth."""
    return now.astimezone(EARLIEST_TIME_ZONE).date()


def _real_date(year: int, month: int, day: int) -> date | None:
    """Return the date, or None if the calendar has no such day."""
    try:
        return date(year, month, day)
    except ValueError:
        return None


@functools.lru_cache(maxsize=_PARSED_KEPT)
def parse_complete_date(value: str) -> date:
    """Parse ``YYYY-MM-DD`` into a real calendar date in the years the DCC allows.

    Raises ``complete_date`` for anything else than a real date, ``date_out_of_range`` for one
    outside ``MIN_YEAR`` to ``MAX_YEAR``.
    """
    match = _COMPLETE_DATE.fullmatch(value)
    parsed = _real_date(int(match[1]), int(match[2]), int(match[3])) if match else None
    if parsed is None:
        raise PydanticCustomError(
            "complete_date",
            "Must be a real calendar date written YYYY-MM-DD, got '{value}'",
            {"value": value},
        )
    check_year(parsed.year, value)
    return parsed


def end_of_date(value: date) -> datetime:
    """Return the instant a calendar date is over everywhere: its end in the latest time zone."""
    return datetime.combine(value + timedelta(days=1), datetime.min.time(), LATEST_TIME_ZONE)


def check_year(year: int, value: str) -> None:
    """Raise ``date_out_of_range`` unless the year lies in ``MIN_YEAR`` to ``MAX_YEAR``."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise PydanticCustomError(
            "date_out_of_range",
            "Must lie in the years {min_year} to {max_year}, got '{value}'",
            {"value": value, "min_year": MIN_YEAR, "max_year": MAX_YEAR},
        )


def check_not_future_date(value: date, info: ValidationInfo) -> None:
    """Raise ``date_in_future`` if the date lies after today (in the earliest time zone)."""
    latest = latest_acceptable_date(now_from(info))
    if value > latest:
        raise PydanticCustomError(
            "date_in_future",
            "Date {value} lies in the future (it is {today} in the earliest time zone)",
            {"value": value.isoformat(), "today": latest.isoformat()},
        )


def past_complete_date(value: str, info: ValidationInfo) -> str:
    """Validate a complete date that must not lie in the future; return it unchanged."""
    check_not_future_date(parse_complete_date(value), info)
    return value


def complete_date(value: str) -> str:
    """Validate a complete date (any time); return it unchanged."""
    parse_complete_date(value)
    return value


@functools.lru_cache(maxsize=_PARSED_KEPT)
def birth_parts(value: str) -> tuple[int, ...] | None:
    """The parts a non-empty ``dob`` gives, ``(year[, month[, day]])``; None if it is no real one.

    Real at the precision given (the first of the month, or of the year, stands in for the
    rest), in the years ``MIN_YEAR`` to ``MAX_YEAR``. Tuples compare as dates at that precision:
    ``event[:len(parts)] < parts`` says an event lies before the birth for certain.
    """
    match = _DOB.fullmatch(value)
    if match is None:
        return None
    parts = tuple(int(part) for part in match.groups() if part is not None)
    year, month, day = (*parts, 1, 1)[:3]
    if not MIN_YEAR <= year <= MAX_YEAR or _real_date(year, month, day) is None:
        return None
    return parts


def date_of_birth(value: str, info: ValidationInfo) -> str:
    """Validate a ``dob``: empty, ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, real and not future.

    Empty means "unknown" (the schema allows it and issuers use it). The datetime form that early
    schema versions tolerated is refused: 1.3.x only has the three date precisions.
    """
    if value == "":
        return value
    given = birth_parts(value)
    if given is None:
        raise PydanticCustomError(
            "date_of_birth",
            "Date of birth must be empty, YYYY, YYYY-MM or YYYY-MM-DD with a real month and day "
            "and a year from {min_year} to {max_year}, got '{value}'",
            {"value": value, "min_year": MIN_YEAR, "max_year": MAX_YEAR},
        )
    latest = latest_acceptable_date(now_from(info))
    # Compare at the precision given: "2026" is only future once the year itself is.
    if given > (latest.year, latest.month, latest.day)[: len(given)]:
        raise PydanticCustomError(
            "date_in_future",
            "Date of birth {value} lies in the future (it is {today} in the earliest time zone)",
            {"value": value, "today": latest.isoformat()},
        )
    return value


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time (section 5.6), or raise ``rfc3339_datetime``.

    For a time the gateway reads and writes again itself (``expirationTime``, which reaches the
    signer as whole-second UTC ``...Z``), so every form RFC 3339 allows is taken: ``T`` and
    ``Z`` in either case, any fraction, an offset ``Z`` or ``±HH:MM`` (``+02`` and ``+0200`` are
    ISO 8601, not RFC 3339, and refused). A leap second (``23:59:60``) is read as second 59 of
    the same minute: ``datetime`` has no second 60, and the result is rounded down to the second
    anyway. Whether a leap second was inserted at that moment is not checked.
    """
    parsed = _rfc3339_or_none(value, strict=False)
    if parsed is None:
        raise PydanticCustomError(
            "rfc3339_datetime",
            f"Must be an RFC 3339 date-time like {RFC3339_EXAMPLES}, got '{{value}}'",
            {"value": value},
        )
    return parsed


@functools.lru_cache(maxsize=_PARSED_KEPT)
def parse_strict_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time in the form a credential carries, or raise ``rfc3339_datetime``.

    For a time signed into the credential as given and read back by verifier apps (the test's
    ``sc``): stricter than RFC 3339 on purpose, ``T`` and ``Z`` upper case only, no leap
    second and at most ``MAX_FRACTION_DIGITS`` fraction digits, a form the apps' date-time
    parsers are sure to read (many refuse lower case, second 60 and more than nine digits);
    otherwise as :func:`parse_rfc3339`. A value longer than ``STRICT_RFC3339_MAX_LENGTH`` is
    refused as ``datetime_too_long``, its length named rather than the value repeated.
    """
    if len(value) > STRICT_RFC3339_MAX_LENGTH:
        raise PydanticCustomError(
            "datetime_too_long",
            "Must be at most {max_length} characters (at most {digits} fraction digits), "
            "got {length}",
            {
                "max_length": STRICT_RFC3339_MAX_LENGTH,
                "digits": MAX_FRACTION_DIGITS,
                "length": len(value),
            },
        )
    parsed = _rfc3339_or_none(value, strict=True)
    if parsed is None:
        raise PydanticCustomError(
            "rfc3339_datetime",
            f"Must be an RFC 3339 date-time like {RFC3339_EXAMPLES}, with upper-case T and Z, "
            f"no leap second and at most {MAX_FRACTION_DIGITS} fraction digits, got '{{value}}'",
            {"value": value},
        )
    return parsed


def _rfc3339_or_none(value: str, *, strict: bool) -> datetime | None:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    # After the match the only letters left are the date-time separator and the "Z" offset.
    fraction = match[7] or "."
    if strict and (
        value != value.upper() or second == _LEAP_SECOND or len(fraction) > MAX_FRACTION_DIGITS + 1
    ):
        return None
    offset = match[8].upper()
    if offset == "Z":
        tz: timezone = UTC
    else:
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:  # noqa: PLR2004 - clock limits
            return None
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    if second == _LEAP_SECOND:
        second -= 1
    microseconds = int(fraction[1:7].ljust(6, "0"))
    try:
        return datetime(year, month, day, hour, minute, second, microseconds, tzinfo=tz)
    except ValueError:
        return None


def past_instant(value: str, info: ValidationInfo) -> str:
    """Validate a strict RFC 3339 instant that must not lie in the future; return it unchanged."""
    instant = parse_strict_rfc3339(value)
    check_year(instant.year, value)  # as written: the signed text names that year
    now = now_from(info)
    if instant > now + CLOCK_SKEW:
        raise PydanticCustomError(
            "datetime_in_future",
            "Time {value} lies in the future (now is {now})",
            {"value": value, "now": now.astimezone(UTC).isoformat(timespec="seconds")},
        )
    return value
