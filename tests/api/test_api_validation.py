"""Validation at the API: a 422 problem+json that points at the field, and no signer call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import respx

from tests.api.assertions import assert_problem, error_locs
from tests.api.bodies import (
    domestic_attributes,
    eu_recovery,
    eu_test,
    eu_vaccination,
    with_dcc,
    with_own_uvcis,
)
from tests.api.signer_mocks import MockedSigners, commitment, mock_signers
from tests.support.gateway import (
    DOMESTIC_SIGNER_URL,
    EU_SIGNER_URL,
    SignerKeys,
    make_settings,
    running_gateway,
)

# Nothing here changes gateway state that another test could see (stokens are fresh UUIDs), so
# one gateway and one mock router serve the module: starting a gateway costs ~0.2 s.
pytestmark = pytest.mark.asyncio(loop_scope="module")

V0 = ("dcc", "v", 0)
T0 = ("dcc", "t", 0)


def _recovery_over() -> dict[str, Any]:
    """A recovery request valid until two days ago (over everywhere), without expirationTime."""
    over = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    return with_dcc(eu_recovery(), "r", 0, "du", value=over)


@pytest.fixture(scope="module")
def signers() -> Iterator[respx.MockRouter]:
    """Both signers mocked for the whole module."""
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        mock.route(host="gateway.test").pass_through()
        mock.get(f"{EU_SIGNER_URL}/healthz").respond(200, json={"status": "ok"})
        mock.get(f"{DOMESTIC_SIGNER_URL}/healthz").respond(200, json={"status": "ok"})
        yield mock


@pytest.fixture(scope="module")
def module_mocked(signers: respx.MockRouter, test_keys: SignerKeys) -> MockedSigners:
    """Correct signing answers for the module's router."""
    return mock_signers(signers, test_keys)


@pytest.fixture
def mocked(module_mocked: MockedSigners) -> MockedSigners:
    """The module's signer mocks with call counts zeroed for this test."""
    module_mocked.router.reset()
    return module_mocked


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(test_keys: SignerKeys, signers) -> AsyncIterator[httpx.AsyncClient]:
    """One in-process gateway for the module."""
    async with running_gateway(make_settings(test_keys)) as client:
        yield client


FAR_FUTURE = "2099-01-01T00:00:00Z"


def _two_groups() -> dict[str, Any]:
    body = eu_vaccination()
    body["dcc"]["t"] = eu_test()["dcc"]["t"]
    return body


DCC_CASES: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {
    "name-not-transliterated": (
        with_dcc(eu_vaccination(), "nam", "fnt", value="jansen"),
        ("dcc", "nam", "fnt"),
    ),
    "name-control-character": (
        with_dcc(eu_vaccination(), "nam", "fn", value="Jan\x07sen"),
        ("dcc", "nam", "fn"),
    ),
    "name-private-use-character": (
        with_dcc(eu_vaccination(), "nam", "gn", value="Anna\ue000"),
        ("dcc", "nam", "gn"),
    ),
    "name-noncharacter": (
        with_dcc(eu_vaccination(), "nam", "fn", value="Jansen\ufffe"),
        ("dcc", "nam", "fn"),
    ),
    "no-transliterated-name": (
        with_dcc(eu_vaccination(), "nam", value={"fn": "Jansen", "gn": "Anna"}),
        ("dcc", "nam"),
    ),
    "dob-not-a-date": (with_dcc(eu_vaccination(), "dob", value="1980-02-30"), ("dcc", "dob")),
    "dob-in-future": (with_dcc(eu_vaccination(), "dob", value="2099-01-01"), ("dcc", "dob")),
    "dob-before-1900": (with_dcc(eu_vaccination(), "dob", value="0001-01-01"), ("dcc", "dob")),
    "vaccination-date-invalid": (
        with_dcc(eu_vaccination(), "v", 0, "dt", value="2021-13-01"),
        (*V0, "dt"),
    ),
    "test-time-in-future": (
        with_dcc(eu_test(), "t", 0, "sc", value="2099-01-01T00:00:00Z"),
        ("dcc", "t", 0, "sc"),
    ),
    "vaccination-date-in-year-1000": (
        with_dcc(eu_vaccination(), "v", 0, "dt", value="1000-01-01"),
        (*V0, "dt"),
    ),
    "recovery-valid-until-2100": (
        with_dcc(eu_recovery(), "r", 0, "du", value="2100-01-01"),
        ("dcc", "r", 0, "du"),
    ),
    "disease-not-in-value-set": (
        with_dcc(eu_vaccination(), "v", 0, "tg", value="12345"),
        (*V0, "tg"),
    ),
    "product-not-in-value-set": (
        with_dcc(eu_vaccination(), "v", 0, "mp", value="EU/1/99/0000"),
        (*V0, "mp"),
    ),
    "dose-zero": (with_dcc(eu_vaccination(), "v", 0, "dn", value=0), (*V0, "dn")),
    "rat-without-device": (
        with_dcc(eu_test(), "t", 0, "tt", value="LP217198-3"),
        (*T0, "ma"),
    ),
    "test-issuer-too-long": (with_dcc(eu_test(), "t", 0, "is", value="I" * 81), (*T0, "is")),
    "recovery-validity-over": (_recovery_over(), ("dcc", "r", 0, "du")),
    "recovery-valid-before-first-positive": (
        with_dcc(eu_recovery(), "r", 0, "df", value="2021-03-31"),
        ("dcc", "r", 0, "df"),
    ),
    "dose-beyond-64-bits": (with_dcc(eu_vaccination(), "v", 0, "sd", value=2**64), (*V0, "sd")),
    "uvci-bad-check-character": (
        with_dcc(
            eu_vaccination(),
            "v",
            0,
            "ci",
            value="URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#2",
        ),
        (*V0, "ci"),
    ),
    "schema-version": (with_dcc(eu_vaccination(), "ver", value="1.0.0"), ("dcc", "ver")),
    "key-usage-mismatch": (eu_vaccination(keyUsage="test"), ("keyUsage",)),
    "key-usage-unknown": (eu_vaccination(keyUsage="vacc"), ("keyUsage",)),
    "expiration-in-past": (
        eu_vaccination(expirationTime="2021-01-01T00:00:00Z"),
        ("expirationTime",),
    ),
    "expiration-beyond-dsc": (eu_vaccination(expirationTime=FAR_FUTURE), ("expirationTime",)),
    "expiration-not-rfc3339": (eu_vaccination(expirationTime="next year"), ("expirationTime",)),
    # RFC 3339 forms that sc, signed as given for verifier apps, does not take.
    **{
        f"sample-time-{name}": (with_dcc(eu_test(), "t", 0, "sc", value=value), (*T0, "sc"))
        for name, value in [("lower-z", "2021-07-01T10:00:00z"), ("leap", "2016-12-31T23:59:60Z")]
    },
    "expiration-past-year-9999-in-utc": (
        eu_vaccination(expirationTime="9999-12-31T23:59:59-01:00"),
        ("expirationTime",),
    ),
    "expiration-before-year-1-in-utc": (
        eu_vaccination(expirationTime="0001-01-01T00:00:00+01:00"),
        ("expirationTime",),
    ),
    "unknown-top-level-field": (eu_vaccination(note="hi"), ("note",)),
    "unknown-dcc-field": (with_dcc(eu_vaccination(), "extra", value=1), ("dcc", "extra")),
    "unknown-entry-field": (with_dcc(eu_vaccination(), "v", 0, "xx", value="1"), (*V0, "xx")),
    "two-groups": (_two_groups(), ("dcc", "t")),
    "two-entries": (
        with_dcc(eu_vaccination(), "v", value=eu_vaccination()["dcc"]["v"] * 2),
        ("dcc", "v"),
    ),
    "no-group": (with_dcc(eu_vaccination(), "v", value=...), ("dcc",)),
    # Signed before: a DCC naming nobody, or a name shown other than it is written.
    "name-of-a-filler-alone": (
        with_dcc(with_dcc(eu_vaccination(), "nam", value={"fnt": "<"}), "dob", value=""),
        ("dcc", "nam", "fnt"),
    ),
    "name-of-a-zero-width-space": (
        with_dcc(eu_vaccination(), "nam", value={"fn": "\u200b", "fnt": "DOE"}),
        ("dcc", "nam", "fn"),
    ),
    "name-reversed-by-an-override": (
        with_dcc(eu_vaccination(), "nam", "fn", value="\u202eneznaJ"),
        ("dcc", "nam", "fn"),
    ),
    "issuer-with-tag-characters": (
        with_dcc(eu_test(), "t", 0, "is", value="Ministry\U000e0041"),
        (*T0, "is"),
    ),
}


@pytest.mark.parametrize(("body", "loc"), DCC_CASES.values(), ids=DCC_CASES.keys())
async def test_dcc_rule_violation(gateway, mocked: MockedSigners, body, loc):
    """A DCC request breaking one rule is a 422 located at the field; no signer is called."""
    response = await gateway.post("/v1/dcc", json=body)
    problem = assert_problem(response, 422, "validation-failed")
    assert ["body", *loc] in error_locs(problem)
    assert all(error["msg"] for error in problem["errors"])
    assert mocked.signing_calls() == 0


async def test_422_detail_names_the_field_and_what_is_wrong(gateway, mocked: MockedSigners):
    """A 422's detail names the field refused and why, not only how many errors there are."""
    body = with_dcc(eu_vaccination(), "v", 0, "dn", value="2")
    problem = assert_problem(await gateway.post("/v1/dcc", json=body), 422, "validation-failed")
    assert problem["errors"] == [
        {"loc": ["body", *V0, "dn"], "msg": "Input should be a valid integer"}
    ]
    assert problem["detail"] == "body.dcc.v.0.dn: Input should be a valid integer"
    assert mocked.signing_calls() == 0


async def test_422_detail_names_every_field_refused(gateway, mocked: MockedSigners):
    """With several errors the detail says where each is, in the order `errors` lists them."""
    body = {"dcc": {}, "keyUsage": "vaccine"}
    problem = assert_problem(await gateway.post("/v1/dcc", json=body), 422, "validation-failed")
    assert problem["detail"] == (
        "5 validation errors, at body.dcc.ver, body.dcc.nam, body.dcc.dob, body.dcc and "
        "body.keyUsage"
    )
    assert [".".join(map(str, loc)) for loc in error_locs(problem)] == [
        "body.dcc.ver",
        "body.dcc.nam",
        "body.dcc.dob",
        "body.dcc",
        "body.keyUsage",
    ]
    assert mocked.signing_calls() == 0


NULL_REFUSED = "Leave the field out instead of sending null"
NULL_CASES: dict[str, tuple[dict[str, Any], tuple[str | int, ...]]] = {
    "keyUsage": (eu_vaccination(keyUsage=None), ("keyUsage",)),
    "expirationTime": (eu_vaccination(expirationTime=None), ("expirationTime",)),
    "other-group": (with_dcc(eu_test(), "v", value=None), ("dcc", "v")),
    **{
        f"nam.{name}": (with_dcc(eu_test(), "nam", name, value=None), ("dcc", "nam", name))
        for name in ("fn", "fnt", "gn", "gnt")
    },
    **{
        f"t.{name}": (with_dcc(eu_test(), "t", 0, name, value=None), (*T0, name))
        for name in ("nm", "ma", "tc")
    },
}


@pytest.mark.parametrize(("body", "loc"), NULL_CASES.values(), ids=NULL_CASES.keys())
async def test_optional_eu_field_sent_as_null(gateway, mocked: MockedSigners, body, loc):
    """An optional EuRequest field sent as null is a 422 saying to leave it out, nothing else."""
    problem = assert_problem(await gateway.post("/v1/dcc", json=body), 422, "validation-failed")
    assert problem["errors"] == [{"loc": ["body", *loc], "msg": NULL_REFUSED}]
    assert mocked.signing_calls() == 0


async def test_domestic_category_sent_as_null(gateway, mocked: MockedSigners):
    """A domestic category sent as null is a 422 saying to leave it out."""
    body = {"credentialAttributes": {**domestic_attributes(), "category": None}}
    problem = assert_problem(await gateway.post("/v1/domestic/static", json=body), 422)
    loc = ["body", "credentialAttributes", "category"]
    assert problem["errors"] == [{"loc": loc, "msg": NULL_REFUSED}]
    assert mocked.signing_calls() == 0


PERSONAL = {
    "fn": "Zwanenburg\x07",
    "fnt": "zwanenburg",
    "gn": "Xaveria\x07",
    "gnt": "xaveria",
}


@pytest.mark.parametrize("dob", ["1931-02-30", "2198-07-19", "19310230"])
async def test_422_never_echoes_personal_data(gateway, mocked: MockedSigners, dob):
    """A 422 for bad names and date of birth does not repeat the names or the date given."""
    body = with_dcc(eu_vaccination(), "nam", value=dict(PERSONAL))
    body = with_dcc(body, "dob", value=dob)
    response = await gateway.post("/v1/dcc", json=body)
    problem = assert_problem(response, 422)
    assert {("body", "dcc", "dob")} <= {tuple(loc) for loc in error_locs(problem)}
    text = response.text.lower()
    for value in ("zwanenburg", "xaveria", dob):
        assert value not in text
    assert mocked.signing_calls() == 0


async def test_422_naming_a_rule_over_several_fields_never_echoes_personal_data(
    gateway, mocked: MockedSigners
):
    """Errors named beside a DCC's missing group withhold the names and birth date as alone."""
    body = with_dcc(eu_vaccination(), "nam", value={"fn": "Zwanenburg\x07", "fnt": "zwanenburg"})
    body = with_dcc(with_dcc(body, "dob", value="1931-02-30"), "v", value=...)
    response = await gateway.post("/v1/dcc", json=body)
    problem = assert_problem(response, 422)
    assert sorted(map(str, error_locs(problem))) == sorted(
        map(
            str,
            [
                ["body", "dcc"],
                ["body", "dcc", "dob"],
                ["body", "dcc", "nam", "fn"],
                ["body", "dcc", "nam", "fnt"],
            ],
        )
    )
    for value in ("zwanenburg", "1931-02-30"):
        assert value not in response.text.lower()
    assert mocked.signing_calls() == 0


async def test_422_withholds_a_short_personal_value_only_where_it_is_quoted(
    gateway, mocked: MockedSigners
):
    """A two-letter birth day is withheld where the message quotes it, not inside other words."""
    attrs = domestic_attributes(birthDay="to")
    response = await gateway.post("/v1/domestic/static", json={"credentialAttributes": attrs})
    problem = assert_problem(response, 422)
    [error] = [e for e in problem["errors"] if e["loc"][-1] == "birthDay"]
    assert error["msg"] == (
        "Must be a day '1' to '31' (no leading zero) or empty, got (value withheld)"
    )
    assert "part" not in problem  # a refusal of the whole request names no part
    assert mocked.signing_calls() == 0


async def test_422_does_not_echo_names_inside_print(gateway, mocked: MockedSigners):
    """Personal data stays out of the 422 when the DCC comes inside /v1/print too."""
    european = with_dcc(eu_vaccination(), "nam", "gnt", value="xaveria")
    response = await gateway.post("/v1/print", json={"european": european})
    problem = assert_problem(response, 422)
    assert ["body", "european", "dcc", "nam", "gnt"] in error_locs(problem)
    assert "xaveria" not in response.text.lower()


#: DEVANAGARI LETTER QA: excluded from composition, so NFC gives two characters for it.
QA = "\u0958"


@pytest.mark.parametrize("field", ["fn", "gn"])
async def test_name_longer_only_after_nfc_says_so(gateway, mocked: MockedSigners, field):
    """A name of 41 characters that NFC turns into 82 is refused saying NFC made it 82.

    Its signed form would break the schema's 80-character bound, so it is refused; before, the
    message said "got 82" to a caller who sent 41.
    """
    body = with_dcc(eu_vaccination(), "nam", field, value=QA * 41)
    problem = assert_problem(await gateway.post("/v1/dcc", json=body), 422, "validation-failed")
    assert problem["errors"] == [
        {
            "loc": ["body", "dcc", "nam", field],
            "msg": "Must be at most 80 characters after Unicode normalisation (NFC), "
            "which turns the 41 given into 82",
        }
    ]
    assert mocked.signing_calls() == 0


async def test_name_of_80_characters_as_given_and_after_nfc_is_signed(
    gateway, mocked: MockedSigners
):
    """A name of 80 characters that NFC leaves at 80 or shortens is accepted and signed."""
    body = with_dcc(eu_vaccination(), "nam", "fn", value=QA * 40)
    assert (await gateway.post("/v1/dcc", json=body)).status_code == 200
    body = with_dcc(eu_vaccination(), "nam", "gn", value="e\u0301" * 40)
    assert (await gateway.post("/v1/dcc", json=body)).status_code == 200
    assert mocked.signing_calls() == 2


DOMESTIC_CASES: dict[str, tuple[dict[str, str], str]] = {
    "flag": (domestic_attributes(isSpecimen="2"), "isSpecimen"),
    "initial-lowercase": (domestic_attributes(firstNameInitial="a"), "firstNameInitial"),
    "birth-day-leading-zero": (domestic_attributes(birthDay="02"), "birthDay"),
    "birth-month-13": (domestic_attributes(birthMonth="13"), "birthMonth"),
    "birth-day-30-february": (domestic_attributes(birthDay="30", birthMonth="2"), "birthMonth"),
    "hours-zero": (domestic_attributes(validForHours="0"), "validForHours"),
    "hours-beyond-policy": (domestic_attributes(validForHours="99999"), "validForHours"),
    "valid-from-too-old": (
        domestic_attributes(validFrom=str(int(time.time()) - 365 * 86400)),
        "validFrom",
    ),
    "valid-from-too-late": (
        domestic_attributes(validFrom=str(int(time.time()) + 365 * 86400)),
        "validFrom",
    ),
    "valid-from-not-digits": (domestic_attributes(validFrom="soon"), "validFrom"),
    "unknown-attribute": (domestic_attributes(nickname="X"), "nickname"),
}


@pytest.mark.parametrize(("attrs", "field"), DOMESTIC_CASES.values(), ids=DOMESTIC_CASES.keys())
async def test_domestic_static_rule_violation(gateway, mocked: MockedSigners, attrs, field):
    """Bad domestic attributes on /v1/domestic/static are a 422 at the attribute; no signer call."""
    response = await gateway.post("/v1/domestic/static", json={"credentialAttributes": attrs})
    problem = assert_problem(response, 422, "validation-failed")
    assert ["body", "credentialAttributes", field] in error_locs(problem)
    assert mocked.signing_calls() == 0


async def test_domestic_issue_rule_violation_keeps_session(gateway, mocked: MockedSigners):
    """A bad attribute set in /v1/domestic/issue is a 422 at its index; the stoken stays usable."""
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        "credentialsAttributes": [domestic_attributes(), domestic_attributes(birthMonth="0")],
    }
    problem = assert_problem(await gateway.post("/v1/domestic/issue", json=body), 422)
    assert ["body", "credentialsAttributes", 1, "birthMonth"] in error_locs(problem)
    assert mocked.issue.call_count == 0
    body["credentialsAttributes"] = [domestic_attributes()]
    assert (await gateway.post("/v1/domestic/issue", json=body)).status_code == 200


#: Where each session route takes its attribute sets.
SESSION_PARTS = {"/v1/domestic/issue": "credentialsAttributes", "/v1/credentials": "domestic"}


@pytest.mark.parametrize(("attrs", "field"), DOMESTIC_CASES.values(), ids=DOMESTIC_CASES.keys())
@pytest.mark.parametrize("path", SESSION_PARTS)
async def test_session_rule_violation_reaches_no_signer(
    gateway, mocked: MockedSigners, attrs, field, path
):
    """The rules /static applies hold for each attribute set of a session: 422 at its index."""
    parts = SESSION_PARTS[path]
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        parts: [domestic_attributes(), attrs],
    }
    problem = assert_problem(await gateway.post(path, json=body), 422, "validation-failed")
    assert ["body", parts, 1, field] in error_locs(problem)
    assert mocked.issue.call_count == 0


@pytest.mark.parametrize("path", SESSION_PARTS)
async def test_a_session_takes_as_many_attribute_sets_as_it_was_opened_for(
    gateway, mocked: MockedSigners, path
):
    """28 sets (the session's credentialAmount) are signed; 29 are a 422 that keeps the stoken."""
    parts = SESSION_PARTS[path]
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": commitment(),
        parts: [domestic_attributes()] * 29,
    }
    problem = assert_problem(await gateway.post(path, json=body), 422, "validation-failed")
    assert problem["errors"] == [
        {"loc": ["body", parts], "msg": "at most 28 credentials per session"}
    ]
    assert mocked.issue.call_count == 0
    body[parts] = [domestic_attributes()] * 28
    assert (await gateway.post(path, json=body)).status_code == 200


@pytest.mark.parametrize(
    "message",
    ["not base64!", "aGVsbG8=", "WzEsMl0="],
    ids=["not-base64", "not-json", "json-not-object"],
)
async def test_bad_commitment(gateway, mocked: MockedSigners, message):
    """A commitment that is not base64 of a JSON object is a 422 at issueCommitmentMessage."""
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": message,
        "credentialsAttributes": [domestic_attributes()],
    }
    problem = assert_problem(await gateway.post("/v1/domestic/issue", json=body), 422)
    assert error_locs(problem) == [["body", "issueCommitmentMessage"]]
    assert mocked.issue.call_count == 0


def _session_body(**fields: Any) -> dict[str, Any]:
    """A /v1/credentials body with one domestic part; `fields` replace its members."""
    body = {
        "stoken": "0" * 36,
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
    }
    return {**body, **fields}


#: Each schema limit just within (the answer of a later check) and just past it (the schema's).
SCHEMA_EDGES: dict[str, tuple[str, dict[str, Any], list[str | int], str | None]] = {
    "ten-eu-parts": (
        "/v1/credentials",
        {"european": with_own_uvcis(*[eu_test()] * 10)},
        [],
        "signed",
    ),
    "eleven-eu-parts": (
        "/v1/credentials",
        {"european": with_own_uvcis(*[eu_test()] * 11)},
        ["european"],
        None,
    ),
    "100-domestic-parts": (
        "/v1/credentials",
        _session_body(domestic=[domestic_attributes()] * 100),
        ["domestic"],
        "at most 28 credentials per session",
    ),
    "101-domestic-parts": (
        "/v1/credentials",
        _session_body(domestic=[domestic_attributes()] * 101),
        ["domestic"],
        None,
    ),
    "commitment-of-90000-characters": (
        "/v1/credentials",
        _session_body(issueCommitmentMessage="A" * 90_000),
        ["issueCommitmentMessage"],
        "is too large",
    ),
    "commitment-of-90001-characters": (
        "/v1/credentials",
        _session_body(issueCommitmentMessage="A" * 90_001),
        ["issueCommitmentMessage"],
        None,
    ),
    "stoken-of-64-characters": (
        "/v1/credentials",
        _session_body(stoken="0" * 64),
        [],
        "stoken-invalid",
    ),
    "stoken-of-65-characters": (
        "/v1/credentials",
        _session_body(stoken="0" * 65),
        ["stoken"],
        None,
    ),
    "empty-stoken": ("/v1/credentials", _session_body(stoken=""), ["stoken"], None),
    "issue-without-attribute-sets": (
        "/v1/domestic/issue",
        {"stoken": "0" * 36, "issueCommitmentMessage": commitment(), "credentialsAttributes": []},
        ["credentialsAttributes"],
        None,
    ),
}


@pytest.mark.parametrize("case", SCHEMA_EDGES.values(), ids=SCHEMA_EDGES.keys())
async def test_schema_limits_at_their_edges(gateway, mocked: MockedSigners, case):
    """Within a limit the schema passes the body on; past it, its 422 at the field.

    Within: signed, the 401 of an stoken no gateway issued, or a later check's 422 (`msg`).
    """
    path, body, field, msg = case
    response = await gateway.post(path, json=body)
    if msg == "signed":
        assert response.status_code == 200, response.text
        return
    if msg == "stoken-invalid":
        assert_problem(response, 401, "stoken-invalid")
        return
    problem = assert_problem(response, 422, "validation-failed")
    errors = [e for e in problem["errors"] if e["loc"] == ["body", *field]]
    assert errors, problem
    if msg is None:
        assert all("28 credentials" not in e["msg"] and e["msg"] != "is too large" for e in errors)
    else:
        assert problem["errors"] == [{"loc": ["body", *field], "msg": msg}]
    assert mocked.signing_calls() == 0


#: A part of /v1/print that passes the parse but not the policy, beside a valid other part.
PRINT_POLICY_REFUSALS = {
    "european": (
        {"european": eu_vaccination(expirationTime="2001-01-01T00:00:00Z")},
        ["european", "expirationTime"],
    ),
    "european-recovery-over": ({"european": _recovery_over()}, ["european", "dcc", "r", 0, "du"]),
    "domestic": (
        {"domestic": domestic_attributes(validFrom=str(int(time.time()) - 365 * 86400))},
        ["domestic", "validFrom"],
    ),
}


@pytest.mark.parametrize(
    ("refused", "loc"), PRINT_POLICY_REFUSALS.values(), ids=PRINT_POLICY_REFUSALS.keys()
)
async def test_print_part_refused_by_the_policy_reaches_no_signer(
    gateway, mocked: MockedSigners, refused, loc
):
    """A part of /v1/print that the policy refuses: 422 at it, and neither part signed."""
    body = {"domestic": domestic_attributes(), "european": eu_vaccination(), **refused}
    problem = assert_problem(await gateway.post("/v1/print", json=body), 422, "validation-failed")
    assert error_locs(problem) == [["body", *loc]]
    assert mocked.signing_calls() == 0


async def test_credentials_without_domestic_parts_do_not_read_the_commitment(
    gateway, mocked: MockedSigners
):
    """Without domestic credentials the commitment is not read: one that is no base64 passes."""
    body = {"issueCommitmentMessage": "not base64!", "european": [eu_vaccination()]}
    response = await gateway.post("/v1/credentials", json=body)
    assert response.status_code == 200, response.text
    assert mocked.signing_calls() == 1


async def test_credentials_locates_every_part(gateway, mocked: MockedSigners):
    """/v1/credentials reports errors of every part at once, each at its own index."""
    stoken = (await gateway.post("/v1/domestic/prepare-issue")).json()["stoken"]
    body = {
        "stoken": stoken,
        "issueCommitmentMessage": "not base64!",
        "domestic": [domestic_attributes(validForHours="99999")],
        "european": [eu_test(), eu_vaccination(expirationTime=FAR_FUTURE)],
    }
    problem = assert_problem(await gateway.post("/v1/credentials", json=body), 422)
    assert sorted(map(str, error_locs(problem))) == sorted(
        map(
            str,
            [
                ["body", "domestic", 0, "validForHours"],
                ["body", "european", 1, "expirationTime"],
                ["body", "issueCommitmentMessage"],
            ],
        )
    )
    assert mocked.signing_calls() == 1  # the prepare-issue above only


BODY_RULE_AND_FIELD_BREAKS: dict[str, tuple[str, dict[str, Any], list[list[str | int]]]] = {
    "dcc-bad-entry-and-second-group": (
        "/v1/dcc",
        with_dcc(
            with_dcc(eu_vaccination(), "v", 0, "dn", value=0), "t", value=eu_test()["dcc"]["t"]
        ),
        [["body", *V0, "dn"], ["body", "dcc", "t"]],
    ),
    "dcc-bad-name-and-no-transliteration": (
        "/v1/dcc",
        with_dcc(eu_vaccination(), "nam", value={"fn": "Jan\x07sen"}),
        [["body", "dcc", "nam", "fn"], ["body", "dcc", "nam"]],
    ),
    "credentials-bad-domestic-and-no-stoken": (
        "/v1/credentials",
        {"issueCommitmentMessage": commitment(), "domestic": [domestic_attributes(isSpecimen="2")]},
        [["body", "domestic", 0, "isSpecimen"], ["body"]],
    ),
    "print-unknown-field-and-no-part": (
        "/v1/print",
        {"eu": eu_vaccination()},
        [["body", "eu"], ["body"]],
    ),
}


@pytest.mark.parametrize(
    ("path", "body", "locs"),
    BODY_RULE_AND_FIELD_BREAKS.values(),
    ids=BODY_RULE_AND_FIELD_BREAKS.keys(),
)
async def test_rule_over_several_fields_is_named_with_a_fields_error(
    gateway, mocked: MockedSigners, path, body, locs
):
    """One 422 names a field's error and a broken rule over the body or an object in it.

    Such a rule was only checked once every field it reads was valid: its error came in a
    second 422, after the caller had fixed the first.
    """
    problem = assert_problem(await gateway.post(path, json=body), 422, "validation-failed")
    assert sorted(map(str, error_locs(problem))) == sorted(map(str, locs))
    assert mocked.signing_calls() == 0


BODY_RULE_UNDECIDED: dict[str, tuple[str, dict[str, Any], list[list[str | int]]]] = {
    "credentials-european-an-object": (
        "/v1/credentials",
        {"european": eu_vaccination()},
        [["body", "european"]],
    ),
    "credentials-domestic-an-empty-object": (
        "/v1/credentials",
        {"domestic": {}},
        [["body", "domestic"]],
    ),
    "credentials-domestic-zero": ("/v1/credentials", {"domestic": 0}, [["body", "domestic"]]),
    "dcc-fnt-zero": (
        "/v1/dcc",
        with_dcc(eu_vaccination(), "nam", value={"fn": "Jansen", "fnt": 0}),
        [["body", "dcc", "nam", "fnt"]],
    ),
    "dcc-gnt-false": (
        "/v1/dcc",
        with_dcc(eu_vaccination(), "nam", value={"fn": "Jansen", "gnt": False}),
        [["body", "dcc", "nam", "gnt"]],
    ),
}


@pytest.mark.parametrize(
    ("path", "body", "locs"), BODY_RULE_UNDECIDED.values(), ids=BODY_RULE_UNDECIDED.keys()
)
async def test_a_part_of_the_wrong_type_is_not_also_called_missing(
    gateway, mocked: MockedSigners, path, body, locs
):
    """A part given in the wrong type is refused at its place alone: it is there, to be fixed.

    A value Python reads as false (`{}`, `0`, `false`) was taken for no part at all: "give at
    least one domestic or european credential", or no transliterated name, beside it.
    """
    problem = assert_problem(await gateway.post(path, json=body), 422, "validation-failed")
    assert sorted(map(str, error_locs(problem))) == sorted(map(str, locs))
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b""],
    ids=["broken-json", "array", "empty"],
)
async def test_unparseable_body(gateway, mocked: MockedSigners, content):
    """A body that is not a JSON object is a 422 problem+json, not a stack trace."""
    response = await gateway.post(
        "/v1/dcc", content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422)
    assert mocked.signing_calls() == 0
