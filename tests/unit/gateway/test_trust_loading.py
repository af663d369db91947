"""Loading trust at start-up: from files, parsed once; from the signers, stopped together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from signing_gateway.settings import TrustSettings
from signing_gateway.signers.errors import SignerConnectError
from signing_gateway.trust_loading import TrustUnavailableError, load_trust
from signing_gateway.verification.trust import (
    DomesticKey,
    DomesticTrustStore,
    DscCertificate,
    EuTrustStore,
)
from tests.support.credentials import make_domestic_signer, make_dsc


class _Signer:
    """A signer client whose key fetch fails, at once or after `delay` seconds."""

    def __init__(self, name: str, delay: float) -> None:
        self.name, self.delay, self.calls = name, delay, 0

    async def fetch_keys(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)  # a slow attempt, as a read timeout would be
        raise SignerConnectError("refused", signer=self.name, endpoint="keys")


async def test_a_failed_fetch_leaves_no_fetch_running():
    """When one signer gives up, start-up fails and the other signer's fetch is cancelled."""
    eu, domestic = _Signer("eu", 0.0), _Signer("domestic", 1.0)
    with pytest.raises(TrustUnavailableError):
        await load_trust(
            TrustSettings(fetch_from_signers=True),
            eu_client=eu,  # type: ignore[arg-type]
            domestic_client=domestic,  # type: ignore[arg-type]
            wait_for_signers=0.3,
        )
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    calls = domestic.calls
    await asyncio.sleep(1.2)
    assert domestic.calls == calls  # nothing asks the domestic signer any more


@pytest.fixture
def trust_files(tmp_path: Path) -> TrustSettings:
    """Two DSC files (one holding two certificates) and two domestic key files."""
    eu = [tmp_path / "dsc-1.pem", tmp_path / "dsc-2.pem"]
    eu[0].write_bytes(make_dsc(["test"]).pem)
    eu[1].write_bytes(make_dsc(["vaccination"]).pem + make_dsc(["recovery"]).pem)
    domestic = [tmp_path / "domestic-1.pem", tmp_path / "domestic-2.pem"]
    for path in domestic:
        path.write_bytes(make_domestic_signer().public_pem)
    return TrustSettings(eu_certificates=eu, domestic_keys=domestic)


async def _load(settings: TrustSettings) -> tuple[EuTrustStore, DomesticTrustStore]:
    """The trust stores of `settings`' files (no signer is asked)."""
    return await load_trust(
        settings,
        eu_client=None,  # type: ignore[arg-type]
        domestic_client=None,  # type: ignore[arg-type]
    )


async def test_good_trust_files_are_parsed_once(
    trust_files: TrustSettings, monkeypatch: pytest.MonkeyPatch
):
    """Each certificate and key of usable trust files is parsed once at start-up, not twice."""
    parsed: list[str] = []
    certificate, key = DscCertificate.from_der, DomesticKey.from_pem

    def parse_certificate(_cls: type, der: bytes) -> DscCertificate:
        parsed.append("certificate")
        return certificate(der)

    def parse_key(_cls: type, data: bytes) -> DomesticKey:
        parsed.append("key")
        return key(data)

    monkeypatch.setattr(DscCertificate, "from_der", classmethod(parse_certificate))
    monkeypatch.setattr(DomesticKey, "from_pem", classmethod(parse_key))
    eu, domestic = await _load(trust_files)
    assert (len(eu), len(domestic)) == (3, 2)
    assert sorted(parsed) == ["certificate"] * 3 + ["key"] * 2


async def test_unusable_trust_files_are_each_named(trust_files: TrustSettings, tmp_path: Path):
    """A start-up with unusable trust files fails naming each by its place in its list."""
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate")
    settings = TrustSettings(
        eu_certificates=[*trust_files.eu_certificates, tmp_path / "garbage.pem"],
        domestic_keys=[tmp_path / "missing.pem", *trust_files.domestic_keys, tmp_path],
    )
    with pytest.raises(TrustUnavailableError) as refused:
        await _load(settings)
    assert str(refused.value) == (
        "SIGNING_GATEWAY_TRUST__EU_CERTIFICATES: file 3 of 3: not a usable X.509 certificate; "
        "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS: file 1 of 4: no such file; "
        "SIGNING_GATEWAY_TRUST__DOMESTIC_KEYS: file 4 of 4: is a directory, not a file"
    )
