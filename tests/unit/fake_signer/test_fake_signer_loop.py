"""The fake's event loop stays free while an `/issue` batch is signed (in-process server)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fake_signer import keys
from fake_signer.app import create_app
from fake_signer.domestic import MAX_CREDENTIAL_AMOUNT
from fake_signer.settings import FakeSignerSettings
from tests.contract.fake_signer.signer_wire import ATTRIBUTES, JSON_HEADERS
from tests.support.fake_signer_app import serving_app
from tests.support.idemix_issuer import commitment_message, issuer_nonce, make_holders

# Each signature takes this long: 100 of them take 0.3 s, long beside the millisecond a
# /healthz round trip takes on a free loop.
SIGN_SECONDS = 0.003


class SlowEd25519Key:
    """A real Ed25519 key whose signatures take SIGN_SECONDS; notes when each ends.

    The wait releases the GIL, as OpenSSL's Ed25519 signing does: what is tested is where the
    batch is signed, on the loop (which then answers nothing until it is done) or off it. A
    wait that held the GIL would make the loop thread queue for it at every system call, and
    the answers seen would depend on the interpreter's switching and the machine's load: such
    a busy loop saw 2 answers in 0.3 s in a full test run, and more than 3 when run alone.
    """

    def __init__(self, key: Ed25519PrivateKey) -> None:
        """Wrap `key`."""
        self._key = key
        self.signed_at: list[float] = []

    def sign(self, data: bytes) -> bytes:
        """Sign `data`, then wait SIGN_SECONDS without holding the GIL."""
        signature = self._key.sign(data)
        time.sleep(SIGN_SECONDS)
        self.signed_at.append(time.perf_counter())
        return signature


@pytest.fixture
async def slow_signer():
    """An in-process domestic fake signer on a free port whose signatures are slow."""
    material = keys.generate_key_material("NL")
    slow = SlowEd25519Key(material.domestic.private_key)
    domestic = dataclasses.replace(material.domestic, private_key=slow)
    app = create_app(
        FakeSignerSettings(role="domestic"), keys=dataclasses.replace(material, domestic=domestic)
    )
    async with serving_app(app) as client:
        yield client, slow


async def test_healthz_answers_while_a_full_issue_batch_is_signed(slow_signer):
    """/healthz keeps answering while one /issue signs 100 sets; no stall near the batch's time."""
    client, slow = slow_signer
    amount = MAX_CREDENTIAL_AMOUNT
    prepared = await client.post(
        "/prepare_issue", json={"credentialAmount": amount}, headers=JSON_HEADERS
    )
    nonce = prepared.json()["issuerNonce"]
    body = {
        "prepareIssueMessage": prepared.json(),
        "issueCommitmentMessage": {"issuerNonce": nonce},
        "credentialsAttributes": [ATTRIBUTES] * amount,
    }
    issuing = asyncio.create_task(client.post("/issue", json=body, headers=JSON_HEADERS))
    answered: list[float] = []
    while not issuing.done():
        assert (await client.get("/healthz")).status_code == 200
        answered.append(time.perf_counter())
    response = await issuing
    assert response.status_code == 200
    assert len(response.json()) == amount
    first, last = slow.signed_at[0], slow.signed_at[-1]
    during = [when for when in answered if first < when < last]
    # On the loop, nothing answers between the first and the last signature.
    assert len(during) >= 3, (len(during), last - first)
    stalls = [b - a for a, b in zip([first, *during], [*during, last], strict=True)]
    assert max(stalls) < (last - first) / 2, (max(stalls), last - first)


@pytest.fixture
async def idemix_signer():
    """An in-process domestic fake signer on a free port in the idemix scheme."""
    app = create_app(FakeSignerSettings(role="domestic", domestic_scheme="idemix"))
    async with serving_app(app, client_timeout=60) as client:
        yield client


async def test_healthz_answers_while_idemix_signatures_are_made(idemix_signer):
    """CL signing (~16 ms of CPU per credential) never holds /healthz up: it is off the loop."""
    client = idemix_signer
    amount = 40
    prepared = await client.post(
        "/prepare_issue", json={"credentialAmount": amount}, headers=JSON_HEADERS
    )
    body = {
        "prepareIssueMessage": prepared.json(),
        "issueCommitmentMessage": commitment_message(
            make_holders(amount), issuer_nonce(prepared.json())
        ),
        "credentialsAttributes": [ATTRIBUTES] * amount,
    }
    started = time.perf_counter()
    issuing = asyncio.create_task(client.post("/issue", json=body, headers=JSON_HEADERS))
    answered = [started]
    while not issuing.done():
        assert (await client.get("/healthz")).status_code == 200
        answered.append(time.perf_counter())
    response = await issuing
    took = time.perf_counter() - started
    assert response.status_code == 200
    assert len(response.json()) == amount
    stalls = [b - a for a, b in itertools.pairwise(answered)]
    # Signed on the loop, one /healthz would wait for all forty signatures (~0.6 s).
    assert len(answered) >= 10, (len(answered), took)
    assert max(stalls) < 0.2, (max(stalls), took)
