"""The security setting groups check themselves: the JWKS URL."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from signing_gateway.security.settings import AuthSettings

COMPLETE = {"audience": "signing-gateway", "issuer": "https://idp.test/"}


@pytest.mark.parametrize("url", ["https://idp.test:abc/jwks", "http://[::1].idp.test/jwks"])
def test_a_jwks_url_the_client_cannot_fetch_is_refused_with_the_settings(url: str) -> None:
    """A URL `urlsplit` takes but httpx refuses is a settings error, not a start-up traceback.

    Before, a port that is not a number passed the check, and `[::1].idp.test` passed it as
    the loopback host ::1 over plain http; the lifespan then failed with httpx's InvalidURL.
    """
    with pytest.raises(ValidationError, match=r"auth\.jwks_url must be an absolute https URL"):
        AuthSettings(jwks_url=url, **COMPLETE)
