"""The idemix domestic scheme end to end: a mocked Idemix signer, real CL proofs and signatures.

The static QRs are real CoronaCheck vectors (mobile-core's test data), issued in 2021: the
attribute policy's clock is set to their validFrom for those requests. The issued signatures
are made here with the published private key of the test issuer ``VWS-TEST-0``.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import orjson
import psutil
import pytest
import respx

from signing_gateway.issuance import domestic as domestic_issuance
from signing_gateway.settings import DomesticPolicySettings, IdemixSettings, Settings
from signing_gateway.verification.idemix import credential_attribute_values
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes
from tests.api.signer_mocks import decode_b64_json
from tests.support.gateway import DOMESTIC_SIGNER_URL, SignerKeys, make_settings, running_gateway
from tests.support.idemix_issuer import (
    TEST_KEY_FILE,
    Holder,
    commitment_message,
    issuer_nonce,
    make_holders,
    sign,
)
from tests.support.polling import until_answered
from tests.unit.verification.idemix_qr_support import make_qr, proof_fields
from tests.unit.verification.idemix_testdata import DENIED, DENIED_PROOF_IDENTIFIER, DENIED_QR

ISSUER_NONCE = base64.b64encode(b"0123456789abcdef").decode()


def idemix_settings(keys: SignerKeys) -> Settings:
    """The gateway in idemix mode with the test issuer key; one check worker."""
    return make_settings(
        keys,
        domestic_scheme="idemix",
        idemix=IdemixSettings(keys={"VWS-TEST-0": TEST_KEY_FILE}, check_workers=1),
        # DENIED_QR's credential is valid for 4056 hours.
        domestic=DomesticPolicySettings(max_valid_for_hours=4056),
        readiness_probe_interval_seconds=0.05,
    )


@pytest.fixture
async def gateway(
    test_keys: SignerKeys, signers: respx.MockRouter
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway in idemix mode whose signers are the respx mocks."""
    async with running_gateway(idemix_settings(test_keys)) as client:
        yield client


@pytest.fixture
def in_2021(monkeypatch: pytest.MonkeyPatch) -> None:
    """The attribute policy's clock at DENIED_QR's validFrom."""
    then = datetime.fromtimestamp(int(DENIED["validFrom"]), UTC)
    monkeypatch.setattr(domestic_issuance, "_now", lambda: then)


def static_answer(signers: respx.MockRouter, qr: str, proof_identifier: str) -> respx.Route:
    """The mocked signer's /issue_static answering `qr`."""
    return signers.post(f"{DOMESTIC_SIGNER_URL}/issue_static").respond(
        200, json={"qr": qr, "proofIdentifier": proof_identifier}
    )


async def static(gateway: httpx.AsyncClient, attributes: dict[str, str]) -> httpx.Response:
    """POST /v1/domestic/static for `attributes`."""
    return await gateway.post("/v1/domestic/static", json={"credentialAttributes": attributes})


@pytest.mark.usefixtures("in_2021")
async def test_real_static_qr_is_verified_and_released(gateway, signers):
    """The signer's real NL2 QR, over the attributes asked for, is answered as it came."""
    route = static_answer(signers, DENIED_QR, DENIED_PROOF_IDENTIFIER)
    answer = await static(gateway, DENIED)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"qr": DENIED_QR, "proofIdentifier": DENIED_PROOF_IDENTIFIER}
    assert orjson.loads(route.calls.last.request.content) == {"credentialAttributes": DENIED}


@pytest.mark.usefixtures("in_2021")
async def test_tampered_static_qr_is_withheld(gateway, signers):
    """A QR whose disclosed attribute was changed is refused 502 and not released."""
    fields = proof_fields(DENIED_QR)
    tampered = make_qr(replace(fields, a_disclosed=(*fields.a_disclosed[:-1], 5)))
    static_answer(signers, tampered, DENIED_PROOF_IDENTIFIER)
    answer = await static(gateway, {**DENIED, "birthMonth": "2"})
    body = assert_problem(answer, 502, "credential-verification-failed")
    assert tampered not in answer.text
    assert body["part"] == "domestic"


@pytest.mark.usefixtures("in_2021")
async def test_real_static_qr_for_other_attributes_is_withheld(gateway, signers):
    """A valid QR over attributes other than those asked for is refused 502."""
    static_answer(signers, DENIED_QR, DENIED_PROOF_IDENTIFIER)
    answer = await static(gateway, {**DENIED, "firstNameInitial": "G"})
    assert_problem(answer, 502, "credential-verification-failed")


def idemix_issuing(request: httpx.Request, *, tamper: bool = False) -> httpx.Response:
    """Sign each attribute set asked for over the app's U's, as the Idemix server does."""
    body = json.loads(request.content)
    proofs = body["issueCommitmentMessage"]["combinedProofs"]
    nonce2 = int.from_bytes(base64.b64decode(body["issueCommitmentMessage"]["n_2"]), "big")
    items = []
    for proof, attributes in zip(proofs, body["credentialsAttributes"], strict=True):
        values = credential_attribute_values(
            attributes,
            issuer_pk_id=body["prepareIssueMessage"]["issuerPkId"],
            credential_version=3 if "category" in attributes else 2,
        )
        u = int.from_bytes(base64.b64decode(proof["U"]), "big")
        signed = (*values[:-1], b"5") if tamper else values
        items.append(
            {
                "issueSignatureMessage": sign(Holder(0, 0, u, nonce2), signed),
                "attributes": [base64.b64encode(v).decode() for v in values],
            }
        )
    return httpx.Response(200, json=items)


async def issue(
    gateway: httpx.AsyncClient, signers: respx.MockRouter, *, tamper: bool = False
) -> tuple[httpx.Response, list[dict[str, str]]]:
    """Prepare a session at the mocked Idemix signer and issue two credentials in it."""
    signers.post(f"{DOMESTIC_SIGNER_URL}/prepare_issue").respond(
        200,
        json={"issuerPkId": "VWS-TEST-0", "issuerNonce": ISSUER_NONCE, "credentialAmount": 28},
    )
    signers.post(f"{DOMESTIC_SIGNER_URL}/issue").mock(
        side_effect=lambda request: idemix_issuing(request, tamper=tamper)
    )
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    holders = make_holders(2)
    attributes = [domestic_attributes(isPaperProof="0"), domestic_attributes(category="1")]
    answer = await gateway.post(
        "/v1/domestic/issue",
        json={
            "stoken": prepared.json()["stoken"],
            "issueCommitmentMessage": base64.b64encode(
                orjson.dumps(
                    commitment_message(holders, issuer_nonce({"issuerNonce": ISSUER_NONCE}))
                )
            ).decode(),
            "credentialsAttributes": attributes,
        },
    )
    return answer, attributes


async def test_issued_idemix_signatures_are_verified_and_released(gateway, signers):
    """Each CL signature over the app's commitment and the attributes asked is released."""
    answer, attributes = await issue(gateway, signers)
    assert answer.status_code == 200, answer.text
    items = decode_b64_json(answer.json()["createCredentialMessages"])
    assert len(items) == len(attributes)
    assert items[1]["attributes"][-1] == base64.b64encode(b"1").decode()  # the category
    assert set(items[0]) == {"issueSignatureMessage", "attributes"}


async def test_idemix_signature_over_other_attributes_is_withheld(gateway, signers):
    """A signature over other attribute values than those listed and asked is refused 502."""
    answer, _ = await issue(gateway, signers, tamper=True)
    assert_problem(answer, 502, "credential-verification-failed")


def check_workers() -> list[psutil.Process]:
    """The idemix check workers: the forkserver's children, grandchildren of this process."""
    me = os.getpid()
    return [p for p in psutil.Process().children(recursive=True) if p.ppid() != me]


@pytest.mark.usefixtures("in_2021")
async def test_killed_check_worker_answers_503_then_is_replaced(gateway, signers):
    """A dead worker's check is answered 503 problem+json; new workers then verify again."""
    static_answer(signers, DENIED_QR, DENIED_PROOF_IDENTIFIER)
    (worker,) = check_workers()
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    answer = await static(gateway, DENIED)
    body = assert_problem(answer, 503, "verification-unavailable")
    assert answer.headers["retry-after"] == "1"
    assert body["part"] == "domestic"
    ready = await until_answered(
        lambda: gateway.get("/readyz"),
        lambda r: (
            r.json()["idemixChecks"]["replacements"] == 1
            and r.json()["dependencies"]["idemix-checks"]["status"] == "up"
        ),
        limit=30,
    )
    assert ready.json()["idemixChecks"]["up"] is True
    assert (await static(gateway, DENIED)).status_code == 200
