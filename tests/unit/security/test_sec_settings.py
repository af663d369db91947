"""The security setting groups check themselves: key source, bounds, algorithms, types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from signing_gateway.security.settings import AuditSettings, AuthSettings, LimitsSettings

COMPLETE = {"audience": "signing-gateway", "issuer": "https://idp.test/"}


def test_a_jwks_file_and_a_jwks_url_together_are_refused() -> None:
    """Pin that the keys come from one source: which one would a token be checked against?"""
    with pytest.raises(ValidationError, match=r"give auth\.jwks_file or auth\.jwks_url, not both"):
        AuthSettings(jwks_file=Path("jwks.json"), jwks_url="https://idp.test/jwks", **COMPLETE)


@pytest.mark.parametrize(
    "url",
    [
        "https:///jwks",
        "ftp://idp.test/jwks",
        "wss://idp.test/jwks",
        "file:///etc/jwks.json",
        "idp.test/jwks",
    ],
)
def test_a_jwks_url_must_be_an_absolute_http_url(url: str) -> None:
    """Pin that a URL without a host, or of another scheme, is refused when settings are read."""
    with pytest.raises(ValidationError, match=r"auth\.jwks_url must be an absolute https URL"):
        AuthSettings(jwks_url=url, **COMPLETE)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "LocalHost",
        "[::1]",
        "127.0.0.2",
        "127.255.0.9",
        "[::ffff:127.0.0.3]",
    ],
)
def test_plain_http_is_taken_on_each_loopback_name(host: str) -> None:
    """Pin the loopback exception: `localhost`, ::1 and every address of 127.0.0.0/8.

    The whole of 127.0.0.0/8 is the loopback interface's (RFC 1122 3.2.1.3); 127.0.0.2 was
    refused before, as if it were another host.
    """
    assert AuthSettings(jwks_url=f"http://{host}:8081/jwks", **COMPLETE).missing_for_jwt() == []


@pytest.mark.parametrize(
    "host",
    ["idp.test", "128.0.0.1", "localhost.idp.test", "[::2]", "0.0.0.0", "[::ffff:10.0.0.1]"],  # noqa: S104
)
def test_plain_http_is_refused_off_loopback(host: str) -> None:
    """Pin that no other host is taken over plain http, however close to a loopback name."""
    with pytest.raises(ValidationError, match="plain http only on loopback"):
        AuthSettings(jwks_url=f"http://{host}/jwks", **COMPLETE)


@pytest.mark.parametrize("url", ["https://idp.test:abc/jwks", "http://[::1].idp.test/jwks"])
def test_a_jwks_url_the_client_cannot_fetch_is_refused_with_the_settings(url: str) -> None:
    """A URL `urlsplit` takes but httpx refuses is a settings error, not a start-up traceback.

    Before, a port that is not a number passed the check, and `[::1].idp.test` passed it as
    the loopback host ::1 over plain http; the lifespan then failed with httpx's InvalidURL.
    """
    with pytest.raises(ValidationError, match=r"auth\.jwks_url must be an absolute https URL"):
        AuthSettings(jwks_url=url, **COMPLETE)


def test_https_is_taken_on_any_host() -> None:
    """Pin that the loopback rule concerns plain http only."""
    assert AuthSettings(jwks_url="https://localhost/jwks", **COMPLETE).missing_for_jwt() == []
    assert AuthSettings(jwks_url="https://idp.test/jwks", **COMPLETE).missing_for_jwt() == []


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, ["auth.jwks_file or auth.jwks_url", "auth.audience", "auth.issuer"]),
        ({"jwks_url": "https://idp.test/jwks"}, ["auth.audience", "auth.issuer"]),
        (
            {"jwks_file": Path("jwks.json"), "audience": "", "issuer": ""},
            ["auth.audience", "auth.issuer"],
        ),
        (COMPLETE, ["auth.jwks_file or auth.jwks_url"]),
        ({"jwks_file": Path("jwks.json"), **COMPLETE}, []),
    ],
)
def test_jwt_mode_names_each_setting_it_lacks(given: dict[str, Any], missing: list[str]) -> None:
    """Pin what `mode=jwt` needs: a key source, an audience and an issuer, none of them empty."""
    assert AuthSettings(**given).missing_for_jwt() == missing


@pytest.mark.parametrize("algorithms", [[], ["HS256"], ["none"], ["ES256", "HS512"]])
def test_only_asymmetric_algorithms_and_at_least_one_are_taken(algorithms: list[str]) -> None:
    """Pin that no HMAC or `none` algorithm can be allowed, nor an empty list."""
    with pytest.raises(ValidationError, match="algorithms"):
        AuthSettings(algorithms=algorithms, **COMPLETE)


def test_token_types_take_media_types_with_or_without_their_application_prefix() -> None:
    """Pin what `auth.token_types` takes: media types in any case, none for no check."""
    taken = ["at+jwt", "application/at+jwt", "JWT", "text/x-token"]
    assert AuthSettings(token_types=taken, **COMPLETE).token_types == taken
    assert AuthSettings(**COMPLETE).token_types == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty; leave auth.token_types empty for no check"),
        *(
            (value, "must be a media type such as at+jwt")
            for value in [
                "at +jwt",
                " at+jwt",
                "at+jwt\n",
                "at+jwt\t",
                "at\u00a0jwt",
                "\u0430t+jwt",
                "application/",
                "/at+jwt",
                "application/at+jwt/x",
            ]
        ),
    ],
)
def test_a_token_type_that_is_no_media_type_is_refused(value: str, problem: str) -> None:
    """An empty token type, or one with white space, beyond ASCII or with a stray `/`, is refused.

    None can be a header's `typ` as a media type: taken, it would refuse every caller.
    """
    with pytest.raises(ValidationError, match=r"token_types\.1\n.*" + re.escape(problem)):
        AuthSettings(token_types=["at+jwt", value], **COMPLETE)


#: (group, setting, the extreme values taken, the values just past them)
BOUNDS = [
    (AuthSettings, "leeway_seconds", [0, 300], [-1, 301]),
    (AuthSettings, "max_token_bytes", [1], [0]),
    (AuthSettings, "token_cache_size", [0], [-1]),
    (AuthSettings, "jwks_fetch_timeout_seconds", [0.001], [0, -1]),
    (LimitsSettings, "max_header_bytes", [4096], [4095]),
    (LimitsSettings, "header_timeout_seconds", [0.001], [0]),
    (LimitsSettings, "max_body_bytes", [1], [0]),
    (LimitsSettings, "max_json_depth", [1, 256], [0, 257]),
    (LimitsSettings, "max_json_string_chars", [1], [0]),
    (LimitsSettings, "body_read_timeout_seconds", [0.001], [0]),
    (AuditSettings, "max_pending_writes", [1], [0]),
    (AuditSettings, "write_timeout_seconds", [0.001], [0]),
]


@pytest.mark.parametrize(("group", "name", "taken", "refused"), BOUNDS)
def test_each_bounded_setting_takes_its_extremes_and_refuses_past_them(
    group: type[BaseModel], name: str, taken: list[float], refused: list[float]
) -> None:
    """Pin the bounds settings.py declares (a zero timeout or queue would refuse everything)."""
    extra = COMPLETE if group is AuthSettings else {}
    for value in taken:
        assert getattr(group(**{name: value}, **extra), name) == value
    for value in refused:
        with pytest.raises(ValidationError, match=name):
            group(**{name: value}, **extra)
