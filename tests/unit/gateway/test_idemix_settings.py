"""The idemix scheme's settings: refused without keys, and key files checked before start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from signing_gateway.app import IdemixUnavailableError, create_app
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import IdemixSettings, Settings
from signing_gateway.settings_env import read_settings
from signing_gateway.start_up_checks import start_up_problems
from tests.support.gateway import make_settings, make_test_keys
from tests.support.idemix_issuer import TEST_KEY_FILE

KEYS = "SIGNING_GATEWAY_IDEMIX__KEYS"


def test_scheme_is_simulation_unless_set():
    """Today's behaviour stays the default: the simulation scheme."""
    assert make_settings().domestic_scheme == "simulation"


def test_idemix_without_keys_is_refused_in_one_line():
    """domestic_scheme=idemix with no issuer key names the missing setting."""
    with pytest.raises(ValidationError) as refused:
        Settings(domestic_scheme="idemix", auth=AuthSettings(mode="disabled"))
    (error,) = refused.value.errors()
    assert error["loc"] == ("idemix", "keys")
    assert "required when domestic_scheme=idemix" in error["msg"]


def test_keys_are_read_from_the_environment_as_a_json_map(monkeypatch):
    """The key map is a JSON object of issuerPkId to file, as an operator writes it."""
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    monkeypatch.setenv("SIGNING_GATEWAY_DOMESTIC_SCHEME", "idemix")
    monkeypatch.setenv(KEYS, f'{{"VWS-TEST-0": "{TEST_KEY_FILE}"}}')
    settings, problems = read_settings(())
    assert problems == []
    assert settings is not None
    assert settings.idemix.keys == {"VWS-TEST-0": TEST_KEY_FILE}


def test_unusable_key_files_are_named_a_line_each(tmp_path: Path):
    """A missing file and a file that is no IRMA key are each reported by their issuerPkId."""
    broken = tmp_path / "broken.xml"
    broken.write_text("<IssuerPublicKey/>")
    settings = make_settings(
        domestic_scheme="idemix",
        idemix=IdemixSettings(
            keys={"VWS-TEST-0": TEST_KEY_FILE, "gone": tmp_path / "gone.xml", "bad": broken}
        ),
    )
    problems = [p for p in start_up_problems(settings) if p.startswith(KEYS)]
    assert problems == [
        f"{KEYS}: key gone: no such file",
        (
            f"{KEYS}: key bad: root element must be "
            "{http://www.zurich.ibm.com/security/idemix}IssuerPublicKey, not IssuerPublicKey"
        ),
    ]


def test_key_files_are_not_read_in_the_simulation_scheme(tmp_path: Path):
    """Keys given for the idemix scheme but not used are not checked (nor read)."""
    settings = make_settings(idemix=IdemixSettings(keys={"gone": tmp_path / "gone.xml"}))
    assert not [p for p in start_up_problems(settings) if p.startswith(KEYS)]


async def test_start_up_refuses_a_key_that_does_not_load(tmp_path: Path):
    """The app's start-up fails with the key's problem (a file that changed after the check)."""
    settings = make_settings(
        make_test_keys(tmp_path),
        domestic_scheme="idemix",
        idemix=IdemixSettings(keys={"gone": tmp_path / "gone.xml"}),
    )
    app = create_app(settings)
    with pytest.raises(IdemixUnavailableError, match="key gone: no such file"):
        async with app.router.lifespan_context(app):
            pass
