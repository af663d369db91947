"""Every endpoint end to end: real gateway process, real fake signers, independent verification."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

from signing_gateway.api import examples
from tests.contract.gateway.conftest import set_control
from tests.contract.gateway.independent_verify import (
    b64d,
    dsc_kid,
    verify_hc1,
    verify_issue_item,
    verify_static_qr,
)
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.recovery import recovery_entry


def _attributes(**changes: str) -> dict[str, str]:
    return {**examples.DOMESTIC_ATTRIBUTES, "validFrom": str(int(time.time())), **changes}


# An explicit expiry a few weeks ahead, written at +01:00; the answer gives it in UTC.
_IN_40_DAYS = datetime.now(UTC) + timedelta(days=40)
_EXPIRY_UTC = _IN_40_DAYS.replace(hour=2, minute=4, second=5, microsecond=0)
_EXPIRY_CET = _EXPIRY_UTC.astimezone(timezone(timedelta(hours=1))).isoformat()


def _recovery() -> dict[str, Any]:
    dcc = {k: v for k, v in examples.EU_VACCINATION["dcc"].items() if k != "v"}
    dcc["r"] = [recovery_entry()]
    return {"dcc": dcc}


@pytest.fixture(scope="module")
def fake_keys(eu_signer: FakeSignerProcess, domestic_signer: FakeSignerProcess) -> dict[str, Any]:
    """The keys the fakes publish, fetched from them directly (not through the gateway)."""
    eu = httpx.get(f"{eu_signer.base_url}/keys", timeout=5).json()
    domestic = httpx.get(f"{domestic_signer.base_url}/keys", timeout=5).json()
    return {"eu": eu["eu"], "domestic": domestic["domestic"]}


def _dsc(fake_keys: dict[str, Any], usage: str) -> bytes:
    (entry,) = [k for k in fake_keys["eu"] if usage in k["keyUsage"]]
    return b64d(entry["certificate"])


def _domestic_key(fake_keys: dict[str, Any]) -> bytes:
    (entry,) = fake_keys["domestic"]
    return b64d(entry["publicKey"])


def _check_eu(credential: dict[str, Any], request: dict[str, Any], fake_keys) -> None:
    """Verify an EuCredential answer against the fake's DSC and the request sent."""
    usage = credential["keyUsage"]
    der = _dsc(fake_keys, usage)
    decoded = verify_hc1(credential["credential"], der)
    assert decoded.alg == -7
    assert decoded.kid == dsc_kid(der)
    assert b64d(credential["kid"]) == decoded.kid
    assert decoded.dcc == request["dcc"]
    expiry = datetime.fromisoformat(credential["expirationTime"])
    assert expiry.tzinfo == UTC
    assert decoded.claims[4] == int(expiry.timestamp())
    assert decoded.claims[1] == "NL"
    assert decoded.claims[6] <= time.time() + 5


@pytest.mark.parametrize(
    ("request_body", "usage"),
    [
        (examples.EU_VACCINATION, "vaccination"),
        (examples.EU_TEST, "test"),
        ({**examples.EU_VACCINATION, "expirationTime": _EXPIRY_CET}, "vaccination"),
        (_recovery(), "recovery"),
    ],
    ids=["v", "t", "v-explicit-expiry", "r-defaults"],
)
def test_dcc_verifies_independently(gateway_url, fake_keys, request_body, usage):
    """/v1/dcc returns an HC1 that pycose verifies with the fake's DSC, carrying the exact DCC."""
    response = httpx.post(f"{gateway_url}/v1/dcc", json=request_body, timeout=10)
    assert response.status_code == 200, response.text
    credential = response.json()
    assert credential["keyUsage"] == usage
    _check_eu(credential, request_body, fake_keys)
    if "expirationTime" in request_body:
        assert credential["expirationTime"] == _EXPIRY_UTC.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_dcc_with_optional_members_left_out_is_released(gateway_url, fake_keys):
    """A DCC without given name or testing centre is released as the hcert issuer signs it.

    The fake, like the real issuance server, signs an optional member that was left out as ""
    (and a test's empty nm not at all): the credential is still the one asked for.
    """
    dcc = orjson.loads(orjson.dumps(examples.EU_TEST["dcc"]))
    dcc["nam"] = {"fnt": "DE<VRIES"}
    del dcc["t"][0]["tc"]
    dcc["t"][0]["nm"] = ""
    request_body = {"dcc": dcc}
    response = httpx.post(f"{gateway_url}/v1/dcc", json=request_body, timeout=10)
    assert response.status_code == 200, response.text
    credential = response.json()
    signed = verify_hc1(credential["credential"], _dsc(fake_keys, "test")).dcc
    assert signed["nam"] == {"fn": "", "fnt": "DE<VRIES", "gn": "", "gnt": ""}
    entry = {k: v for k, v in dcc["t"][0].items() if k != "nm"}
    assert signed["t"] == [{**entry, "tc": ""}]
    assert {k: v for k, v in signed.items() if k not in {"nam", "t"}} == {
        k: v for k, v in dcc.items() if k not in {"nam", "t"}
    }


def test_domestic_static_verifies_independently(gateway_url, fake_keys):
    """/v1/domestic/static returns an NL2 QR whose Ed25519 signature covers the attributes sent."""
    attrs = _attributes(category="1")
    response = httpx.post(
        f"{gateway_url}/v1/domestic/static", json={"credentialAttributes": attrs}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert verify_static_qr(response.json()["qr"], _domestic_key(fake_keys)) == attrs


def _open_session(gateway_url: str) -> tuple[str, str]:
    response = httpx.post(f"{gateway_url}/v1/domestic/prepare-issue", timeout=10)
    assert response.status_code == 200, response.text
    out = response.json()
    prepare = orjson.loads(b64d(out["prepareIssueMessage"]))
    return out["stoken"], prepare["issuerNonce"]


def _commitment(nonce: str) -> str:
    # The app's commitment references the signer's nonce; its other members pass through.
    return base64.b64encode(orjson.dumps({"issuerNonce": nonce, "proof": "app"})).decode()


def test_domestic_session_flow(gateway_url, fake_keys):
    """prepare-issue, then issue with a commitment on the nonce, gives verifiable signatures."""
    stoken, nonce = _open_session(gateway_url)
    attrs = [_attributes(isPaperProof="0"), _attributes(isPaperProof="0", validForHours="48")]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": _commitment(nonce),
        "credentialsAttributes": attrs,
    }
    response = httpx.post(f"{gateway_url}/v1/domestic/issue", json=body, timeout=10)
    assert response.status_code == 200, response.text
    items = orjson.loads(b64d(response.json()["createCredentialMessages"]))
    assert [item["attributes"] for item in items] == attrs
    for item in items:
        verify_issue_item(item, nonce, _domestic_key(fake_keys))
    again = httpx.post(f"{gateway_url}/v1/domestic/issue", json=body, timeout=10)
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json"


def test_print_both(gateway_url, fake_keys):
    """/v1/print signs both parts; each verifies independently."""
    attrs = _attributes()
    body = {"domestic": attrs, "european": examples.EU_TEST}
    response = httpx.post(f"{gateway_url}/v1/print", json=body, timeout=10)
    assert response.status_code == 200, response.text
    out = response.json()
    assert verify_static_qr(out["domestic"]["qr"], _domestic_key(fake_keys)) == attrs
    _check_eu(out["european"], examples.EU_TEST, fake_keys)


def test_credentials(gateway_url, fake_keys):
    """/v1/credentials returns a domestic greencard and several EU credentials, all verifiable."""
    stoken, nonce = _open_session(gateway_url)
    european = [examples.EU_VACCINATION, examples.EU_TEST, _recovery()]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": _commitment(nonce),
        "domestic": [_attributes(isPaperProof="0")],
        "european": european,
    }
    response = httpx.post(f"{gateway_url}/v1/credentials", json=body, timeout=10)
    assert response.status_code == 200, response.text
    out = response.json()
    (item,) = orjson.loads(b64d(out["domesticGreencard"]["createCredentialMessages"]))
    verify_issue_item(item, nonce, _domestic_key(fake_keys))
    assert [c["keyUsage"] for c in out["euGreencards"]] == ["vaccination", "test", "recovery"]
    for credential, request_body in zip(out["euGreencards"], european, strict=True):
        _check_eu(credential, request_body, fake_keys)


def test_keys_match_the_signers(gateway_url, fake_keys):
    """/v1/keys publishes exactly the DSCs and domestic key the signers use."""
    out = httpx.get(f"{gateway_url}/v1/keys", timeout=10).json()
    assert sorted(k["certificate"] for k in out["eu"]) == sorted(
        k["certificate"] for k in fake_keys["eu"]
    )
    assert [k["publicKey"] for k in out["domestic"]] == [
        k["publicKey"] for k in fake_keys["domestic"]
    ]


def test_health_and_readiness(gateway_url):
    """/healthz and /readyz answer 200 with both real signers up."""
    assert httpx.get(f"{gateway_url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{gateway_url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert {d["status"] for d in ready.json()["dependencies"].values()} == {"up"}


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("status=500", 502),
        ("status=429;retry-after=4", 503),
        ("malformed", 502),
        ("bad-signature", 502),
        ("wrong-kid", 502),
        ("reset", 502),
    ],
)
def test_signer_faults_end_to_end(gateway_url, fakes, fault, status):
    """Real signer faults map to the documented status, as problem+json without signer detail."""
    eu_signer, _ = fakes
    set_control(eu_signer, fault=fault, faultCount=-1)
    response = httpx.post(f"{gateway_url}/v1/dcc", json=examples.EU_VACCINATION, timeout=10)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert eu_signer.base_url not in response.text
    assert "HC1:" not in response.text
    if status == 503:
        assert response.headers["retry-after"] == "4"


def test_demo_smoke_exits_zero():
    """`signing-gateway demo --smoke --port 0` starts fakes and gateway, gets 200s, exits 0.

    Its gateway is shut down before the demo ends, not cut off with the process.
    """
    result = subprocess.run(
        [sys.executable, "-m", "signing_gateway", "demo", "--smoke", "--port", "0"],
        capture_output=True,
        timeout=90,
        check=False,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "POST /v1/dcc -> 200" in output
    assert "Application shutdown complete." in output
