"""The EU signer's DSC per key usage: only one valid now allows issuance, and /readyz shows it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from signing_gateway.issuance.session import SESSION_EXPIRES_FIRST, SESSION_KEPT
from signing_gateway.settings import SignerSettings
from tests.api.assertions import assert_problem, error_locs
from tests.api.bodies import domestic_attributes, eu_recovery, eu_test, eu_vaccination
from tests.api.observability.scrape import scrape
from tests.api.readiness import readyz_when_probed
from tests.api.signer_mocks import MockedSigners, commitment, mock_signers
from tests.support.credentials import Dsc, b64, make_dsc
from tests.support.gateway import EU_SIGNER_URL, SignerKeys, make_settings, running_gateway

DAY = timedelta(days=1)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def keys_with(directory: Path, keys: SignerKeys, usage: str, *dscs: Dsc) -> SignerKeys:
    """`keys` with `dscs` as the `usage` DSC files instead; the first is the one that signs."""
    files = [path for path in keys.files if usage not in path.name]
    for i, dsc in enumerate(dscs):
        path = directory / f"replaced-{usage}-{i}.pem"
        path.write_bytes(dsc.pem)
        files.append(path)
    return SignerKeys({**keys.dscs, usage: dscs[0]}, keys.domestic, files, keys.domestic_files)


def keys_with_vaccination(directory: Path, keys: SignerKeys, *dscs: Dsc) -> SignerKeys:
    """`keys` with `dscs` as the vaccination DSC files instead; the first is the one that signs."""
    return keys_with(directory, keys, "vaccination", *dscs)


@pytest.mark.parametrize(
    "window",
    [(-800 * DAY, -timedelta(hours=1), "has expired"), (DAY, 700 * DAY, "is not yet valid")],
    ids=["expired", "not-yet-valid"],
)
@pytest.mark.parametrize("expiration", [None, 30 * DAY], ids=["default-expiry", "given-expiry"])
async def test_no_valid_dsc_is_503_and_reaches_no_signer(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, window, expiration
):
    """A usage whose DSC is expired or not yet valid gets 503 signer-unavailable, not a 422."""
    starts, ends, state = window
    now = datetime.now(UTC)
    dsc = make_dsc(["vaccination"], not_before=now + starts, not_after=now + ends)
    keys = keys_with_vaccination(tmp_path, test_keys, dsc)
    mocked = mock_signers(signers, keys)
    body = eu_vaccination()
    body.pop("expirationTime", None)
    if expiration is not None:
        body["expirationTime"] = _rfc3339(now + expiration)
    async with running_gateway(make_settings(keys)) as gateway:
        response = await gateway.post("/v1/dcc", json=body)
        other = await gateway.post("/v1/dcc", json=eu_test())
    problem = assert_problem(response, 503, "signer-unavailable")
    assert problem["detail"] == f"the EU signer's certificate for key usage vaccination {state}"
    assert "errors" not in problem
    assert response.headers["retry-after"] == "300"  # expired, or valid only from tomorrow
    assert mocked.get_credential.call_count == 1  # only the test DCC, whose DSC is valid
    assert other.status_code == 200, other.text


SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("windows", "advised"),
    [
        ([(-800 * DAY, -DAY)], (300, 300)),
        ([(DAY, 700 * DAY)], (300, 300)),
        ([(90 * SECOND, 700 * DAY)], (80, 90)),
        ([(-800 * DAY, -DAY), (120 * SECOND, 700 * DAY), (DAY, 700 * DAY)], (110, 120)),
    ],
    ids=["expired", "valid-tomorrow", "valid-in-90-s", "expired-successor-in-120-s"],
)
async def test_no_valid_dsc_advises_retrying_when_one_can_sign(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, windows, advised
):
    """The 503's Retry-After is the wait for the next DSC to start, capped at 5 minutes.

    With none to start, 5 minutes: only a restart with a new DSC ends it. Before, every such
    503 advised `Retry-After: 1`, and a caller honouring it asked again every second.
    """
    now = datetime.now(UTC)
    dscs = [make_dsc(["vaccination"], not_before=now + a, not_after=now + b) for a, b in windows]
    keys = keys_with_vaccination(tmp_path, test_keys, *dscs)
    mock_signers(signers, keys)
    async with running_gateway(make_settings(keys)) as gateway:
        response = await gateway.post("/v1/dcc", json=eu_vaccination())
    assert_problem(response, 503, "signer-unavailable")
    low, high = advised
    assert low <= int(response.headers["retry-after"]) <= high


async def test_a_key_usage_without_any_dsc_advises_five_minutes(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter
):
    """A key usage with no DSC configured at all: 503 with Retry-After 300, not 1."""
    files = [path for path in test_keys.files if "recovery" not in path.name]
    keys = SignerKeys(test_keys.dscs, test_keys.domestic, files, test_keys.domestic_files)
    mock_signers(signers, keys)
    async with running_gateway(make_settings(keys)) as gateway:
        response = await gateway.post("/v1/dcc", json=eu_recovery())
    problem = assert_problem(response, 503, "signer-unavailable")
    assert problem["detail"] == "no signing certificate is configured for key usage recovery"
    assert response.headers["retry-after"] == "300"


async def _post_with_an_expired_vaccination_dsc(
    tmp_path: Path, test_keys: SignerKeys, signers: respx.MockRouter, path: str, body: Any
) -> tuple[httpx.Response, MockedSigners]:
    """`body` posted to `path` of a gateway whose vaccination DSC has expired; and its signers."""
    now = datetime.now(UTC)
    expired = make_dsc(["vaccination"], not_before=now - 800 * DAY, not_after=now - DAY)
    keys = keys_with_vaccination(tmp_path, test_keys, expired)
    mocked = mock_signers(signers, keys)
    async with running_gateway(make_settings(keys)) as gateway:
        return await gateway.post(path, json=body), mocked


@pytest.mark.parametrize(
    "case",
    [
        ("/v1/dcc", eu_vaccination(), "european"),
        ("/v1/print", {"domestic": None, "european": eu_vaccination()}, "european"),
        ("/v1/credentials", {"european": [eu_test(), eu_vaccination()]}, "european[1]"),
    ],
    ids=["dcc", "print", "credentials"],
)
async def test_expired_dsc_names_the_part_and_reaches_no_signer(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, case
):
    """An EU part whose DSC has expired: 503 naming that part, as signer failures do; no call."""
    path, body, part = case
    response, mocked = await _post_with_an_expired_vaccination_dsc(
        tmp_path, test_keys, signers, path, body
    )
    problem = assert_problem(response, 503, "signer-unavailable")
    assert "has expired" in problem["detail"]
    assert problem["part"] == part
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    "case",
    [
        (
            "/v1/print",
            {"domestic": domestic_attributes(validForHours="99999"), "european": eu_vaccination()},
            [["body", "domestic", "validForHours"]],
        ),
        (
            "/v1/credentials",
            {"european": [eu_vaccination(), eu_test(expirationTime="2001-01-01T00:00:00Z")]},
            [["body", "european", 1, "expirationTime"]],
        ),
        (
            "/v1/credentials",
            {
                "stoken": "0" * 36,
                "issueCommitmentMessage": "not base64!",
                "domestic": [domestic_attributes()],
                "european": [eu_vaccination()],
            },
            [["body", "issueCommitmentMessage"]],
        ),
    ],
    ids=["print-domestic", "credentials-european", "credentials-commitment"],
)
async def test_an_invalid_part_is_422_though_another_has_no_valid_dsc(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, case
):
    """Pin that a part the caller must fix is answered 422, before another part's DSC 503.

    Before, the first EU part without a valid DSC answered 503 with a `Retry-After` of up to
    five minutes, and the retry it advised met the 422 the caller could have had at once.
    """
    path, body, locs = case
    response, mocked = await _post_with_an_expired_vaccination_dsc(
        tmp_path, test_keys, signers, path, body
    )
    problem = assert_problem(response, 422, "validation-failed")
    assert error_locs(problem) == locs
    assert mocked.signing_calls() == 0


async def _with_a_session(
    gateway: httpx.AsyncClient, european: list[dict[str, Any]]
) -> tuple[httpx.Response, dict[str, Any]]:
    """The answer to /v1/credentials with a fresh session's domestic part and `european`."""
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
        "european": european,
    }
    return await gateway.post("/v1/credentials", json=body), body


@pytest.mark.parametrize(
    ("window", "advice"),
    [((-800 * DAY, -DAY), SESSION_EXPIRES_FIRST), ((10 * SECOND, 700 * DAY), SESSION_KEPT)],
    ids=["expired", "valid-in-10-s"],
)
async def test_credentials_without_a_valid_dsc_say_what_becomes_of_the_session(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, window, advice
):
    """Pin that the 503 of an EU part without a DSC says whether the stoken can wait for it.

    The session is not used, and a domestic-only retry issues with it. Before, the 503 said
    nothing of the session, and a caller waiting out its Retry-After (five minutes for an
    expired DSC) with the stoken then met a 401: the session lives 60 s.
    """
    now = datetime.now(UTC)
    starts, ends = window
    dsc = make_dsc(["vaccination"], not_before=now + starts, not_after=now + ends)
    keys = keys_with_vaccination(tmp_path, test_keys, dsc)
    mocked = mock_signers(signers, keys)
    async with running_gateway(make_settings(keys)) as gateway:
        response, body = await _with_a_session(gateway, [eu_vaccination()])
        retry = await gateway.post("/v1/credentials", json={**body, "european": []})
    problem = assert_problem(response, 503, "signer-unavailable")
    assert (problem["part"], problem["detail"].endswith(advice)) == ("european[0]", True)
    assert retry.status_code == 200, retry.text
    assert (mocked.issue.call_count, mocked.get_credential.call_count) == (1, 0)


@pytest.fixture
def rotating(tmp_path, test_keys: SignerKeys) -> SignerKeys:
    """Keys whose vaccination DSC ends in 10 days, with a successor that starts tomorrow."""
    now = datetime.now(UTC)
    current = make_dsc(["vaccination"], not_before=now - 300 * DAY, not_after=now + 10 * DAY)
    successor = make_dsc(["vaccination"], not_before=now + DAY, not_after=now + 700 * DAY)
    return keys_with_vaccination(tmp_path, test_keys, current, successor)


async def test_not_yet_valid_successor_does_not_bound_the_expiry(
    rotating: SignerKeys, signers: respx.MockRouter
):
    """With a successor DSC not valid yet, the current DSC signs and caps the default expiry."""
    mock_signers(signers, rotating)
    body = eu_vaccination()
    body.pop("expirationTime", None)
    async with running_gateway(make_settings(rotating)) as gateway:
        response = await gateway.post("/v1/dcc", json=body)
    assert response.status_code == 200, response.text
    not_after = rotating.dscs["vaccination"].certificate.not_valid_after_utc
    assert response.json()["expirationTime"] == _rfc3339(not_after)


async def test_expiration_after_the_valid_dscs_end_is_still_422(
    rotating: SignerKeys, signers: respx.MockRouter
):
    """A caller's expirationTime past the valid DSC's notAfter is the caller's 422."""
    mocked = mock_signers(signers, rotating)
    body = eu_vaccination(expirationTime=_rfc3339(datetime.now(UTC) + 30 * DAY))
    async with running_gateway(make_settings(rotating)) as gateway:
        response = await gateway.post("/v1/dcc", json=body)
    problem = assert_problem(response, 422, "validation-failed")
    assert error_locs(problem) == [["body", "expirationTime"]]
    not_after = rotating.dscs["vaccination"].certificate.not_valid_after_utc
    assert not_after.isoformat() in problem["errors"][0]["msg"]
    assert mocked.signing_calls() == 0


async def test_readyz_is_degraded_while_one_usage_has_no_valid_dsc(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter
):
    """An expired vaccination DSC leaves /readyz 200 but degraded, naming that usage."""
    now = datetime.now(UTC)
    expired = make_dsc(["vaccination"], not_before=now - 800 * DAY, not_after=now - DAY)
    keys = keys_with_vaccination(tmp_path, test_keys, expired)
    async with running_gateway(make_settings(keys)) as gateway:
        response = await readyz_when_probed(gateway)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["status"] == "degraded"
    certificates = out["euSigningCertificates"]
    assert certificates["vaccination"] == {"status": "expired", "kid": None, "notAfter": None}
    test_dsc = test_keys.dscs["test"]
    assert certificates["test"] == {
        "status": "valid",
        "kid": b64(test_dsc.kid),
        "notAfter": test_dsc.certificate.not_valid_after_utc.isoformat(),
    }


@pytest.mark.parametrize(("required", "status"), [(True, 503), (False, 200)])
async def test_readyz_not_ready_when_no_usage_has_a_valid_dsc(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, required, status
):
    """With no EU usage signable, a required EU signer makes /readyz 503; an optional one not."""
    now = datetime.now(UTC)
    expired = make_dsc(None, not_before=now - 800 * DAY, not_after=now - DAY)
    path = tmp_path / "expired-all-usages.pem"
    path.write_bytes(expired.pem)
    keys = SignerKeys({}, test_keys.domestic, [path], test_keys.domestic_files)
    eu_signer = SignerSettings(url=EU_SIGNER_URL, allow_plain_http=True, required=required)
    async with running_gateway(make_settings(keys, eu_signer=eu_signer)) as gateway:
        response = await readyz_when_probed(gateway)
    assert response.status_code == status, response.text
    out = response.json()
    assert out["status"] == ("not-ready" if required else "degraded")
    assert {c["status"] for c in out["euSigningCertificates"].values()} == {"expired"}
    assert out["dependencies"]["eu-signer"]["status"] == "up"


async def test_readyz_ready_with_a_missing_usage(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter
):
    """A usage with no DSC configured at all is shown as missing and does not degrade /readyz."""
    keys = SignerKeys(
        test_keys.dscs,
        test_keys.domestic,
        [path for path in test_keys.files if "recovery" not in path.name],
        test_keys.domestic_files,
    )
    async with running_gateway(make_settings(keys)) as gateway:
        response = await readyz_when_probed(gateway)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["status"] == "ready"
    assert out["euSigningCertificates"]["recovery"]["status"] == "missing"


@pytest.fixture
def expired_and_expiring(tmp_path, test_keys: SignerKeys) -> SignerKeys:
    """Keys whose vaccination DSC has expired and whose test DSC ends in three days."""
    now = datetime.now(UTC)
    expired = make_dsc(["vaccination"], not_before=now - 800 * DAY, not_after=now - DAY)
    expiring = make_dsc(["test"], not_before=now - 300 * DAY, not_after=now + 3 * DAY)
    keys = keys_with(tmp_path, test_keys, "vaccination", expired)
    return keys_with(tmp_path, keys, "test", expiring)


async def test_metrics_show_each_usages_time_left(
    expired_and_expiring: SignerKeys, signers: respx.MockRouter
):
    """The gauge gives seconds until the signing DSC's notAfter per usage; 0 when none is valid."""
    name = "gateway_eu_signing_certificate_remaining_seconds"
    async with running_gateway(make_settings(expired_and_expiring)) as gateway:
        result = await scrape(gateway)
    assert result.label_values(name, "key_usage") == {"vaccination", "test", "recovery"}
    assert result.value(name, key_usage="vaccination") == 0
    assert 3 * DAY - timedelta(minutes=5) < timedelta(seconds=result.value(name, key_usage="test"))
    assert timedelta(seconds=result.value(name, key_usage="test")) <= 3 * DAY
    assert timedelta(seconds=result.value(name, key_usage="recovery")) > 700 * DAY


async def test_start_up_warns_about_unusable_and_expiring_dscs(
    expired_and_expiring: SignerKeys, signers: respx.MockRouter, caplog: pytest.LogCaptureFixture
):
    """Start-up logs a warning per usage whose DSC has expired or ends within two weeks."""
    caplog.set_level(logging.WARNING, logger="signing_gateway")
    async with running_gateway(make_settings(expired_and_expiring)):
        pass
    warned = {
        record.key_usage: record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and hasattr(record, "key_usage")
    }
    assert set(warned) == {"vaccination", "test"}
    assert "no EU signing certificate is valid now" in warned["vaccination"]
    assert "expires soon" in warned["test"]


@pytest.mark.parametrize(
    ("first", "part"),
    [("vaccination", "european[1]"), ("test", "european[0]")],
    ids=["expired-last", "expired-first"],
)
async def test_parts_without_a_valid_dsc_advise_the_longest_wait(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter, first, part
):
    """Pin that the 503 of several EU parts without a DSC advises the wait all of them need.

    The vaccination DSC starts in 10 s, the test DSC has expired (5 minutes). Before, the
    first such part answered: with the vaccination part first, `Retry-After: 10` and a
    session said to be kept, and the retry as advised met the test part's 503 of 5 minutes
    (by then with a session expired).
    """
    now = datetime.now(UTC)
    soon = make_dsc(["vaccination"], not_before=now + 10 * SECOND, not_after=now + 700 * DAY)
    expired = make_dsc(["test"], not_before=now - 800 * DAY, not_after=now - DAY)
    keys = keys_with(tmp_path, keys_with_vaccination(tmp_path, test_keys, soon), "test", expired)
    mocked = mock_signers(signers, keys)
    european = {"vaccination": eu_vaccination(), "test": eu_test()}
    parts = [european.pop(first), *european.values()]
    async with running_gateway(make_settings(keys)) as gateway:
        response, _ = await _with_a_session(gateway, parts)
    problem = assert_problem(response, 503, "signer-unavailable")
    assert response.headers["retry-after"] == "300"
    assert problem["part"] == part
    assert "the EU signer's certificate for key usage test has expired" in problem["detail"]
    assert problem["detail"].endswith(SESSION_EXPIRES_FIRST)
    assert mocked.signing_calls() == 1  # the prepare-issue only


async def test_of_parts_with_equal_waits_the_first_answers(
    tmp_path, test_keys: SignerKeys, signers: respx.MockRouter
):
    """Pin the tie: of EU parts without a DSC that advise the same wait, the first answers."""
    now = datetime.now(UTC)
    keys = test_keys
    for usage in ("vaccination", "test"):
        expired = make_dsc([usage], not_before=now - 800 * DAY, not_after=now - DAY)
        keys = keys_with(tmp_path, keys, usage, expired)
    mock_signers(signers, keys)
    async with running_gateway(make_settings(keys)) as gateway:
        response, _ = await _with_a_session(gateway, [eu_vaccination(), eu_test()])
    problem = assert_problem(response, 503, "signer-unavailable")
    assert response.headers["retry-after"] == "300"
    assert problem["part"] == "european[0]"
    assert "certificate for key usage vaccination has expired" in problem["detail"]
