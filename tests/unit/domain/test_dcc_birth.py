"""No vaccination, test or first positive test before the date of birth, at dob's precision."""

from __future__ import annotations

import pytest
from domain_testdata import dcc_with_entry, errors_of, validate
from pydantic import ValidationError

V0 = ("dcc", "v", 0)
T0 = ("dcc", "t", 0)
R0 = ("dcc", "r", 0)


def _born(dob: str, group: str, **changes: str) -> dict[str, object]:
    payload = dcc_with_entry(group, **changes)
    payload["dob"] = dob
    return {"dcc": payload}


@pytest.mark.parametrize(
    ("dob", "dt"),
    [
        ("2022-01-10", "2022-01-10"),
        ("2022-01", "2022-01-01"),
        ("2022", "2022-01-01"),
        ("", "1900-01-01"),
    ],
    ids=["same-day", "same-month", "same-year", "unknown"],
)
def test_a_vaccination_on_or_after_the_birth_at_its_precision_is_accepted(dob, dt):
    """A dose on the day (month, year) of birth is taken; an empty dob refuses nothing."""
    validate(_born(dob, "v", dt=dt))


@pytest.mark.parametrize(
    ("dob", "dt"),
    [("2022-01-10", "2022-01-09"), ("2022-02", "2022-01-31"), ("2023", "2022-12-31")],
    ids=["day-before", "month-before", "year-before"],
)
def test_a_vaccination_before_the_birth_is_refused_at_its_date(dob, dt):
    """A dose dated before the birth, at the dob's precision, is refused at dt."""
    assert errors_of(_born(dob, "v", dt=dt)) == {("date_before_birth", (*V0, "dt"))}


def test_a_first_positive_test_before_the_birth_is_refused_at_its_date():
    """A recovery whose first positive test predates the birth is refused at fr."""
    assert errors_of(_born("2026-11-02", "r")) == {("date_before_birth", (*R0, "fr"))}
    validate(_born("2026-11-01", "r"))


@pytest.mark.parametrize(
    "sc",
    [
        "2026-11-21T10:00:00Z",  # 2026-11-22 00:00 in UTC+14
        "2026-11-21T11:00:00-10:00",  # 2026-11-21 as written, 2026-11-22 in UTC+14
        "2026-11-22T00:00:00+14:00",
        "2026-11-22T23:59:59-12:00",
    ],
)
def test_a_test_on_the_day_of_birth_somewhere_on_earth_is_accepted(sc):
    """A sample taken on the day of birth in any time zone is taken, whatever its offset."""
    validate(_born("2026-11-22", "t", sc=sc))


@pytest.mark.parametrize(
    "sc", ["2026-11-21T09:59:59Z", "2026-11-21T09:59:59.999999999Z", "2026-11-21T23:59:59+14:00"]
)
def test_a_test_before_the_day_of_birth_everywhere_is_refused_at_its_sample_time(sc):
    """A sample taken before the day of birth began anywhere on Earth is refused at sc."""
    assert errors_of(_born("2026-11-22", "t", sc=sc)) == {("date_before_birth", (*T0, "sc"))}


def test_the_refusal_names_the_event_date_and_not_the_birth_beside_other_errors():
    """The message quotes the dose's date, never the dob; a bad ver is named beside it."""
    body = _born("2023-05-17", "v", dt="2022-01-10")
    body["dcc"]["ver"] = "1.2.0"  # type: ignore[index]
    with pytest.raises(ValidationError) as info:
        validate(body)
    found = {tuple(error["loc"]): error["msg"] for error in info.value.errors()}
    assert found.keys() == {("dcc", "ver"), (*V0, "dt")}
    assert found[(*V0, "dt")] == "Vaccination date 2022-01-10 lies before the date of birth"


def test_a_date_of_birth_in_the_future_is_refused_alone():
    """A future dob is refused at dob; the events are not judged against it as well."""
    assert errors_of(_born("2027-01-01", "v")) == {("date_in_future", ("dcc", "dob"))}
