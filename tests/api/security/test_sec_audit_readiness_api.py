"""/readyz and the audit file: failing closed, a file that cannot take records is not ready."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from signing_gateway.security.settings import AuditSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import eu_vaccination
from tests.api.readiness import readyz_when_probed
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway
from tests.support.polling import until_answered

DEV_FULL = Path("/dev/full")
INTERVAL = 0.05


def _audit_file(answer: httpx.Response) -> dict:
    return answer.json()["dependencies"]["audit-file"]


async def _readyz_until(gateway: httpx.AsyncClient, status: int) -> httpx.Response:
    return await until_answered(lambda: gateway.get("/readyz"), lambda r: r.status_code == status)


async def test_a_deleted_audit_folder_takes_the_gateway_out_until_it_is_back(
    test_keys: SignerKeys, mocked: MockedSigners, tmp_path: Path
) -> None:
    """Failing closed, every issuance would be refused: /readyz says so, and why."""
    folder = tmp_path / "audit"
    folder.mkdir()
    settings = make_settings(
        test_keys,
        audit=AuditSettings(file=folder / "audit.jsonl"),
        readiness_probe_interval_seconds=INTERVAL,
    )
    async with running_gateway(settings) as gateway:
        ready = await readyz_when_probed(gateway)
        assert ready.status_code == 200, ready.text
        assert _audit_file(ready)["status"] == "up"
        assert _audit_file(ready)["required"] is True
        shutil.rmtree(folder)
        down = await _readyz_until(gateway, 503)
        assert down.json()["status"] == "not-ready"
        assert _audit_file(down)["status"] == "down"
        assert _audit_file(down)["error"] == "FileNotFoundError"
        assert down.json()["dependencies"]["eu-signer"]["status"] == "up"
        refused = await gateway.post("/v1/dcc", json=eu_vaccination())
        assert_problem(refused, 503, "audit-unavailable")
        folder.mkdir()
        back = await _readyz_until(gateway, 200)
        assert _audit_file(back)["status"] == "up"
        assert (await gateway.post("/v1/dcc", json=eu_vaccination())).status_code == 200


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full to make writes fail")
@pytest.mark.parametrize(("fail_closed", "status_while_down"), [(True, 503), (False, 200)])
async def test_failed_records_count_against_readiness_only_when_failing_closed(
    test_keys: SignerKeys, mocked: MockedSigners, fail_closed: bool, status_while_down: int
) -> None:
    """A failed record takes the gateway out only when failing closed; then it comes back.

    /dev/full refuses each write (ENOSPC with room to spare): the next probe is down, and
    with no records since, the one after it is up again.
    """
    settings = make_settings(
        test_keys,
        audit=AuditSettings(file=DEV_FULL, fail_closed=fail_closed),
        readiness_probe_interval_seconds=INTERVAL,
    )
    async with running_gateway(settings) as gateway:
        ready = await readyz_when_probed(gateway)
        assert ready.status_code == 200, ready.text
        assert _audit_file(ready)["required"] is fail_closed
        assert ready.json()["audit"]["failClosed"] is fail_closed
        await gateway.post("/v1/dcc", json=eu_vaccination())
        down = await until_answered(
            lambda: gateway.get("/readyz"), lambda r: _audit_file(r)["status"] == "down"
        )
        assert down.status_code == status_while_down, down.text
        assert _audit_file(down)["error"] == "AuditRecordsFailed"
        back = await until_answered(
            lambda: gateway.get("/readyz"), lambda r: _audit_file(r)["status"] == "up"
        )
        assert back.status_code == 200, back.text


async def test_no_audit_file_no_dependency(test_keys: SignerKeys, mocked: MockedSigners) -> None:
    """Without a file (the logger only) /readyz names the signers alone."""
    async with running_gateway(make_settings(test_keys)) as gateway:
        ready = await readyz_when_probed(gateway)
    assert set(ready.json()["dependencies"]) == {"eu-signer", "domestic-signer"}
