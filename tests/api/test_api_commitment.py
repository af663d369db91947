"""The app's issue commitment: refused when too deep or too large, else sent exactly as sent."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test
from tests.api.signer_mocks import NONCE, MockedSigners, commitment

#: The default `limits.max_json_depth`.
MAX_DEPTH = 16
#: The largest commitment, decoded (`issuance.commitment.MAX_COMMITMENT_BYTES`).
MAX_BYTES = 64 * 1024
ROUTES = ["/v1/domestic/issue", "/v1/credentials"]


def _nested(levels: int) -> bytes:
    """A commitment object whose arrays and objects nest `levels` deep, the object included."""
    inner = levels - 1
    return b'{"issuerNonce":"%s","a":%s%s}' % (NONCE.encode(), b"[" * inner, b"]" * inner)


def _sized(size: int) -> bytes:
    """A commitment object of exactly `size` bytes."""
    head, tail = b'{"issuerNonce":"%s","pad":"' % NONCE.encode(), b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _b64(document: bytes) -> str:
    return base64.b64encode(document).decode("ascii")


async def _body(gateway: httpx.AsyncClient, route: str, message: str) -> dict[str, Any]:
    """A fresh session's request to `route` carrying the commitment `message`."""
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    stoken = prepared.json()["stoken"]
    if route == "/v1/credentials":
        return {
            "stoken": stoken,
            "issueCommitmentMessage": message,
            "domestic": [domestic_attributes()],
            "european": [eu_test()],
        }
    return {
        "stoken": stoken,
        "issueCommitmentMessage": message,
        "credentialsAttributes": [domestic_attributes()],
    }


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 30_000])
async def test_too_deep_commitment_is_a_422_and_the_stoken_stays_usable(
    gateway, mocked: MockedSigners, route: str, levels: int
):
    """A commitment nested past the depth limit is a 422 there; nothing is signed or spent."""
    body = await _body(gateway, route, _b64(_nested(levels)))
    problem = assert_problem(await gateway.post(route, json=body), 422, "validation-failed")
    assert problem["errors"] == [
        {
            "loc": ["body", "issueCommitmentMessage"],
            "msg": f"the JSON nests deeper than {MAX_DEPTH} levels",
        }
    ]
    assert mocked.signing_calls() == 1  # the prepare-issue only

    body["issueCommitmentMessage"] = commitment()
    retry = await gateway.post(route, json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_commitment_at_the_depth_limit_is_issued(gateway, mocked: MockedSigners, route: str):
    """A commitment nested exactly as deep as the limit allows reaches the signer as sent."""
    document = _nested(MAX_DEPTH)
    body = await _body(gateway, route, _b64(document))
    response = await gateway.post(route, json=body)
    assert response.status_code == 200, response.text
    assert b'"issueCommitmentMessage":' + document + b"," in mocked.issue.calls.last.request.content


@pytest.mark.parametrize("size", [MAX_BYTES + 1, MAX_BYTES + 3], ids=["1-byte", "3-bytes"])
async def test_commitment_of_64_kib_is_issued_and_one_byte_more_is_refused(
    gateway, mocked: MockedSigners, size: int
):
    """The bound is on the decoded commitment: 64 KiB reaches the signer, a byte more is a 422.

    One or two bytes more still have the base64 length of 64 KiB; three more are longer.
    """
    body = await _body(gateway, "/v1/domestic/issue", _b64(_sized(size)))
    problem = assert_problem(await gateway.post("/v1/domestic/issue", json=body), 422)
    assert problem["errors"] == [{"loc": ["body", "issueCommitmentMessage"], "msg": "is too large"}]
    assert mocked.issue.call_count == 0
    body["issueCommitmentMessage"] = _b64(_sized(MAX_BYTES))
    response = await gateway.post("/v1/domestic/issue", json=body)
    assert response.status_code == 200, response.text
    assert mocked.issue.call_count == 1


async def test_text_longer_than_64_kib_in_base64_is_too_large_unread(
    gateway, mocked: MockedSigners
):
    """One character past the base64 length of 64 KiB is too large, whatever the text holds."""
    longest = len(_b64(bytes(MAX_BYTES)))
    body = await _body(gateway, "/v1/domestic/issue", "!" * (longest + 1))
    problem = assert_problem(await gateway.post("/v1/domestic/issue", json=body), 422)
    assert problem["errors"] == [{"loc": ["body", "issueCommitmentMessage"], "msg": "is too large"}]
    assert mocked.issue.call_count == 0


@pytest.mark.parametrize("route", ROUTES)
async def test_big_integers_reach_the_signer_byte_for_byte(
    gateway, mocked: MockedSigners, route: str
):
    """Idemix-sized integers (71 and 2048 bits) and the app's own spacing are forwarded as sent."""
    document = b'{ "issuerNonce": "%s",\n  "U": %d, "small": %d, "v": [-%d, 1.5e300] }' % (
        NONCE.encode(),
        2**2048 - 159,
        2**70,
        2**1024,
    )
    body = await _body(gateway, route, _b64(document))
    response = await gateway.post(route, json=body)
    assert response.status_code == 200, response.text
    sent = mocked.issue.calls.last.request.content
    assert b'"issueCommitmentMessage":' + document + b',"credentialsAttributes":' in sent


_OTHER_NONCE = "must be the issuerNonce of the session's prepare-issue message"
_OUT_OF_RANGE = "holds a number past a double's range, which the signer cannot read"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "case",
    [
        (b'{"issuerNonce": "AAAA", "proof": "app"}', ["issuerNonce"], _OTHER_NONCE),
        (b'{"proof": "app"}', ["issuerNonce"], _OTHER_NONCE),
        (b'{"issuerNonce": ["%s"]}' % NONCE.encode(), ["issuerNonce"], _OTHER_NONCE),
        (b'{"issuerNonce": "AAAA", "pad": "%s"}' % (b"x" * 40_000), ["issuerNonce"], _OTHER_NONCE),
        (b'{"issuerNonce": "%s", "f": 1e99999}' % NONCE.encode(), [], _OUT_OF_RANGE),
        (b'{"issuerNonce": "%s", "v": [0, -1.5e400]}' % NONCE.encode(), [], _OUT_OF_RANGE),
    ],
    ids=["other-nonce", "no-nonce", "nonce-in-a-list", "other-nonce-40-kb", "1e99999", "-1.5e400"],
)
async def test_commitment_the_simulation_signer_refuses_is_a_422_and_the_stoken_stays_usable(
    gateway, mocked: MockedSigners, caplog, route: str, case: tuple[bytes, list[str], str]
):
    """A commitment for another nonce, or with a number past a double's range, never reaches it.

    The simulation signer refuses both: the caller got 502 signer-bad-response, the session was
    used up, and the gateway logged an error any caller could repeat at will.
    """
    document, loc, msg = case
    body = await _body(gateway, route, _b64(document))
    problem = assert_problem(await gateway.post(route, json=body), 422, "commitment-proof-failed")
    assert problem["errors"] == [{"loc": ["issueCommitmentMessage", *loc], "msg": msg}]
    assert "retry with the same stoken" in problem["detail"]
    assert mocked.signing_calls() == 1  # the prepare-issue only
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

    body["issueCommitmentMessage"] = commitment()
    retry = await gateway.post(route, json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize(
    "document",
    [b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": 1} x', b'{"a": "\xff"}', b'"{}"'],
    ids=["nan", "infinity", "trailing-garbage", "not-utf-8", "json-string"],
)
async def test_commitment_that_is_no_json_object_is_refused(
    gateway, mocked: MockedSigners, document: bytes
):
    """Only one well-formed JSON object passes: what JSON itself refuses is a 422 there."""
    body = await _body(gateway, "/v1/domestic/issue", _b64(document))
    problem = assert_problem(await gateway.post("/v1/domestic/issue", json=body), 422)
    assert problem["errors"] == [
        {"loc": ["body", "issueCommitmentMessage"], "msg": "must be base64 of a JSON object"}
    ]
    assert mocked.issue.call_count == 0


def _holding(member: bytes) -> bytes:
    """A commitment object with the session's nonce and one more `member` (JSON text)."""
    return b'{"issuerNonce":"%s",%s}' % (NONCE.encode(), member)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("member", "msg"),
    [
        (rb'"proof":"\ud800"', "a string holds a lone UTF-16 surrogate escape"),
        (rb'"U":[1,{"a":"x\uDBFFy"}]', "a string holds a lone UTF-16 surrogate escape"),
        (rb'"p":"\ude00\ud83d"', "a string holds a lone UTF-16 surrogate escape"),
        (rb'"\udfff":1', "a key holds a lone UTF-16 surrogate escape"),
    ],
    ids=["value", "nested-upper-case", "pair-reversed", "key"],
)
async def test_lone_surrogate_in_commitment_is_a_422_and_the_stoken_stays_usable(
    gateway, mocked: MockedSigners, route: str, member: bytes, msg: str
):
    """A string or key holding a lone surrogate escape is a 422 there; nothing signed or spent."""
    body = await _body(gateway, route, _b64(_holding(member)))
    problem = assert_problem(await gateway.post(route, json=body), 422, "validation-failed")
    assert problem["errors"] == [{"loc": ["body", "issueCommitmentMessage"], "msg": msg}]
    assert mocked.signing_calls() == 1  # the prepare-issue only

    body["issueCommitmentMessage"] = commitment()
    retry = await gateway.post(route, json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "member",
    [rb'"issuerNonce":"Zyxwvutsrq"', rb'"U":[1,{"a":2,"b":3,"a":4}]', rb'"\u0069ssuerNonce":1'],
    ids=["top", "nested", "escaped-key"],
)
async def test_repeated_key_in_commitment_is_a_422_and_the_stoken_stays_usable(
    gateway, mocked: MockedSigners, route: str, member: bytes
):
    """A key named twice in one object is a 422 there, quoting nothing; nothing signed or spent.

    Which of the two a signer would read is its parser's choice: the gateway forwards neither.
    """
    body = await _body(gateway, route, _b64(_holding(member)))
    response = await gateway.post(route, json=body)
    problem = assert_problem(response, 422, "validation-failed")
    assert problem["errors"] == [
        {"loc": ["body", "issueCommitmentMessage"], "msg": "an object repeats a key"}
    ]
    assert "Zyxwvutsrq" not in response.text
    assert mocked.signing_calls() == 1  # the prepare-issue only

    body["issueCommitmentMessage"] = commitment()
    retry = await gateway.post(route, json=body)
    assert retry.status_code == 200, retry.text
    assert mocked.issue.call_count == 1


async def test_the_same_key_in_two_objects_of_a_commitment_is_issued(
    gateway, mocked: MockedSigners
):
    """Keys are unique per object: one named in two objects reaches the signer as sent."""
    document = _holding(rb'"U":{"a":1,"v":[{"a":2}]},"a":3')
    body = await _body(gateway, "/v1/domestic/issue", _b64(document))
    response = await gateway.post("/v1/domestic/issue", json=body)
    assert response.status_code == 200, response.text
    assert b'"issueCommitmentMessage":' + document + b"," in mocked.issue.calls.last.request.content


@pytest.mark.parametrize(
    "member",
    [rb'"p":"\ud83d\ude00"', rb'"p":"\\ud800"', rb'"\u00e9\uD83D\uDE00":"\u0041"'],
    ids=["surrogate-pair", "escaped-backslash", "key-and-value-escapes"],
)
async def test_unicode_escapes_in_commitment_reach_the_signer_as_sent(
    gateway, mocked: MockedSigners, member: bytes
):
    """Escapes that make Unicode text (pairs included) pass, and the bytes go on unchanged."""
    document = _holding(member)
    body = await _body(gateway, "/v1/domestic/issue", _b64(document))
    response = await gateway.post("/v1/domestic/issue", json=body)
    assert response.status_code == 200, response.text
    assert b'"issueCommitmentMessage":' + document + b"," in mocked.issue.calls.last.request.content


async def test_commitment_with_a_character_outside_base64_is_refused(
    gateway, mocked: MockedSigners
):
    """Base64 is read strictly: a stray character is a 422, not skipped."""
    message = commitment()
    body = await _body(gateway, "/v1/domestic/issue", message[:8] + "*" + message[8:])
    problem = assert_problem(await gateway.post("/v1/domestic/issue", json=body), 422)
    assert problem["errors"] == [
        {"loc": ["body", "issueCommitmentMessage"], "msg": "must be base64 of a JSON object"}
    ]
    assert mocked.issue.call_count == 0


@pytest.mark.parametrize("route", ROUTES)
async def test_bad_attributes_and_a_bad_commitment_are_refused_together(
    gateway, mocked: MockedSigners, route: str
):
    """Both errors in one 422, on either route: the caller need not find the second later."""
    body = await _body(gateway, route, _b64(b"[]"))
    attributes = "domestic" if route == "/v1/credentials" else "credentialsAttributes"
    body[attributes] = [domestic_attributes(validFrom="1")]  # far outside the window
    problem = assert_problem(await gateway.post(route, json=body), 422, "validation-failed")
    assert [error["loc"] for error in problem["errors"]] == [
        ["body", attributes, 0, "validFrom"],
        ["body", "issueCommitmentMessage"],
    ]
    assert mocked.signing_calls() == 1  # the prepare-issue only
