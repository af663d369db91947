"""A recovery entry for request bodies, dated from today so its validity (``du``) is not over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: Days from the positive test to the start and the end of a recovery's validity.
VALID_FROM_DAYS = 11
VALID_UNTIL_DAYS = 180


def recovery_entry(*, days_since_positive: int = 20) -> dict[str, str]:
    """A valid ``r`` entry whose positive test was `days_since_positive` days ago (UTC).

    It is valid from 11 to 180 days after that test, as recovery certificates are issued: with
    the default, its ``du`` lies 160 days ahead, so a default expiry ends with that day.
    """
    first_positive = datetime.now(UTC).date() - timedelta(days=days_since_positive)
    return {
        "tg": "840539006",
        "fr": first_positive.isoformat(),
        "co": "NL",
        "is": "Ministry of Health Welfare and Sport",
        "df": (first_positive + timedelta(days=VALID_FROM_DAYS)).isoformat(),
        "du": (first_positive + timedelta(days=VALID_UNTIL_DAYS)).isoformat(),
        "ci": "URN:UVCI:01:NL:RECOVERY0001",
    }
