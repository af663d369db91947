"""Start-up settings of the fake signer: the default port of each role."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from fake_signer.cli import parse_settings
from signing_gateway.settings import DEV_DOMESTIC_SIGNER_URL, DEV_EU_SIGNER_URL


@pytest.fixture(autouse=True)
def no_port_or_role_variables(monkeypatch):
    """The defaults are under test: no FAKE_SIGNER_PORT or FAKE_SIGNER_ROLE from outside."""
    monkeypatch.delenv("FAKE_SIGNER_PORT", raising=False)
    monkeypatch.delenv("FAKE_SIGNER_ROLE", raising=False)


@pytest.mark.parametrize(
    ("role", "url"), [("eu", DEV_EU_SIGNER_URL), ("domestic", DEV_DOMESTIC_SIGNER_URL)]
)
def test_default_port_is_where_a_development_gateway_looks(role, url):
    """`fake-signer --role R` listens where a gateway's default URL for signer R points."""
    assert parse_settings(["--role", role]).port == urlsplit(url).port


def test_default_port_of_all_roles_is_the_eu_signers():
    """`fake-signer` (role all) takes the EU signer's port, not the gateway's 8080."""
    assert parse_settings([]).port == urlsplit(DEV_EU_SIGNER_URL).port


def test_default_port_follows_the_role_variable(monkeypatch):
    """FAKE_SIGNER_ROLE=domestic picks the domestic signer's port too."""
    monkeypatch.setenv("FAKE_SIGNER_ROLE", "domestic")
    assert parse_settings([]).port == urlsplit(DEV_DOMESTIC_SIGNER_URL).port


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--role", "domestic", "--port", "7001"], {}), (["--role", "domestic"], {"PORT": "7001"})],
)
def test_a_port_given_wins_over_the_role_default(monkeypatch, args, env):
    """--port or FAKE_SIGNER_PORT, when given, is the port whatever the role."""
    for name, value in env.items():
        monkeypatch.setenv(f"FAKE_SIGNER_{name}", value)
    assert parse_settings(args).port == 7001
