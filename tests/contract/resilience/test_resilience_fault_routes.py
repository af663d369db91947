"""The fault matrix on every route that calls a signer, not only /v1/dcc.

Each fault, injected once into the one signer a part of the request needs, against real fake
signers: the status and problem type the caller gets, the part it names, the signer's
`Retry-After`, that it arrives within the deadline, and whether the signer was asked again.
The domestic routes and the combined ones (`/v1/print`, `/v1/credentials`, where the other
part's signer is healthy) answer as `/v1/dcc` does; only `/issue` (single-use nonce) is never
replayed after a call that may have reached the signer.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from signing_gateway.api import examples
from tests.contract.resilience.conftest import DEADLINE, MARGIN, control, gateway_for, metric
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.sessions import open_session

pytestmark = pytest.mark.timeout(60)

#: fault → (status, problem type) on an endpoint that may be replayed; None type: 200.
REPLAYABLE = {
    "status=500": (502, "signer-bad-response"),
    "reset": (200, None),
    "status=503;retry-after=5": (503, "signer-unavailable"),
    "hang": (200, None),
    "malformed=shape": (502, "signer-bad-response"),
    "bad-signature": (502, "credential-verification-failed"),
}
#: The same on the domestic /issue, which is sent again only when it certainly never arrived.
NOT_REPLAYABLE = {
    **REPLAYABLE,
    "reset": (502, "signer-bad-response"),
    "hang": (504, "signer-timeout"),
}
#: The gateway's count of the attempts it sent to a signer endpoint.
CALLS = "gateway_signer_calls_total"
#: (route, which signer the fault is put on, the endpoint it hits, the part the problem names)
ROUTES = {
    "static": ("/v1/domestic/static", "domestic", "issue_static", "domestic"),
    "prepare-issue": ("/v1/domestic/prepare-issue", "domestic", "prepare_issue", "domestic"),
    "issue": ("/v1/domestic/issue", "domestic", "issue", "domestic"),
    "print-eu": ("/v1/print", "eu", "get_credential", "european"),
    "print-domestic": ("/v1/print", "domestic", "issue_static", "domestic"),
    "credentials-eu": ("/v1/credentials", "eu", "get_credential", "european[0]"),
    "credentials-domestic": ("/v1/credentials", "domestic", "issue", "domestic"),
}


def _attributes() -> dict[str, str]:
    return dict(examples.DOMESTIC_ATTRIBUTES, validFrom=str(int(time.time())))


async def _body(client: httpx.AsyncClient, route: str) -> dict[str, Any] | None:
    if route == "/v1/domestic/static":
        return {"credentialAttributes": _attributes()}
    if route == "/v1/domestic/issue":
        return {**await open_session(client), "credentialsAttributes": [_attributes()]}
    if route == "/v1/print":
        return {"domestic": _attributes(), "european": examples.EU_VACCINATION}
    if route == "/v1/credentials":
        session = await open_session(client)
        return {**session, "domestic": [_attributes()], "european": [examples.EU_VACCINATION]}
    return None  # prepare-issue takes no body


@pytest.mark.parametrize("case", ROUTES.values(), ids=ROUTES.keys())
async def test_each_fault_gets_its_answer_on_every_route(fakes, case):
    """Status, problem type, part and Retry-After as on /v1/dcc, in time; no replay of /issue."""
    route, signer, endpoint, part = case
    eu_fake, domestic_fake = fakes
    target: FakeSignerProcess = eu_fake if signer == "eu" else domestic_fake
    faults = NOT_REPLAYABLE if endpoint == "issue" else REPLAYABLE
    if endpoint == "prepare_issue":  # it signs nothing: a bad-signature fault waits for /issue
        faults = {k: v for k, v in faults.items() if k != "bad-signature"}
    async with gateway_for(eu_fake.base_url, domestic_fake.base_url) as client:
        for fault, (status, slug) in faults.items():
            body = await _body(client, route)
            before = await metric(client, CALLS, signer=signer, endpoint=endpoint)
            control(target, fault=fault, faultCount=1)
            started = time.monotonic()
            response = await client.post(route, json=body)
            took = time.monotonic() - started
            assert response.status_code == status, (fault, response.text)
            assert took < DEADLINE + MARGIN, (fault, took)
            asked = await metric(client, CALLS, signer=signer, endpoint=endpoint) - before
            if slug is None:  # replayed after a timeout or a reset, and signed
                assert asked == 2, fault
                continue
            problem = response.json()
            assert problem["type"].endswith(f"/{slug}"), (fault, problem)
            assert problem["part"] == part, (fault, problem)
            assert asked == 1, (fault, asked)  # none of these is sent again
            if status == 503:
                assert response.headers["retry-after"] == "5"  # the signer's, passed on
