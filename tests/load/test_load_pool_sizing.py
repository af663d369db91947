"""The HTTP pool of a signer is always larger than its bulkhead, so nothing queues in the pool."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from signing_gateway.settings import ResilienceSettings, SignerSettings

URL = "http://127.0.0.1:9"


def test_pool_no_larger_than_the_bulkhead_is_refused() -> None:
    """max_connections equal to the bulkhead bound leaves no room for the probe: refused."""
    with pytest.raises(ValidationError, match="max_connections must exceed"):
        SignerSettings(url=URL, max_connections=64, resilience=ResilienceSettings(max_in_flight=64))


def test_pool_larger_than_the_bulkhead_is_accepted() -> None:
    """One connection more than the bulkhead admits is enough."""
    settings = SignerSettings(
        url=URL, max_connections=65, resilience=ResilienceSettings(max_in_flight=64)
    )
    assert settings.max_connections > settings.resilience.max_in_flight


def test_defaults_keep_the_pool_above_the_bulkhead() -> None:
    """The shipped defaults satisfy the rule."""
    settings = SignerSettings(url=URL)
    assert settings.max_connections > settings.resilience.max_in_flight
