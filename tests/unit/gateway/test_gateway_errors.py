"""Response headers of gateway errors stay well-formed whatever value they were built from."""

from __future__ import annotations

import pytest

from signing_gateway.errors import SignerUnavailable


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(0.2, "1"), (7.0, "7"), (7.4, "8"), (float("inf"), "1"), (float("nan"), "1"), (-5.0, "1")],
)
def test_signer_unavailable_retry_after_is_whole_seconds_at_least_one(retry_after, expected):
    """Retry-After is whole seconds rounded up, at least 1, and 1 for a value not a number."""
    error = SignerUnavailable("european: down", part="european", retry_after=retry_after)
    assert error.headers() == {"Retry-After": expected}
