"""The fake-signer process: port 0, environment settings, keys directory, clean stop."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fake_signer_process import FakeSignerStartError


def test_keys_dir_survives_restart(fake_signer_factory, tmp_path):
    """Keys written to --keys-dir on first start are loaded again after a restart."""
    keys_dir = tmp_path / "keys"
    first = fake_signer_factory("--keys-dir", str(keys_dir))
    before = httpx.get(f"{first.base_url}/keys", timeout=5).json()
    assert first.stop() == 0
    assert (keys_dir / "csca.key.pem").stat().st_mode & 0o077 == 0
    second = fake_signer_factory("--keys-dir", str(keys_dir))
    assert httpx.get(f"{second.base_url}/keys", timeout=5).json() == before
    third = fake_signer_factory()
    assert httpx.get(f"{third.base_url}/keys", timeout=5).json() != before


def test_incomplete_keys_dir_is_refused(fake_signer_factory, tmp_path):
    """A keys dir holding only part of a key set stops the start instead of being overwritten."""
    (tmp_path / "csca.key.pem").write_text("not a key")
    with pytest.raises(FakeSignerStartError, match="incomplete"):
        fake_signer_factory("--keys-dir", str(tmp_path))


def test_environment_settings_and_cli_precedence(fake_signer_factory):
    """FAKE_SIGNER_* variables configure the process; command-line options win over them."""
    env = {
        "FAKE_SIGNER_ROLE": "domestic",
        "FAKE_SIGNER_ERROR_RATE": "1",
        "FAKE_SIGNER_CAPACITY": "3",
    }
    signer = fake_signer_factory("--error-rate", "0", env=env)
    control = httpx.get(f"{signer.base_url}/_control", timeout=5).json()
    assert control["capacity"] == 3
    assert control["errorRate"] == 0
    assert httpx.get(f"{signer.base_url}/keys", timeout=5).json()["eu"] == []


def test_port_zero_prints_the_bound_port_and_stops_cleanly(fake_signer_factory):
    """With --port 0 the listening line names the real port, and SIGTERM exits with 0."""
    signer = fake_signer_factory("--role", "eu")
    assert signer.port > 0
    assert signer.base_url == f"http://127.0.0.1:{signer.port}"
    assert httpx.get(f"{signer.base_url}/healthz", timeout=5).json() == {"status": "ok"}
    assert signer.stop() == 0


def test_invalid_settings_fail_fast(fake_signer_factory):
    """An invalid option value makes the process exit instead of serving."""
    with pytest.raises(FakeSignerStartError):
        fake_signer_factory("--error-rate", "2")
