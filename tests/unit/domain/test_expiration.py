"""Choosing the expiration time of an EU DCC: defaults, bounds and rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from domain_testdata import NOW, dcc, validate

from signing_gateway.domain import DomainValidationError, FieldError, KeyUsage, resolve_expiration

VALIDITY = {
    KeyUsage.VACCINATION: timedelta(days=365),
    KeyUsage.TEST: timedelta(hours=40),
    KeyUsage.RECOVERY: timedelta(days=180),
}
NOT_AFTER = datetime(2028, 1, 1, tzinfo=UTC)


def _resolve(expiration=None, *, group="v", now=NOW, not_after=NOT_AFTER):
    body = {"dcc": dcc(group)}
    if expiration is not None:
        body["expirationTime"] = expiration
    return resolve_expiration(
        validate(body), now=now, default_validity=VALIDITY, not_after=not_after
    )


@pytest.mark.parametrize(("group", "usage"), [("v", KeyUsage.VACCINATION), ("t", KeyUsage.TEST)])
def test_default_is_now_plus_the_key_usage_validity(group, usage):
    """Without expirationTime the result is now plus the validity for the key usage."""
    assert _resolve(group=group) == NOW + VALIDITY[usage]


def test_default_is_utc_whole_seconds():
    """The default drops sub-second precision and is expressed in UTC."""
    now = datetime(2026, 11, 23, 13, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=1)))
    result = _resolve(group="t", now=now)
    assert result == datetime(2026, 11, 25, 4, 0, 0, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_default_is_capped_at_the_certificate_validity():
    """A default beyond the signing certificate's validity is cut back to its end."""
    not_after = NOW + timedelta(days=30)
    assert _resolve(not_after=not_after) == not_after


def test_default_with_an_expired_certificate_is_refused():
    """When the signing certificate has already expired, no expiration can be chosen."""
    with pytest.raises(DomainValidationError) as info:
        _resolve(not_after=NOW - timedelta(seconds=1))
    assert info.value.errors == [
        FieldError(("expirationTime",), "the signing certificate's validity has ended")
    ]


@pytest.mark.parametrize(
    "value", ["2027-06-30T23:59:60Z", "2027-06-30t23:59:59.5z"], ids=["leap-second", "lower-case"]
)
def test_given_value_in_any_rfc3339_form_is_the_same_instant(value):
    """A leap second or lower-case t and z give the whole-second UTC time of the plain form."""
    assert _resolve(value) == datetime(2027, 6, 30, 23, 59, 59, tzinfo=UTC)


def test_given_value_is_converted_to_utc_and_floored():
    """A given time keeps its instant, in UTC, rounded down to the second."""
    result = _resolve("2027-05-20T02:00:00.900+02:00")
    assert result == datetime(2027, 5, 20, 0, 0, 0, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_given_value_without_certificate_bound_is_accepted():
    """With no known certificate end, any future time is accepted."""
    assert _resolve("2099-01-01T00:00:00Z", not_after=None) == datetime(2099, 1, 1, tzinfo=UTC)


def test_given_value_equal_to_certificate_end_is_accepted():
    """The certificate's last second is still allowed."""
    assert _resolve("2028-01-01T00:00:00Z") == NOT_AFTER


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2026-11-23T12:00:00Z", "in the future"),
        ("2026-11-23T12:00:00.5Z", "in the future"),
        ("2020-01-01T00:00:00Z", "in the future"),
        ("2028-01-01T00:00:01Z", "validity"),
    ],
    ids=["now", "within-the-second", "past", "after-certificate"],
)
def test_given_value_out_of_bounds_is_refused(value, fragment):
    """A given time not after now, or after the certificate's end, is refused at expirationTime."""
    with pytest.raises(DomainValidationError) as info:
        _resolve(value)
    (error,) = info.value.errors
    assert error.loc == ("expirationTime",)
    assert fragment in error.msg


def test_certificate_end_is_named_in_utc():
    """A time after the certificate's end is told that end in UTC, whatever its offset."""
    not_after = datetime(2028, 1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(DomainValidationError) as info:
        _resolve("2028-01-01T00:00:01Z", not_after=not_after)
    assert info.value.errors == [
        FieldError(
            ("expirationTime",),
            "expirationTime must not lie after the signing certificate's validity "
            "(2028-01-01T00:00:00+00:00)",
        )
    ]


def test_naive_given_value_is_refused():
    """A naive datetime handed in from Python code is refused at expirationTime."""
    request = validate({"dcc": dcc(), "expirationTime": datetime(2027, 1, 1)})  # noqa: DTZ001
    with pytest.raises(DomainValidationError) as info:
        resolve_expiration(request, now=NOW, default_validity=VALIDITY, not_after=None)
    assert info.value.errors == [
        FieldError(("expirationTime",), "expirationTime must carry a UTC offset (like Z or +02:00)")
    ]


@pytest.mark.parametrize(
    ("now", "not_after"),
    [(NOW.replace(tzinfo=None), None), (NOW, NOT_AFTER.replace(tzinfo=None))],
    ids=["now", "not-after"],
)
def test_naive_now_is_a_programming_error(now, not_after):
    """A naive clock reading or certificate end is a bug in the caller, reported as ValueError."""
    request = validate({"dcc": dcc()})
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve_expiration(request, now=now, default_validity=VALIDITY, not_after=not_after)


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"], ids=["after", "before"]
)
def test_given_value_outside_utc_years_is_refused(value):
    """A valid RFC 3339 time whose UTC instant falls outside the years 1-9999 is refused there."""
    with pytest.raises(DomainValidationError) as info:
        _resolve(value)
    message = "expirationTime must lie between the years 1 and 9999 in UTC"
    assert info.value.errors == [FieldError(("expirationTime",), message)]
