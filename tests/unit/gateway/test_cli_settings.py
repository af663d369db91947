"""`signing-gateway serve` with invalid settings: a short report and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys

TIMEOUT_S = 60


def _serve(**settings: str) -> subprocess.CompletedProcess[str]:
    """Run `signing-gateway serve` with only these SIGNING_GATEWAY_* variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_GATEWAY_")}
    env.update({f"SIGNING_GATEWAY_{name}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "signing_gateway", "serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_serve_reports_missing_auth_without_a_traceback() -> None:
    """Production without caller authentication exits 2 with one line saying what to set."""
    done = _serve(ENVIRONMENT="production")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "signing-gateway: invalid settings (SIGNING_GATEWAY_*, see docs/operations.md):",
        (
            "  settings: caller authentication is not configured: set auth.jwks_file or "
            "auth.jwks_url, auth.audience, auth.issuer (or auth.mode=disabled for local use)"
        ),
    ]


def test_serve_names_the_variable_and_never_echoes_its_value() -> None:
    """A bad nested setting is reported under its variable name; the value given is not shown."""
    done = _serve(AUTH__MODE="disabled", EU_SIGNER__URL="ftp://s3cret@eu-signer")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "\n  SIGNING_GATEWAY_EU_SIGNER: " in done.stderr
    assert "s3cret" not in done.stderr


def test_serve_refuses_a_domestic_validity_window_past_ten_years() -> None:
    """A validFrom window beyond ten years is a settings error at start-up, not a 500 later."""
    done = _serve(AUTH__MODE="disabled", DOMESTIC__MAX_VALID_FROM_FUTURE_HOURS="100000000")
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [
        (
            "  SIGNING_GATEWAY_DOMESTIC__MAX_VALID_FROM_FUTURE_HOURS: "
            "Input should be less than or equal to 87600"
        )
    ]
