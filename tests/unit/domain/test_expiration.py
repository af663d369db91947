"""Choosing the expiration time of an EU DCC: defaults, bounds and rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from domain_testdata import NOW, dcc, dcc_with_entry, validate

from signing_gateway.domain import DomainValidationError, FieldError, KeyUsage, resolve_expiration

VALIDITY = {
    KeyUsage.VACCINATION: timedelta(days=365),
    KeyUsage.TEST: timedelta(hours=40),
    KeyUsage.RECOVERY: timedelta(days=180),
}
NOT_AFTER = datetime(2028, 1, 1, tzinfo=UTC)


def _resolve(expiration=None, *, group="v", now=NOW, not_after=NOT_AFTER, payload=None):
    body = {"dcc": payload or dcc(group)}
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


def test_a_refusal_naming_no_field_is_a_programming_error():
    """A DomainValidationError without errors would be a 422 telling the caller nothing."""
    with pytest.raises(ValueError, match="at least one FieldError"):
        DomainValidationError([])


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"], ids=["after", "before"]
)
def test_given_value_outside_utc_years_is_refused(value):
    """A valid RFC 3339 time whose UTC instant falls outside the years 1-9999 is refused there."""
    with pytest.raises(DomainValidationError) as info:
        _resolve(value)
    message = "expirationTime must lie between the years 1 and 9999 in UTC"
    assert info.value.errors == [FieldError(("expirationTime",), message)]


def _recovery_until(valid_until, expiration=None, *, not_after=NOT_AFTER):
    """Resolve for a recovery valid until `valid_until` (valid from 2026-11-12)."""
    payload = dcc_with_entry("r", du=valid_until)
    return _resolve(expiration, payload=payload, not_after=not_after)


def test_recovery_default_ends_with_its_valid_until_day():
    """A recovery valid until 2027-04-30 is not signed for 180 days from now (to 2027-05-22).

    The default ends when that day is over everywhere: its end at UTC-12, 2027-05-01 12:00 UTC.
    """
    assert _resolve(group="r") == datetime(2027, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_recovery_default_with_du_beyond_the_policy_is_the_policy():
    """A du further away than the policy's validity leaves the default at now plus the policy."""
    assert _recovery_until("2027-12-31") == NOW + VALIDITY[KeyUsage.RECOVERY]


def test_recovery_valid_until_today_gets_the_rest_of_the_day():
    """A du of today (2026-11-23) gives an expiry at the end of that day at UTC-12."""
    assert _recovery_until("2026-11-23") == datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("valid_until", ["2026-11-22", "2026-11-12"], ids=["just-over", "over"])
def test_recovery_whose_validity_is_over_is_refused_at_du(valid_until):
    """A du over everywhere (2026-11-22 ends at 2026-11-23 12:00 UTC, now) leaves no default."""
    with pytest.raises(DomainValidationError) as info:
        _recovery_until(valid_until)
    message = (
        f"the recovery is valid until {valid_until}, which is over: a credential signed now "
        "would already have expired"
    )
    assert info.value.errors == [FieldError(("dcc", "r", 0, "du"), message)]


def test_recovery_default_is_capped_at_the_certificate_first_when_it_ends_first():
    """A signing certificate ending before the du caps the recovery's default at its end."""
    not_after = NOW + timedelta(days=30)
    assert _resolve(group="r", not_after=not_after) == not_after


@pytest.mark.parametrize(
    ("valid_until", "loc", "fragment"),
    [
        ("2026-11-22", ("expirationTime",), "signing certificate"),
        ("2026-11-12", ("dcc", "r", 0, "du"), "valid until 2026-11-12"),
    ],
    ids=["certificate-ended-first", "du-ended-first"],
)
def test_both_ended_names_the_one_that_ended_first(valid_until, loc, fragment):
    """With the certificate and the du both over, the error names the one that ended first."""
    with pytest.raises(DomainValidationError) as info:
        _recovery_until(valid_until, not_after=NOW - timedelta(seconds=1))
    (error,) = info.value.errors
    assert error.loc == loc
    assert fragment in error.msg


def test_both_ended_at_the_same_instant_names_the_recovery():
    """A certificate ending just as the du is over names the du: the holder's data decides."""
    du_over = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)  # 2026-11-21 is over at UTC-12
    with pytest.raises(DomainValidationError) as info:
        _recovery_until("2026-11-21", not_after=du_over)
    (error,) = info.value.errors
    assert error.loc == ("dcc", "r", 0, "du")


def test_given_expiration_is_not_bounded_by_du():
    """A caller's own expirationTime past the du is signed as given.

    The contract bounds a given value only by now and the signing certificate.
    """
    given = datetime(2027, 12, 1, tzinfo=UTC)
    assert _recovery_until("2027-04-30", "2027-12-01T00:00:00Z") == given
