"""Opening what the security settings name: each unusable file a line naming its setting."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import respx

from signing_gateway.observability.metrics import GatewayMetrics
from signing_gateway.security import audit_trail, files
from signing_gateway.security.files import SecurityFileError, read_jwks_file, security_file_problems
from signing_gateway.security.settings import AuditSettings, AuthSettings
from signing_gateway.security.setup import open_audit_trail, open_token_verifier
from signing_gateway.security.tokens import LocalTokenIssuer
from signing_gateway.settings import Settings
from signing_gateway.settings_doc import setting_docs

#: The variables naming the two files (from the settings model: never spelt out here).
JWKS_FILE = next(d.env_var for d in setting_docs() if d.env_var.endswith("AUTH__JWKS_FILE"))
AUDIT_FILE = next(d.env_var for d in setting_docs() if d.env_var.endswith("AUDIT__FILE"))
_ACCESS = os.access


def _jwt(jwks_file: Path) -> AuthSettings:
    return AuthSettings(jwks_file=jwks_file, audience="a", issuer="i")


def _denying(denied: int, *, where: Path) -> object:
    """An `os.access` that refuses `denied` on `where` (tests run as root, who is never refused)."""

    def access(path: object, mode: int) -> bool:
        if Path(str(path)) == where and mode & denied:
            return False
        return _ACCESS(path, mode)  # type: ignore[arg-type]

    return access


def test_an_audit_file_that_is_a_directory_is_named_so(tmp_path: Path) -> None:
    """Pin the line for an audit path that is no regular file."""
    problems = security_file_problems(AuthSettings(mode="disabled"), AuditSettings(file=tmp_path))
    assert problems == [f"{AUDIT_FILE}: not a regular file"]


def test_an_audit_file_under_a_file_or_nothing_is_named_as_its_missing_directory(
    tmp_path: Path,
) -> None:
    """Pin one line for a directory that is not there, a file standing in its place included."""
    (tmp_path / "a-file").write_text("")
    for missing in (tmp_path / "a-file", tmp_path / "no-such-directory"):
        audit = AuditSettings(file=missing / "audit.jsonl")
        problems = security_file_problems(AuthSettings(mode="disabled"), audit)
        assert problems == [f"{AUDIT_FILE}: its directory does not exist"]


def test_an_audit_file_this_process_may_not_write_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin the lines for an audit file, or its directory, that this process cannot write."""
    existing = tmp_path / "audit.jsonl"
    existing.touch()
    monkeypatch.setattr(files.os, "access", _denying(os.W_OK, where=existing))
    disabled = AuthSettings(mode="disabled")
    assert security_file_problems(disabled, AuditSettings(file=existing)) == [
        f"{AUDIT_FILE}: not writable by this process"
    ]
    for denied in (os.W_OK, os.X_OK):  # a file is made in a directory both write and search
        monkeypatch.setattr(files.os, "access", _denying(denied, where=tmp_path))
        assert security_file_problems(disabled, AuditSettings(file=tmp_path / "new.jsonl")) == [
            f"{AUDIT_FILE}: its directory is not writable by this process"
        ]
    # An existing file this process may write is appended to whatever its directory allows.
    assert security_file_problems(disabled, AuditSettings(file=existing)) == []


async def test_an_audit_file_behind_a_directory_this_process_may_not_search_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin the line for an audit path that cannot be looked up: before start-up and after.

    `Path.exists` raised PermissionError there: `serve` ended in a traceback, without the
    report of this or any other problem, and so did the lifespan. Root searches any
    directory: the look-up is refused here as it is to any other user.
    """
    path = tmp_path / "private" / "audit.jsonl"
    real_stat = Path.stat

    def refuse(self: Path, **kwargs: bool) -> os.stat_result:
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", refuse)
    settings = AuditSettings(file=path)
    problems = security_file_problems(AuthSettings(mode="disabled"), settings)
    assert problems == [f"{AUDIT_FILE}: permission denied"]
    with pytest.raises(SecurityFileError) as refused:
        await open_audit_trail(settings, metrics=GatewayMetrics(), cancellations_answered=True)
    assert str(refused.value) == f"{AUDIT_FILE}: permission denied"


def test_disabled_authentication_reads_no_jwks_file(tmp_path: Path) -> None:
    """Pin that a JWKS file left in the settings with auth disabled stops nothing."""
    missing = tmp_path / "missing.json"
    disabled = AuthSettings(mode="disabled", jwks_file=missing)
    assert security_file_problems(disabled, AuditSettings()) == []
    assert security_file_problems(_jwt(missing), AuditSettings()) == [f"{JWKS_FILE}: no such file"]


def test_a_jwks_file_the_os_will_not_read_is_named_without_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin that a read error's line says `cannot be read`, not the error naming the path."""
    jwks = tmp_path / "jwks.json"
    jwks.write_text("{}")

    def refuse(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SecurityFileError) as refused:
        read_jwks_file(jwks)
    assert str(refused.value) == f"{JWKS_FILE}: cannot be read"


async def test_an_audit_file_that_cannot_be_opened_is_named_as_the_check_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pin the lifespan's line: the check's words where it finds why, else the OS's, no path."""
    metrics = GatewayMetrics()
    with pytest.raises(SecurityFileError) as directory:
        await open_audit_trail(
            AuditSettings(file=tmp_path), metrics=metrics, cancellations_answered=True
        )
    assert str(directory.value) == f"{AUDIT_FILE}: not a regular file"

    def refuse(path: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(audit_trail, "AuditFile", refuse)
    with pytest.raises(SecurityFileError) as denied:
        await open_audit_trail(
            AuditSettings(file=tmp_path / "a.jsonl"), metrics=metrics, cancellations_answered=True
        )
    assert str(denied.value) == f"{AUDIT_FILE}: permission denied"


async def test_the_audit_trail_is_opened_as_its_settings_say(tmp_path: Path) -> None:
    """Pin that each audit setting reaches the trail."""
    settings = AuditSettings(
        file=tmp_path / "a.jsonl",
        fail_closed=False,
        max_pending_writes=7,
        write_timeout_seconds=0.5,
    )
    trail = await open_audit_trail(settings, metrics=GatewayMetrics(), cancellations_answered=True)
    view = trail.snapshot()
    await trail.close()
    assert (view["file"], view["failClosed"], view["maxPendingWrites"]) == (True, False, 7)
    assert view["writeTimeoutSeconds"] == 0.5
    assert trail.cancellations_answered is True


async def test_disabled_authentication_is_warned_of_when_the_gateway_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pin the start-up warning: every /v1 caller is trusted."""
    caplog.set_level(logging.WARNING, logger="signing_gateway.security")
    async with AsyncExitStack() as stack:
        assert (
            await open_token_verifier(Settings(auth=AuthSettings(mode="disabled")).auth, stack)
            is None
        )
    [warning] = [r for r in caplog.records if r.name == "signing_gateway.security"]
    assert warning.levelno == logging.WARNING
    assert "caller authentication is disabled" in warning.getMessage()


async def test_the_jwks_refresher_stops_with_the_gateway() -> None:
    """Pin that the background fetches of a JWKS URL end when the gateway's stack closes."""
    issuer = LocalTokenIssuer(issuer="https://idp.test/", audience="a")
    settings = AuthSettings(jwks_url="https://idp.test/jwks", audience="a", issuer=issuer.issuer)
    with respx.mock(assert_all_called=True) as idp:
        idp.get(settings.jwks_url).mock(return_value=httpx.Response(200, json=issuer.jwks()))
        async with AsyncExitStack() as stack:
            assert await open_token_verifier(settings, stack) is not None
            [refresher] = [t for t in asyncio.all_tasks() if t.get_name() == "jwks-refresher"]
        for _ in range(3):
            await asyncio.sleep(0)
    assert refresher.done()


async def test_a_jwks_ca_bundle_that_will_not_load_fails_the_start_up_in_one_line(
    tmp_path: Path,
) -> None:
    """Pin the lifespan's line for a JWKS URL's CA bundle that holds no certificate.

    Before, the SSL module's error (its message naming no setting) ended the start-up with
    its traceback; the check before start-up names it the same way.
    """
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"not PEM")
    settings = AuthSettings(
        jwks_url="https://idp.internal/jwks", jwks_ca_bundle=bundle, audience="a", issuer="i"
    )
    async with AsyncExitStack() as stack:
        with pytest.raises(SecurityFileError) as refused:
            await open_token_verifier(settings, stack)
    variable = next(d.env_var for d in setting_docs() if d.env_var.endswith("JWKS_CA_BUNDLE"))
    assert str(refused.value) == f"{variable}: holds no PEM CA certificate"
