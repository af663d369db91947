"""No DCC event before the holder's birth: a vaccination, a test or a first positive test.

The rule compares at the precision of ``dob``: a ``dob`` of ``YYYY`` refuses only an event in an
earlier year, ``YYYY-MM`` one in an earlier month, and an empty ``dob`` (unknown) refuses
nothing. A test's sample time is an instant; its date is taken in the earliest time zone
(UTC+14), the latest date that instant has anywhere on Earth, since ``dob`` names no zone: a test
on the day of birth is never refused, whatever offset its ``sc`` is written with.

It judges a valid ``dob`` and a valid group (``Dcc`` asks it from the group's validator once
both are), and refuses at the entry's date field; the other fields' errors are named beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from signing_gateway.domain.dcc_dates import (
    EARLIEST_TIME_ZONE,
    birth_parts,
    parse_complete_date,
    parse_strict_rfc3339,
)
from signing_gateway.domain.dcc_entries import RecoveryEntry, TestEntry, VaccinationEntry

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

DccEntry = VaccinationEntry | TestEntry | RecoveryEntry


def _event(entry: DccEntry) -> tuple[str, str, str, date]:
    """The entry's event: its wire field, what the field names, its value, its calendar date."""
    if isinstance(entry, VaccinationEntry):
        return "dt", "Vaccination date", entry.date, parse_complete_date(entry.date)
    if isinstance(entry, TestEntry):
        sampled = parse_strict_rfc3339(entry.sample_collected)
        day = sampled.astimezone(EARLIEST_TIME_ZONE).date()
        return "sc", "Sample time", entry.sample_collected, day
    return (
        "fr",
        "First positive test date",
        entry.first_positive,
        parse_complete_date(entry.first_positive),
    )


def check_events_after_birth(date_of_birth: str, entries: Sequence[DccEntry]) -> None:
    """Raise a ValidationError at each entry's date field that lies before ``date_of_birth``.

    ``date_of_birth`` and the entries must be valid already; the error locations are relative
    to the group's list (``(0, "dt")``), as a group's validator raises them.
    """
    born = birth_parts(date_of_birth) if date_of_birth else None
    if born is None:
        return
    errors: list[InitErrorDetails] = []
    for index, entry in enumerate(entries):
        field, what, value, event = _event(entry)
        if (event.year, event.month, event.day)[: len(born)] < born:
            # The date of birth is personal data: the message names the event's date alone.
            error = PydanticCustomError(
                "date_before_birth",
                "{what} {value} lies before the date of birth",
                {"what": what, "value": value},
            )
            errors.append(InitErrorDetails(type=error, loc=(index, field), input=value))
    if errors:
        raise ValidationError.from_exception_data("Dcc", errors)
