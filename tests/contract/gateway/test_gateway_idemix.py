"""The idemix scheme end to end: a real gateway process in front of the fake's Idemix signer.

The fake runs `--domestic-scheme idemix` (CL signatures and NL2 QRs with the test key
VWS-TEST-0), the gateway `SIGNING_GATEWAY_DOMESTIC_SCHEME=idemix` with that key's public XML.
What the gateway releases is verified again here with the Idemix verifiers, against the
commitments the test built as the app does (``U = S^v' * R_0^secret``, one per credential).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from signing_gateway.verification.idemix import credential_attribute_values, verify_static_qr
from signing_gateway.verification.idemix_issuance import verify_issue_signature
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes as attributes
from tests.contract.gateway.conftest import DEFAULT_CONTROL, set_control
from tests.contract.gateway.gateway_process import (
    GatewayProcess,
    gateway_env,
    running_gateway_process,
)
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.idemix_issuer import (
    TEST_KEY,
    TEST_KEY_FILE,
    Holder,
    commitment_message,
    issuer_nonce,
    make_holders,
)
from tests.support.idemix_tampering import TAMPERS

KEYS = {"VWS-TEST-0": TEST_KEY}
#: Each call's bound: an /issue of two credentials costs the fake and the gateway a few
#: hundred milliseconds of CPU each, on a machine shared with other work.
CALL_SECONDS = 20.0


@pytest.fixture(scope="module")
def idemix_gateway(
    eu_signer: FakeSignerProcess, idemix_signer: FakeSignerProcess
) -> Iterator[GatewayProcess]:
    """A gateway process in the idemix scheme with the test key, in front of the fakes."""
    env = gateway_env(
        eu_signer.base_url,
        idemix_signer.base_url,
        SIGNING_GATEWAY_DOMESTIC_SCHEME="idemix",
        SIGNING_GATEWAY_IDEMIX__KEYS=json.dumps({"VWS-TEST-0": str(TEST_KEY_FILE)}),
        SIGNING_GATEWAY_IDEMIX__CHECK_WORKERS="1",
    )
    with running_gateway_process(env) as gateway:
        yield gateway


@pytest.fixture
def gateway(
    idemix_gateway: GatewayProcess, idemix_signer: FakeSignerProcess
) -> Iterator[httpx.Client]:
    """A client of the idemix gateway, the fake at its default behaviour before and after."""
    set_control(idemix_signer, **DEFAULT_CONTROL)
    with httpx.Client(base_url=idemix_gateway.base_url, timeout=CALL_SECONDS) as client:
        yield client
    set_control(idemix_signer, **DEFAULT_CONTROL)


def static(gateway: httpx.Client, asked: dict[str, str]) -> httpx.Response:
    """POST /v1/domestic/static for `asked`."""
    return gateway.post("/v1/domestic/static", json={"credentialAttributes": asked})


#: How the app commits: its holders and the issuer nonce of the session → the commitment.
Commit = Callable[[list[Holder], int], dict[str, Any]]


def prepare(gateway: httpx.Client) -> tuple[str, int]:
    """A prepare-issue session: its stoken and the issuer nonce the app reads from it."""
    prepared = gateway.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    body = prepared.json()
    message = orjson.loads(base64.b64decode(body["prepareIssueMessage"]))
    return body["stoken"], issuer_nonce(message)


def issue(
    gateway: httpx.Client, asked: list[dict[str, str]], commit: Commit = commitment_message
) -> tuple[httpx.Response, list[Holder]]:
    """A prepare-issue and issue session for `asked`, one holder commitment per credential."""
    stoken, nonce1 = prepare(gateway)
    holders = make_holders(len(asked))
    commitment = orjson.dumps(commit(holders, nonce1))
    answer = gateway.post(
        "/v1/domestic/issue",
        json={
            "stoken": stoken,
            "issueCommitmentMessage": base64.b64encode(commitment).decode(),
            "credentialsAttributes": asked,
        },
    )
    return answer, holders


def asked_values(asked: dict[str, str]) -> tuple[bytes, ...]:
    """The attribute bytes of a credential under VWS-TEST-0: version 3 with a category."""
    version = 3 if "category" in asked else 2
    return credential_attribute_values(asked, issuer_pk_id="VWS-TEST-0", credential_version=version)


def test_static_qr_is_released_and_verifies(gateway):
    """/v1/domestic/static answers the fake's NL2 QR, which discloses exactly what was asked."""
    asked = attributes(category="3")
    answer = static(gateway, asked)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"qr", "proofIdentifier"}
    verified = verify_static_qr(body["qr"], KEYS)
    assert verified.attributes == asked
    assert verified.disclosure_time == 0
    assert base64.b64decode(body["proofIdentifier"]) == verified.proof_identifier


def test_issued_credentials_verify_against_each_apps_commitment(gateway):
    """/v1/domestic/issue releases one CL signature per set, each over its own U."""
    asked = [attributes(isPaperProof="0"), attributes(isPaperProof="0", category="1")]
    answer, holders = issue(gateway, asked)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"createCredentialMessages"}
    items: list[dict[str, Any]] = orjson.loads(
        base64.b64decode(answer.json()["createCredentialMessages"])
    )
    assert len(items) == len(asked)
    for item, wanted, holder in zip(items, asked, holders, strict=True):
        values = asked_values(wanted)
        assert item["attributes"] == [base64.b64encode(value).decode() for value in values]
        verify_issue_signature(
            item["issueSignatureMessage"],
            key=TEST_KEY,
            commitment=holder.commitment,
            nonce2=holder.nonce2,
            attributes=values,
        )


@pytest.mark.parametrize("fault", ["bad-signature", "wrong-kid"])
def test_signer_faults_are_withheld_on_both_routes(gateway, idemix_signer, fault):
    """A flipped signature or a credential naming an unpublished key: 502, nothing released."""
    set_control(idemix_signer, fault=fault, faultCount=-1)
    refused = static(gateway, attributes())
    body = assert_problem(refused, 502, "credential-verification-failed")
    assert body["part"] == "domestic"
    assert "NL2:" not in refused.text
    answer, _ = issue(gateway, [attributes(isPaperProof="0")])
    body = assert_problem(answer, 502, "credential-verification-failed")
    assert body["part"] == "domestic"
    assert "issueSignatureMessage" not in answer.text


def issue_calls(signer: FakeSignerProcess) -> int:
    """The /issue requests the fake received, whatever their outcome (its /_stats)."""
    totals = signer.stats()["totals"]
    return sum(totals.get("issue", {}).values())


@pytest.mark.parametrize("tamper", TAMPERS)
def test_commitment_whose_proof_fails_is_refused_422_and_reaches_no_signer(
    gateway, idemix_signer, tamper
):
    """A proof of U failing for the session: the gateway's 422, no /issue; the session lives on."""
    stoken, nonce1 = prepare(gateway)
    _, other = prepare(gateway)
    asked = [attributes(isPaperProof="0"), attributes(isPaperProof="0", category="1")]
    holders = make_holders(len(asked))
    before = issue_calls(idemix_signer)

    def send(document: dict[str, Any]) -> httpx.Response:
        return gateway.post(
            "/v1/domestic/issue",
            json={
                "stoken": stoken,
                "issueCommitmentMessage": base64.b64encode(orjson.dumps(document)).decode(),
                "credentialsAttributes": asked,
            },
        )

    refused = send(tamper(holders, nonce1, other))
    body = assert_problem(refused, 422, "commitment-proof-failed")
    assert body["errors"][0]["loc"][:2] == ["issueCommitmentMessage", "combinedProofs"]
    assert issue_calls(idemix_signer) == before
    issued = send(commitment_message(holders, nonce1))
    assert issued.status_code == 200, issued.text
    assert issue_calls(idemix_signer) == before + 1
