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
from typing import Any

import httpx
import orjson
import psutil
import pytest
import respx

from signing_gateway.issuance import domestic as domestic_issuance
from signing_gateway.security.settings import AuditSettings
from signing_gateway.settings import DomesticPolicySettings, IdemixSettings, Settings
from signing_gateway.verification.idemix import credential_attribute_values
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_vaccination
from tests.api.observability.scrape import scrape
from tests.api.signer_mocks import decode_b64_json, eu_signing
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    running_gateway,
)
from tests.support.idemix_issuer import (
    TEST_KEY_FILE,
    Holder,
    commitment_message,
    issuer_nonce,
    make_holders,
    sign,
)
from tests.support.idemix_tampering import (
    PAST_THE_BOUND,
    TAMPERS,
    Tamper,
    tamper_each,
    two_secrets,
)
from tests.support.polling import until_answered
from tests.unit.verification.idemix_qr_support import make_qr, proof_fields
from tests.unit.verification.idemix_testdata import DENIED, DENIED_PROOF_IDENTIFIER, DENIED_QR

ISSUER_NONCE = base64.b64encode(b"0123456789abcdef").decode()


def idemix_settings(
    keys: SignerKeys, key_ids: tuple[str, ...] = ("VWS-TEST-0",), **overrides: Any
) -> Settings:
    """The gateway in idemix mode with the test issuer key (under `key_ids`); one check worker."""
    return make_settings(
        keys,
        **overrides,
        domestic_scheme="idemix",
        idemix=IdemixSettings(keys=dict.fromkeys(key_ids, TEST_KEY_FILE), check_workers=1),
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


#: The issuer nonce of another session, which an app's proofs may be made for.
OTHER_NONCE = 7


def valid(holders: list[Holder], nonce1: int, _other: int) -> dict[str, Any]:
    """The app's commitment as a correct app makes it, for the session's issuer nonce."""
    return commitment_message(holders, nonce1)


def mock_session(
    signers: respx.MockRouter, *, tamper: bool = False, issuer_pk_id: str = "VWS-TEST-0"
) -> respx.Route:
    """The mocked Idemix signer's /prepare_issue and /issue; returns the /issue route."""
    signers.post(f"{DOMESTIC_SIGNER_URL}/prepare_issue").respond(
        200,
        json={"issuerPkId": issuer_pk_id, "issuerNonce": ISSUER_NONCE, "credentialAmount": 28},
    )
    return signers.post(f"{DOMESTIC_SIGNER_URL}/issue").mock(
        side_effect=lambda request: idemix_issuing(request, tamper=tamper)
    )


async def open_session(gateway: httpx.AsyncClient) -> str:
    """A prepare-issue session's stoken."""
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    return str(prepared.json()["stoken"])


def app_commitment(holders: list[Holder], commit: Tamper = valid) -> str:
    """The base64 issueCommitmentMessage `commit` makes for the mocked session's nonce."""
    document = commit(holders, issuer_nonce({"issuerNonce": ISSUER_NONCE}), OTHER_NONCE)
    return base64.b64encode(orjson.dumps(document)).decode()


#: Two credentials, the second with a category (credential version 3).
ASKED = [domestic_attributes(isPaperProof="0"), domestic_attributes(category="1")]


async def post_issue(
    gateway: httpx.AsyncClient, stoken: str, commit: Tamper = valid
) -> httpx.Response:
    """POST /v1/domestic/issue of ASKED in the session `stoken`, the app committing by `commit`."""
    return await gateway.post(
        "/v1/domestic/issue",
        json={
            "stoken": stoken,
            "issueCommitmentMessage": app_commitment(make_holders(2), commit),
            "credentialsAttributes": ASKED,
        },
    )


async def issue(
    gateway: httpx.AsyncClient,
    signers: respx.MockRouter,
    *,
    tamper: bool = False,
    issuer_pk_id: str = "VWS-TEST-0",
) -> tuple[httpx.Response, list[dict[str, str]]]:
    """Prepare a session at the mocked Idemix signer and issue two credentials in it."""
    mock_session(signers, tamper=tamper, issuer_pk_id=issuer_pk_id)
    return await post_issue(gateway, await open_session(gateway)), ASKED


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


async def test_credentials_are_checked_under_the_sessions_key_id(test_keys, signers):
    """A session the signer opened under another configured key id verifies under that one."""
    settings = idemix_settings(test_keys, key_ids=("VWS-TEST-0", "testPk"))
    async with running_gateway(settings) as gateway:
        answer, _ = await issue(gateway, signers, issuer_pk_id="testPk")
    assert answer.status_code == 200, answer.text
    items = decode_b64_json(answer.json()["createCredentialMessages"])
    metadata = base64.b64decode(items[0]["attributes"][0])
    assert metadata.endswith(b"testPk")


async def test_session_under_a_key_id_not_configured_is_withheld(gateway, signers, caplog):
    """Credentials of a session opened under a key id the gateway has no key for are refused."""
    answer, _ = await issue(gateway, signers, issuer_pk_id="VWS-PROD-9")
    assert_problem(answer, 502, "credential-verification-failed")
    reasons = [getattr(r, "reason", None) for r in caplog.records]
    assert "unknown-kid" in reasons


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


@pytest.mark.parametrize("commit", TAMPERS)
async def test_failing_proof_of_u_is_refused_422_before_the_signer(gateway, signers, commit):
    """A proof of U that fails for the session: 422, no /issue call; the session stays usable."""
    issue_route = mock_session(signers)
    stoken = await open_session(gateway)
    holders = make_holders(2)
    body = {"stoken": stoken, "credentialsAttributes": ASKED}
    refused = await gateway.post(
        "/v1/domestic/issue",
        json={**body, "issueCommitmentMessage": app_commitment(holders, commit)},
    )
    problem = assert_problem(refused, 422, "commitment-proof-failed")
    assert [error["loc"][:2] for error in problem["errors"]] == [
        ["issueCommitmentMessage", "combinedProofs"]
    ]
    assert "retry with the same stoken" in problem["detail"]
    assert issue_route.call_count == 0
    assert (await scrape(gateway)).value("gateway_commitment_proof_refusals_total") == 1
    retried = await gateway.post(
        "/v1/domestic/issue", json={**body, "issueCommitmentMessage": app_commitment(holders)}
    )
    assert retried.status_code == 200, retried.text
    assert issue_route.call_count == 1


async def proof_counts(gateway: httpx.AsyncClient) -> tuple[float, float]:
    """The commitments checked to a verdict and those refused, as the gateway exposes them."""
    metrics = await scrape(gateway)
    return (
        metrics.value("gateway_commitment_proofs_checked_total"),
        metrics.value("gateway_commitment_proof_refusals_total"),
    )


async def test_each_proof_check_counts_once_and_only_a_refusal_as_refused(
    gateway, signers, test_keys
):
    """A passing and a failing proof of U each count as checked; only the failing one refused.

    An EU-only /v1/credentials request carries no commitment and counts as neither.
    """
    mock_session(signers)
    signers.post(f"{EU_SIGNER_URL}/get_credential").mock(side_effect=eu_signing(test_keys))
    eu_only = await gateway.post("/v1/credentials", json={"european": [eu_vaccination()]})
    assert eu_only.status_code == 200, eu_only.text
    assert await proof_counts(gateway) == (0, 0)
    passed = await post_issue(gateway, await open_session(gateway))
    assert passed.status_code == 200, passed.text
    assert await proof_counts(gateway) == (1, 0)
    refused = await post_issue(gateway, await open_session(gateway), tamper_each("c"))
    assert_problem(refused, 422, "commitment-proof-failed")
    assert await proof_counts(gateway) == (2, 1)


@pytest.mark.parametrize(
    ("commit", "loc", "msg"),
    [
        (
            tamper_each("c"),
            ["combinedProofs"],
            "the proofs of U do not verify for the session's issuer nonce",
        ),
        (
            tamper_each("v_prime_response", PAST_THE_BOUND),
            ["combinedProofs", 0, "v_prime_response"],
            "is out of range",
        ),
        (
            two_secrets,
            ["combinedProofs", 1, "s_response"],
            "differs from the first proof's (one secret)",
        ),
    ],
    ids=["the-list", "v-prime-response-past-its-bound", "two-secrets"],
)
async def test_failing_proof_of_u_names_where_it_fails(gateway, signers, commit, loc, msg):
    """The 422 says which proof fails and why, or that the list as a whole does."""
    mock_session(signers)
    refused = await post_issue(gateway, await open_session(gateway), commit)
    problem = assert_problem(refused, 422, "commitment-proof-failed")
    assert problem["errors"] == [{"loc": ["issueCommitmentMessage", *loc], "msg": msg}]
    assert problem["detail"].startswith(f"issueCommitmentMessage.{'.'.join(map(str, loc))}: {msg}")


async def test_failing_proof_of_u_in_credentials_reaches_no_signer(gateway, signers, test_keys):
    """/v1/credentials: a failing proof of U is a 422 before any signer, EU ones too."""
    issue_route = mock_session(signers)
    eu_route = signers.post(f"{EU_SIGNER_URL}/get_credential").mock(
        side_effect=eu_signing(test_keys)
    )
    holders = make_holders(2)
    body = {
        "stoken": await open_session(gateway),
        "domestic": ASKED,
        "european": [eu_vaccination()],
    }
    refused = await gateway.post(
        "/v1/credentials",
        json={**body, "issueCommitmentMessage": app_commitment(holders, tamper_each("c"))},
    )
    assert_problem(refused, 422, "commitment-proof-failed")
    assert (issue_route.call_count, eu_route.call_count) == (0, 0)
    issued = await gateway.post(
        "/v1/credentials", json={**body, "issueCommitmentMessage": app_commitment(holders)}
    )
    assert issued.status_code == 200, issued.text
    assert (issue_route.call_count, eu_route.call_count) == (1, 1)


async def test_session_naming_an_unconfigured_key_reaches_no_issue(gateway, signers):
    """A session whose issuerPkId names no configured key: 502 before /issue spends its nonce."""
    issue_route = mock_session(signers, issuer_pk_id="VWS-OTHER-1")
    answer = await post_issue(gateway, await open_session(gateway))
    problem = assert_problem(answer, 502, "credential-verification-failed")
    assert "nothing was signed" in problem["detail"]
    assert issue_route.call_count == 0


async def test_failing_proof_of_u_is_audited_as_refused(test_keys, signers, tmp_path):
    """The audit record of a failing proof says `refused`, as that of a 422 does."""
    audit_file = tmp_path / "audit.jsonl"
    mock_session(signers)
    settings = idemix_settings(test_keys, audit=AuditSettings(file=audit_file))
    async with running_gateway(settings) as gateway:
        refused = await post_issue(gateway, await open_session(gateway), tamper_each("c"))
    assert_problem(refused, 422, "commitment-proof-failed")
    records = [orjson.loads(line) for line in audit_file.read_bytes().splitlines()]
    assert [(r["endpoint"], r["outcome"], r["status"], r["problemType"]) for r in records] == [
        ("/v1/domestic/prepare-issue", "issued", 200, None),
        ("/v1/domestic/issue", "refused", 422, refused.json()["type"]),
    ]


async def test_proofs_of_u_are_checked_in_the_workers(gateway, signers):
    """With the check worker killed, the proofs cannot be checked: 503, and no /issue call."""
    issue_route = mock_session(signers)
    stoken = await open_session(gateway)
    (worker,) = check_workers()
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    answer = await post_issue(gateway, stoken)
    assert_problem(answer, 503, "verification-unavailable")
    assert issue_route.call_count == 0
    # No verdict on the proofs: neither checked nor refused.
    assert await proof_counts(gateway) == (0, 0)
