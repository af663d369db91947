"""Smoke: a valid DCC request goes through signing and verification."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import orjson
import respx

from signing_gateway.api import examples
from tests.support.credentials import Hc1Spec, make_hc1
from tests.support.gateway import EU_SIGNER_URL, SignerKeys


async def test_dcc_round_trip(
    gateway: httpx.AsyncClient, signers: respx.MockRouter, test_keys: SignerKeys
):
    """A valid vaccination request returns the signer's credential after verification."""

    def sign(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        exp = int(datetime.fromisoformat(body["expirationTime"]).timestamp())
        hc1 = make_hc1(
            test_keys.dscs["vaccination"], Hc1Spec(body["dcc"], exp=exp, iat=int(time.time()))
        )
        return httpx.Response(
            200, json={"credential": hc1.text, "proofIdentifier": hc1.proof_identifier}
        )

    route = signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=sign)
    response = await gateway.post("/v1/dcc", json=examples.EU_VACCINATION)
    assert response.status_code == 200, response.text
    assert response.json()["credential"].startswith("HC1:")
    assert route.call_count == 1
