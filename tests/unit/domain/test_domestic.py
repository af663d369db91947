"""Domestic credential attributes and the issuance policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from signing_gateway.domain import DomesticAttributes, DomesticPolicy, check_domestic_policy

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
VALID = {
    "isSpecimen": "0",
    "isPaperProof": "1",
    "validFrom": str(int(NOW.timestamp())),
    "validForHours": "24",
    "firstNameInitial": "J",
    "lastNameInitial": "",
    "birthDay": "9",
    "birthMonth": "12",
}
POLICY = DomesticPolicy(
    max_valid_from_past=timedelta(hours=72),
    max_valid_from_future=timedelta(days=7),
    max_valid_for_hours=40,
)


#: Values at the edge of their attribute's form, all accepted.
EDGE = [
    ("firstNameInitial", ""),
    ("lastNameInitial", ""),
    ("birthDay", ""),
    ("birthMonth", ""),
    ("validForHours", "999999"),
    ("validFrom", "999999999999"),
]
#: Values outside their attribute's form, each refused with its error type.
BAD = [
    ("isSpecimen", "2", "domestic_flag"),
    ("isSpecimen", "true", "domestic_flag"),
    ("isPaperProof", "", "domestic_flag"),
    ("isPaperProof", 1, "string_type"),
    ("validFrom", "-1", "unix_seconds"),
    ("validFrom", "01700000000", "unix_seconds"),
    ("validFrom", "1700000000.5", "unix_seconds"),
    ("validFrom", "1" * 13, "unix_seconds"),
    ("validFrom", 1700000000, "string_type"),
    ("validForHours", "0", "positive_integer"),
    ("validForHours", "024", "positive_integer"),
    ("validForHours", "+24", "positive_integer"),
    ("validForHours", "", "positive_integer"),
    ("validForHours", "1000000", "positive_integer"),
    ("firstNameInitial", "j", "name_initial"),
    ("firstNameInitial", "JD", "name_initial"),
    ("lastNameInitial", "É", "name_initial"),
    ("birthDay", "0", "birth_day"),
    ("birthDay", "32", "birth_day"),
    ("birthDay", "09", "birth_day"),
    ("birthMonth", "13", "birth_month"),
    ("birthMonth", "0", "birth_month"),
    ("birthMonth", "X", "birth_month"),
    ("category", "toolong12", "domestic_category"),
    ("category", "ABCDE1234", "domestic_category"),
    ("category", "a", "domestic_category"),
    ("category", "<script>", "domestic_category"),
    ("category", None, "null_not_allowed"),
]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("validFrom", "1796522115000", "at most 12 digits without leading zeros (not milli"),
        ("validForHours", "1000000", "of hours, written as at most 6 digits without leading"),
    ],
)
def test_a_number_with_too_many_digits_is_told_so(field, value, says):
    """A number of the right form but too many digits is told of the digits it may have.

    A validFrom in milliseconds (the realistic slip) heard it must be "digits without leading
    zeros", which it was; 1000000 hours heard it must be "a positive whole number".
    """
    with pytest.raises(ValidationError) as info:
        DomesticAttributes.model_validate({**VALID, field: value})
    [error] = info.value.errors()
    assert error["loc"] == (field,)
    assert says in error["msg"]


def _errors(**changes):
    with pytest.raises(ValidationError) as info:
        DomesticAttributes.model_validate({**VALID, **changes})
    return {(e["type"], e["loc"]) for e in info.value.errors()}


def test_valid_attributes_go_to_the_wire_unchanged():
    """Valid attributes round-trip to the signer's wire form, category left out when absent."""
    assert DomesticAttributes.model_validate(VALID).wire() == VALID


@pytest.mark.parametrize(("field", "value"), EDGE)
def test_attribute_at_the_edge_of_its_form_is_accepted(field, value):
    """Initials and birth day and month may be empty (unknown); numbers may use all digits."""
    attrs = DomesticAttributes.model_validate({**VALID, field: value})
    assert attrs.wire() == {**VALID, field: value}


@pytest.mark.parametrize("category", ["", "1", "3", "2G", "ABCD1234"])
def test_category_is_optional_and_short(category):
    """A short category of A-Z and digits is passed on; it may be empty."""
    attrs = DomesticAttributes.model_validate({**VALID, "category": category})
    assert attrs.wire() == {**VALID, "category": category}


@pytest.mark.parametrize(("field", "value", "error_type"), BAD)
def test_bad_attribute_is_rejected(field, value, error_type):
    """Each attribute refuses values outside its exact string form, at its own location."""
    assert _errors(**{field: value}) == {(error_type, (field,))}


def test_missing_and_unknown_attributes_are_rejected():
    """Every attribute but category is required, and unknown ones are refused."""
    body = {key: value for key, value in VALID.items() if key != "birthDay"} | {"extra": "1"}
    with pytest.raises(ValidationError) as info:
        DomesticAttributes.model_validate(body)
    assert {(e["type"], e["loc"]) for e in info.value.errors()} == {
        ("missing", ("birthDay",)),
        ("extra_forbidden", ("extra",)),
    }


@pytest.mark.parametrize(
    "valid_from",
    [NOW - timedelta(hours=72), NOW, NOW + timedelta(days=7)],
    ids=["oldest", "now", "latest"],
)
def test_policy_accepts_valid_from_within_its_window(valid_from):
    """A validFrom anywhere in [now - past, now + future] passes the policy."""
    attrs = DomesticAttributes.model_validate(
        {**VALID, "validFrom": str(int(valid_from.timestamp())), "validForHours": "40"}
    )
    assert check_domestic_policy(attrs, POLICY, now=NOW, loc=("credentialAttributes",)) == []


@pytest.mark.parametrize(
    "valid_from",
    [NOW - timedelta(hours=72, seconds=1), NOW + timedelta(days=7, seconds=1)],
    ids=["too-old", "too-far-ahead"],
)
def test_policy_refuses_valid_from_outside_its_window(valid_from):
    """A validFrom outside the window is reported under the given location."""
    attrs = DomesticAttributes.model_validate(
        {**VALID, "validFrom": str(int(valid_from.timestamp()))}
    )
    errors = check_domestic_policy(attrs, POLICY, now=NOW, loc=("credentialsAttributes", 2))
    assert [e.loc for e in errors] == [("credentialsAttributes", 2, "validFrom")]
    assert "(at most 72 hours before and 168 hours after now)" in errors[0].msg


def test_policy_refusal_names_the_whole_seconds_its_window_takes():
    """Pin that a clock between two seconds is told the first and last second it takes.

    The message named the second before the window as its first, and refused that very second:
    "validFrom must lie between 1795176000 and 1796040000 (...), got 1795176000".
    """
    now = NOW + timedelta(microseconds=500_000)
    first = int((NOW - timedelta(hours=72)).timestamp()) + 1
    last = int((NOW + timedelta(days=7)).timestamp())
    for valid_from in (first, last):
        attrs = DomesticAttributes.model_validate({**VALID, "validFrom": str(valid_from)})
        assert check_domestic_policy(attrs, POLICY, now=now, loc=()) == []
    for valid_from in (first - 1, last + 1):
        attrs = DomesticAttributes.model_validate({**VALID, "validFrom": str(valid_from)})
        [error] = check_domestic_policy(attrs, POLICY, now=now, loc=())
        assert error.msg.startswith(f"validFrom must lie between {first} and {last} (")


def test_policy_refuses_too_many_hours():
    """A validForHours above the maximum is reported, together with any other violation."""
    attrs = DomesticAttributes.model_validate({**VALID, "validFrom": "0", "validForHours": "41"})
    errors = check_domestic_policy(attrs, POLICY, now=NOW, loc=())
    assert [e.loc for e in errors] == [("validFrom",), ("validForHours",)]
    assert "at most 40" in errors[1].msg


@pytest.mark.parametrize("valid_from", ["0", VALID["validFrom"], "9" * 12])
def test_policy_window_as_wide_as_timedelta_allows_is_judged_without_overflow(valid_from):
    """A window of timedelta's maximum either side of now admits validFrom, never overflows."""
    widest = DomesticPolicy(
        max_valid_from_past=timedelta.max,
        max_valid_from_future=timedelta.max,
        max_valid_for_hours=40,
    )
    attrs = DomesticAttributes.model_validate({**VALID, "validFrom": valid_from})
    assert check_domestic_policy(attrs, widest, now=NOW, loc=()) == []


def _day_oracle(text: str) -> bool:
    return text == "" or (
        text.isascii() and text.isdigit() and str(int(text)) == text and 1 <= int(text) <= 31
    )


@settings(max_examples=200, deadline=None)
@given(day=st.one_of(st.integers(-5, 40).map(str), st.text(alphabet="0123456789 +-x", max_size=3)))
def test_birth_day_accepts_exactly_the_canonical_days(day):
    """A birthDay is accepted exactly when it is '' or a canonical integer 1..31."""
    try:
        DomesticAttributes.model_validate({**VALID, "birthDay": day})
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted == _day_oracle(day)


@pytest.mark.parametrize(("day", "month"), [("31", "2"), ("30", "2"), ("31", "4"), ("31", "11")])
def test_birth_day_the_month_does_not_have_is_rejected(day, month):
    """A birthDay past its birthMonth's end (30 February) is refused at birthMonth.

    Each was taken on its own form alone, and a credential naming no date of the year was
    signed. The message names neither value: they are part of the date of birth.
    """
    with pytest.raises(ValidationError) as info:
        DomesticAttributes.model_validate({**VALID, "birthDay": day, "birthMonth": month})
    [error] = info.value.errors()
    assert (error["type"], error["loc"]) == ("birth_date", ("birthMonth",))
    assert day not in error["msg"]
    assert month not in error["msg"]


def test_birth_day_and_month_are_accepted_exactly_as_a_day_of_a_leap_year():
    """Every day and month pair is accepted exactly when a leap year has that date."""
    wrong = []
    for month in range(1, 13):
        for day in range(1, 32):
            try:
                DomesticAttributes.model_validate(
                    {**VALID, "birthDay": str(day), "birthMonth": str(month)}
                )
            except ValidationError:
                accepted = False
            else:
                accepted = True
            if accepted != _in_leap_year(day, month):
                wrong.append((day, month))
    assert wrong == []


@pytest.mark.parametrize(("day", "month"), [("31", ""), ("", "2"), ("29", "2"), ("", "")])
def test_birth_day_or_month_alone_is_not_cross_checked(day, month):
    """Without both, or on 29 February (no year is given), the pair is accepted."""
    DomesticAttributes.model_validate({**VALID, "birthDay": day, "birthMonth": month})


def _in_leap_year(day: int, month: int) -> bool:
    try:
        date(2024, month, day)
    except ValueError:
        return False
    return True


def test_the_json_schema_shows_each_attributes_form():
    """Pin that the published schema accepts exactly the attribute values the gateway does.

    The document showed every attribute as a bare string: a client checking against it could
    not tell "09" or "j" from a value the gateway takes.
    """
    schema = DomesticAttributes.model_json_schema()
    assert all("pattern" in field for field in schema["properties"].values())
    validator = Draft202012Validator(schema)
    samples = [(field, value, True) for field, value in EDGE] + [
        (field, value, False) for field, value, _ in BAD if isinstance(value, str)
    ]
    samples += [("category", category, True) for category in ("", "2G", "ABCD1234")]
    wrong = [
        (field, value)
        for field, value, accepted in samples
        if validator.is_valid({**VALID, field: value}) is not accepted
    ]
    assert len(samples) > 30
    assert wrong == []
