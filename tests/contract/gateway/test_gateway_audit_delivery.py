"""What an issuance whose caller hung up says on record: nothing is lost silently.

A caller whose timeout is shorter than the signer's answer hangs up while the gateway waits.
Served by uvicorn with the gateway's HTTP protocol (which tells the request a lost connection
and cancels it), in front of the fake signers made slow: the signer call is cancelled, nothing
is issued, and the record says `cancelled` with no status (nobody was answered). Before, the
gateway went on, signed, wrote `issued`, and its answer was dropped by the server: `issued`,
then `undelivered` (which a caller leaving once the credential is issued still gets:
tests/contract/gateway/test_gateway_callers_gone.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from signing_gateway.api import examples
from signing_gateway.app import create_app
from signing_gateway.security.settings import AuditSettings
from signing_gateway.settings import SignerSettings, TrustSettings
from tests.contract.gateway.conftest import set_control
from tests.support.audit import records_by_request
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.gateway import make_settings, served_gateway
from tests.support.logs import logged_as_written
from tests.support.polling import until_answered
from tests.support.sessions import open_session

pytestmark = pytest.mark.timeout(60)

#: How long the slow signer takes, and how long the caller waits for the gateway's answer.
SIGNER_MS = 1000
PATIENCE = 0.3


@dataclass
class Served:
    """The served gateway's client and the audit file it writes."""

    client: httpx.AsyncClient
    audit_file: Path

    async def ended(self) -> None:
        """Wait until no request is in progress and every audit record is in the file.

        A record queued as a request ends is queued in the step that takes the request out of
        progress, before any scrape can see it out.
        """
        await until_answered(self._in_progress, lambda n: n == 1)  # the scrape's own
        await until_answered(self._audit, lambda state: state["pendingWrites"] == 0)

    async def _in_progress(self) -> float:
        metrics = (await self.client.get("/metrics")).text
        [line] = [li for li in metrics.splitlines() if li.startswith("gateway_requests_in_prog")]
        return float(line.split()[-1])

    async def _audit(self) -> dict[str, Any]:
        state: dict[str, Any] = (await self.client.get("/readyz")).json()["audit"]
        return state

    def records(self) -> dict[str, list[dict[str, Any]]]:
        """Each attempt's records in file order, by request id."""
        return records_by_request(self.audit_file)


@asynccontextmanager
async def _served(
    eu: FakeSignerProcess, domestic: FakeSignerProcess, tmp_path: Path
) -> AsyncIterator[Served]:
    """The gateway, with an audit file, served on a free port in front of the fakes."""
    settings = make_settings(
        audit=AuditSettings(file=tmp_path / "audit.jsonl"),
        eu_signer=SignerSettings(url=eu.base_url),
        domestic_signer=SignerSettings(url=domestic.base_url),
        trust=TrustSettings(fetch_from_signers=True),
    )
    async with (
        served_gateway(create_app(settings)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield Served(client, tmp_path / "audit.jsonl")


def _attributes() -> dict[str, str]:
    return dict(examples.DOMESTIC_ATTRIBUTES, validFrom=examples.this_hour())


async def _dcc(client: httpx.AsyncClient) -> dict[str, Any]:
    return examples.EU_VACCINATION


async def _static(client: httpx.AsyncClient) -> dict[str, Any]:
    return {"credentialAttributes": _attributes()}


async def _nothing(client: httpx.AsyncClient) -> None:
    return None


async def _session(client: httpx.AsyncClient) -> dict[str, Any]:
    """A /v1/domestic/issue body on a session opened now (at the signer's normal pace)."""
    return {**await open_session(client), "credentialsAttributes": [_attributes()]}


async def _print(client: httpx.AsyncClient) -> dict[str, Any]:
    return {"european": examples.EU_TEST}


async def _credentials(client: httpx.AsyncClient) -> dict[str, Any]:
    return {"european": [examples.EU_VACCINATION]}


#: Each audited endpoint: a body for it, and which signer to slow down. A session handed out
#: by /v1/domestic/prepare-issue is no credential, but what its record says was answered too.
ENDPOINTS: dict[
    str, tuple[Callable[[httpx.AsyncClient], Awaitable[dict[str, Any] | None]], str]
] = {
    "/v1/dcc": (_dcc, "eu"),
    "/v1/domestic/static": (_static, "domestic"),
    "/v1/domestic/prepare-issue": (_nothing, "domestic"),
    "/v1/domestic/issue": (_session, "domestic"),
    "/v1/print": (_print, "eu"),
    "/v1/credentials": (_credentials, "eu"),
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_an_issuance_whose_caller_hung_up_at_the_signer_is_recorded_cancelled(
    fakes: tuple[FakeSignerProcess, FakeSignerProcess], tmp_path: Path, endpoint: str
) -> None:
    """`cancelled`, no status and no problem, and nothing after it; a patient caller's `issued`.

    The record names what was asked for (its items), as the record of any cancelled attempt.
    The request is logged once, `disconnected`, and no error is (its parts' tasks included).
    """
    eu, domestic = fakes
    make_body, slow = ENDPOINTS[endpoint]
    async with _served(eu, domestic, tmp_path) as gateway:
        body = await make_body(gateway.client)
        set_control(eu if slow == "eu" else domestic, latencyMs=SIGNER_MS)
        with logged_as_written() as logged:
            with pytest.raises(httpx.ReadTimeout):
                await gateway.client.post(
                    endpoint, json=body, headers={"X-Request-ID": "gone"}, timeout=PATIENCE
                )
            await gateway.ended()
        lines = logged()
        patient = await gateway.client.post(
            endpoint, json=await make_body(gateway.client), headers={"X-Request-ID": "waited"}
        )
        assert patient.status_code == 200, patient.text
        await gateway.ended()
        records = gateway.records()
    [gone] = records["gone"]
    assert (gone["outcome"], gone["status"], gone["problemType"]) == ("cancelled", None, None)
    assert gone["items"], gone
    assert not [line for line in lines if line["level"] in {"error", "critical"}], lines
    [access] = [
        line
        for line in lines
        if line["logger"] == "signing_gateway.access" and line["request_id"] == "gone"
    ]
    assert access["outcome"] == "disconnected"
    assert [record["outcome"] for record in records["waited"]] == ["issued"]
