"""What the settings refuse, and in which words: signer URLs, pools, timeouts, production.

`serve` reports each refusal as a line naming its variable (tests/unit/gateway/
test_cli_settings.py runs it); here the settings are built in-process, so each rule and its
message are pinned without starting a process.
"""

from __future__ import annotations

import os

import pytest

from signing_gateway.settings import DEV_DOMESTIC_SIGNER_URL, DEV_EU_SIGNER_URL
from signing_gateway.settings_doc import setting_docs
from signing_gateway.settings_env import FLAG_VARIABLES, read_settings


def _number_variables() -> list[str]:
    """Every variable of the reference that takes a number with a fraction (seconds, ratios)."""
    return [d.env_var for d in setting_docs() if d.type_name in {"float", "float | None"}]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SIGNING_GATEWAY_* variable but development's auth.mode=disabled."""
    for name in [k for k in os.environ if k.upper().startswith("SIGNING_GATEWAY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    return monkeypatch


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_no_number_setting_takes_infinity_or_nan(
    clean_environment: pytest.MonkeyPatch, value: str
) -> None:
    """Every timeout, interval and ratio must be a finite number: each is named, none passes.

    Before, `inf` passed: SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS=inf ended `serve` in
    an OverflowError traceback (exit 1) after the settings check said nothing, and an infinite
    drain or signer timeout waited for ever.
    """
    variables = _number_variables()
    assert "SIGNING_GATEWAY_SHUTDOWN__DRAIN_TIMEOUT_SECONDS" in variables
    assert "SIGNING_GATEWAY_EU_SIGNER__RESILIENCE__RETRY_BUDGET_RATIO" in variables
    for name in variables:
        clean_environment.setenv(name, value)
    # A signer's other variables set, its URL must be given too (docs/operations.md).
    clean_environment.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", DEV_EU_SIGNER_URL)
    clean_environment.setenv("SIGNING_GATEWAY_DOMESTIC_SIGNER__URL", DEV_DOMESTIC_SIGNER_URL)
    settings, problems = read_settings(FLAG_VARIABLES)
    assert settings is None
    assert sorted(line.split(": ", 1)[0] for line in problems) == sorted(variables)


def test_a_finite_number_is_still_taken(clean_environment: pytest.MonkeyPatch) -> None:
    """Refusing infinity leaves every finite value as it was, a large one included."""
    clean_environment.setenv("SIGNING_GATEWAY_SHUTDOWN__CANCEL_GRACE_SECONDS", "1e6")
    settings, problems = read_settings(FLAG_VARIABLES)
    assert problems == []
    assert settings is not None
    assert settings.shutdown.cancel_grace_seconds == 1e6
