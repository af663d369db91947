"""Well-behaved (and deliberately broken) signer answers for respx routes in API tests.

Each builder returns a respx side effect that answers the way the real signer would, signing
with the session's test keys, so the gateway's verifier accepts the result unless a test asks
for one defect.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson
import respx

from tests.support.credentials import Hc1Spec, make_hc1, proof_identifier
from tests.support.gateway import DOMESTIC_SIGNER_URL, EU_SIGNER_URL, SignerKeys

Handler = Callable[[httpx.Request], httpx.Response]
AsyncHandler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]

NONCE = base64.b64encode(b"0123456789abcdef").decode()


def eu_signing(keys: SignerKeys, **defects: Any) -> Handler:
    """Sign the request's DCC as the EU signer does; `defects` bend the Hc1Spec (or exp, iat)."""
    exp_shift = defects.pop("exp_shift", 0)
    iat_shift = defects.pop("iat_shift", 0)
    dcc_override = defects.pop("dcc", None)

    def sign(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        exp = int(datetime.fromisoformat(body["expirationTime"]).timestamp()) + exp_shift
        spec = Hc1Spec(
            dcc_override or body["dcc"], exp=exp, iat=int(time.time()) + iat_shift, **defects
        )
        hc1 = make_hc1(keys.dscs[body["keyUsage"]], spec)
        return httpx.Response(
            200, json={"credential": hc1.text, "proofIdentifier": hc1.proof_identifier}
        )

    return sign


def prepare_issuing(keys: SignerKeys) -> Handler:
    """Open a session as the domestic signer does: its key's kid, a nonce, the amount asked."""
    issuer_pk_id = base64.b64encode(keys.domestic.kid).decode()

    def prepare_issue(request: httpx.Request) -> httpx.Response:
        amount = orjson.loads(request.content)["credentialAmount"]
        return httpx.Response(
            200,
            json={"issuerPkId": issuer_pk_id, "issuerNonce": NONCE, "credentialAmount": amount},
        )

    return prepare_issue


def domestic_issuing(keys: SignerKeys) -> Handler:
    """Sign every attribute set of an /issue call under the session's nonce."""

    def issue(request: httpx.Request) -> httpx.Response:
        # Read as the real signer (Go, big.Int) reads it: big integers in the commitment too.
        body = json.loads(request.content)
        nonce = body["prepareIssueMessage"]["issuerNonce"]
        items = [keys.domestic.issue_item(nonce, a) for a in body["credentialsAttributes"]]
        return httpx.Response(200, json=items)

    return issue


def domestic_static(keys: SignerKeys) -> Handler:
    """Sign one static QR as the domestic signer does."""

    def issue_static(request: httpx.Request) -> httpx.Response:
        attrs = orjson.loads(request.content)["credentialAttributes"]
        qr, signature = keys.domestic.static_qr(attrs)
        return httpx.Response(200, json={"qr": qr, "proofIdentifier": proof_identifier(signature)})

    return issue_static


@dataclass
class SlowCall:
    """A route that answers only after `seconds`; records whether it finished or was cancelled."""

    seconds: float
    then: Handler | None = None
    started: int = 0
    finished: int = 0
    cancelled: int = 0
    _events: list[asyncio.Event] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        """Wait, then answer with `then` (or a bare 200)."""
        self.started += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return self.then(request) if self.then else httpx.Response(200, json={})


@dataclass
class MockedSigners:
    """The named signing routes of both mocked signers."""

    router: respx.MockRouter
    get_credential: respx.Route
    prepare_issue: respx.Route
    issue: respx.Route
    issue_static: respx.Route

    def signing_calls(self) -> int:
        """How many requests reached any signer, probes not counted."""
        return sum(
            r.call_count
            for r in (self.get_credential, self.prepare_issue, self.issue, self.issue_static)
        )


def mock_signers(router: respx.MockRouter, keys: SignerKeys) -> MockedSigners:
    """Install correct signing answers for every signer endpoint on `router`."""
    return MockedSigners(
        router,
        router.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=eu_signing(keys)),
        router.post(f"{DOMESTIC_SIGNER_URL}/prepare_issue").mock(side_effect=prepare_issuing(keys)),
        router.post(f"{DOMESTIC_SIGNER_URL}/issue").mock(side_effect=domestic_issuing(keys)),
        router.post(f"{DOMESTIC_SIGNER_URL}/issue_static").mock(side_effect=domestic_static(keys)),
    )


def commitment(nonce: str = NONCE) -> str:
    """A base64 JSON issue commitment that references `nonce`."""
    return base64.b64encode(orjson.dumps({"n_2": nonce, "issuerNonce": nonce})).decode()


def decode_b64_json(value: str) -> Any:
    """Decode a base64 JSON message of the public API."""
    return orjson.loads(base64.b64decode(value, validate=True))


def failing_eu_signer(signers: respx.MockRouter) -> list[httpx.Request]:
    """Route the EU signer to answer 500; the list fills with every request it receives."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500, text="boom")

    signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=answer)
    return seen
