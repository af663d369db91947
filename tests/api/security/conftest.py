"""Fixtures for security API tests: a local token issuer and a gateway that requires tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from signing_gateway.security.settings import ALL_SCOPES, AuditSettings, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.signer_mocks import MockedSigners
from tests.support.audit import StalledDisk
from tests.support.gateway import SignerKeys, make_settings, running_gateway

AUDIENCE = "signing-gateway"
ISSUER = "https://idp.test/"


@pytest.fixture(scope="session")
def token_issuer() -> LocalTokenIssuer:
    """One ES256 token-signing key for the session."""
    return LocalTokenIssuer(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def auth_settings(token_issuer: LocalTokenIssuer, tmp_path: Path) -> AuthSettings:
    """JWT auth against the issuer's JWKS, written to a file."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(token_issuer.jwks()))
    return AuthSettings(mode="jwt", jwks_file=jwks, audience=AUDIENCE, issuer=ISSUER)


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    """Where the secured gateway appends its audit records."""
    return tmp_path / "audit.jsonl"


@pytest.fixture
def stalled_disk(monkeypatch: pytest.MonkeyPatch) -> StalledDisk:
    """Audit files opened during the test stall every write until `release()`."""
    disk = StalledDisk()
    disk.install(monkeypatch)
    return disk


@pytest.fixture
def full_token(token_issuer: LocalTokenIssuer) -> str:
    """A token holding every scope."""
    return token_issuer.mint(subject="backend-1", scopes=list(ALL_SCOPES), client_id="cc-backend")


@pytest.fixture
async def secured(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings, audit_file: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway that requires bearer tokens and writes an audit file."""
    settings = make_settings(test_keys, auth=auth_settings, audit=AuditSettings(file=audit_file))
    async with running_gateway(settings) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}
