"""Hostile input: body size, content type, JSON shape, and what error answers echo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from signing_gateway.api import examples
from signing_gateway.security.settings import LimitsSettings
from tests.api.assertions import assert_problem
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.signer_mocks import MockedSigners, commitment
from tests.support.gateway import make_settings, running_gateway

LIMIT = 4096


@pytest.fixture
async def limited(test_keys, mocked: MockedSigners):
    """A gateway (auth off) with a small body limit and shallow JSON depth."""
    settings = make_settings(
        test_keys,
        limits=LimitsSettings(max_body_bytes=LIMIT, max_json_depth=8, max_json_string_chars=1000),
    )
    async with running_gateway(settings) as client:
        yield client


async def test_declared_oversize_body_is_refused(limited, mocked: MockedSigners):
    """A Content-Length above the limit gets 413 problem+json and reaches no signer."""
    body = orjson.dumps({"pad": "x" * LIMIT})
    response = await limited.post(
        "/v1/dcc", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "body-too-large")
    assert mocked.signing_calls() == 0


async def test_chunked_oversize_body_is_refused(limited, mocked: MockedSigners):
    """A chunked body (no Content-Length) over the limit gets 413 and reaches no signer."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b" " * 1024

    response = await limited.post(
        "/v1/dcc", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "body-too-large")
    assert mocked.signing_calls() == 0


async def test_chunked_small_body_passes(limited, mocked: MockedSigners):
    """A chunked body within the limit is replayed to the route intact."""
    raw = orjson.dumps(eu_vaccination())
    assert len(raw) < LIMIT

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 100):
            yield raw[start : start + 100]

    response = await limited.post(
        "/v1/dcc", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_non_json_bodies_are_refused(limited, mocked: MockedSigners, content_type):
    """A POST body that is not application/json (UTF-8) gets 415 before it is read."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await limited.post("/v1/dcc", content=b'{"a": 1}', headers=headers)
    assert_problem(response, 415, "unsupported-media-type")
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/dcc"), ("GET", "/v1/keys"), ("GET", "/readyz")]
)
@pytest.mark.parametrize("second", ["text/plain", "application/json"])
async def test_a_repeated_content_type_field_is_refused(
    limited, mocked: MockedSigners, method, path, second
):
    """Two Content-Type fields get 400 naming it before the body is read, even when alike."""
    fields = [("Content-Type", "application/json"), ("Content-Type", second)]
    body = orjson.dumps(eu_vaccination()) if method == "POST" else None
    response = await limited.request(method, path, content=body, headers=fields)
    problem = assert_problem(response, 400, "bad-request")
    assert "Content-Type header field is repeated" in problem["detail"]
    assert response.headers["connection"] == "close"
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("second", ["gateway.example", "other.example"])
async def test_a_repeated_host_field_is_refused(limited, mocked: MockedSigners, second):
    """Two Host fields get 400 naming it (RFC 9112 3.2), even when alike; no signer is called."""
    fields = [("Host", "gateway.example"), ("Host", second), ("Content-Type", "application/json")]
    response = await limited.post("/v1/dcc", content=orjson.dumps(eu_vaccination()), headers=fields)
    problem = assert_problem(response, 400, "bad-request")
    assert "Host header field is repeated" in problem["detail"]
    assert response.headers["connection"] == "close"
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1%2Fdcc"), ("POST", "/v1%2fdomestic/static"), ("GET", "/v1%2Fkeys")],
)
async def test_a_path_with_an_encoded_slash_is_refused(
    limited, mocked: MockedSigners, method, path
):
    """`/v1%2Fdcc` is one segment to a proxy in front, not the route `/v1/dcc`: 400, unsigned."""
    body = orjson.dumps(eu_vaccination()) if method == "POST" else None
    response = await limited.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 400, "bad-request")
    assert problem["detail"] == (
        "the path holds an encoded slash (%2F), which no path of the gateway has"
    )
    assert mocked.signing_calls() == 0


async def test_an_encoded_slash_in_the_query_is_no_matter(limited, mocked: MockedSigners):
    """Only the path is checked: a `%2F` in the query string is left alone."""
    response = await limited.post("/v1/dcc?next=%2Fhome", json=eu_vaccination())
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("host", [b"[::1", b"gateway example", b"user@gateway", b"gw/x", b"\xe9"])
async def test_a_host_field_that_is_no_host_is_refused(limited, mocked: MockedSigners, host):
    """RFC 9112 3.2: a Host field with an invalid value is a 400, as a repeated one; unsigned."""
    fields = [(b"Host", host), (b"Content-Type", b"application/json")]
    response = await limited.post("/v1/dcc", content=orjson.dumps(eu_vaccination()), headers=fields)
    problem = assert_problem(response, 400, "bad-request")
    assert problem["detail"] == "the Host header field holds no host name or address (RFC 9110 7.2)"
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    "host",
    [b"gateway.test", b"10.0.0.5:8081", b"[::1]:8080", b"my_service.ns:80", b"gateway.test:", b""],
)
async def test_a_host_field_naming_a_host_is_taken(limited, mocked: MockedSigners, host):
    """A name, an IPv4 or bracketed IPv6 address, with or without a port (or empty) is a host.

    RFC 3986's port is any number of digits, none included: `gateway.test:` names a host.
    """
    fields = [(b"Host", host), (b"Content-Type", b"application/json")]
    response = await limited.post("/v1/dcc", content=orjson.dumps(eu_vaccination()), headers=fields)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("coding", ["gzip", "gzip, chunked", "chunked, gzip"])
@pytest.mark.parametrize("body", [b"", orjson.dumps(eu_vaccination())])
async def test_a_transfer_coding_besides_chunked_is_refused_whatever_the_framing(
    limited, mocked: MockedSigners, coding, body
):
    """The body limits refuse any transfer coding but chunked themselves, framed or not.

    With a Content-Length beside it the body was read as identity bytes and signed; with a
    length of 0 the request passed on as bodiless, to a route that read what never came.
    httptools refuses such framing; another server need not.
    """
    headers = {"Transfer-Encoding": coding, "Content-Type": "application/json"}
    response = await limited.post("/v1/dcc", content=body, headers=headers)
    problem = assert_problem(response, 400, "bad-request")
    assert problem["detail"] == "a request body may be chunked, and have no other transfer coding"
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("charset", ["UTF-8", "utf8", "UTF8"])
async def test_json_with_charset_utf8_is_accepted(limited, mocked: MockedSigners, charset: str):
    """`application/json; charset=utf-8` is JSON, and so is `utf8`, the label many clients write.

    `utf8` was answered 415, though it names the encoding the body is read in.
    """
    response = await limited.post(
        "/v1/dcc",
        content=orjson.dumps(eu_vaccination()),
        headers={"Content-Type": f"application/json; charset={charset}"},
    )
    assert response.status_code == 200, response.text


async def test_deep_json_is_refused(limited, mocked: MockedSigners):
    """JSON nested deeper than the limit gets 422 without reaching a parser that could recurse."""
    body = b"[" * 3000 + b"]" * 3000
    response = await limited.post(
        "/v1/dcc", content=body[:LIMIT] if len(body) > LIMIT else body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    problem = assert_problem(response, 422, "validation-failed")
    assert problem["errors"] == [{"loc": ["body"], "msg": problem["detail"]}]


async def test_json_deeper_than_the_parser_goes_is_refused_as_too_deep(
    limited, mocked: MockedSigners
):
    """JSON nested past orjson's own 1024 levels is refused for its depth, not as "not JSON".

    It is valid JSON: the caller was sent looking for a syntax error it did not have.
    """
    body = b'{"dcc": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    response = await limited.post(
        "/v1/dcc", content=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422, "validation-failed")
    assert problem["detail"] == "the JSON nests deeper than 8 levels"
    assert mocked.signing_calls() == 0


async def test_deep_but_small_json_is_refused(limited):
    """Nine levels of nesting (limit 8) is refused; the answer names the rule, not the body."""
    body = orjson.dumps({"dcc": [[[[[[[["Zyxwvutsrq"]]]]]]]]})
    response = await limited.post(
        "/v1/dcc", content=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, 422)
    assert "deeper than 8" in problem["detail"]
    assert "Zyxwvutsrq" not in response.text


async def test_long_strings_are_refused(limited):
    """A string longer than the limit is refused with 422."""
    body = orjson.dumps({"dcc": {"nam": {"fn": "Q" * 1001}}})
    response = await limited.post(
        "/v1/dcc", content=body, headers={"Content-Type": "application/json"}
    )
    assert "longer than 1000" in assert_problem(response, 422)["detail"]


async def test_invalid_json_is_not_echoed(limited):
    """A body that is not JSON gets 422 that quotes none of it."""
    body = b'{"dcc": {"nam": {"fn": "Zyxwvutsrq", "dob": "1931-02-03"'
    response = await limited.post(
        "/v1/dcc", content=body, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation-failed")
    assert "Zyxwvutsrq" not in response.text
    assert "1931-02-03" not in response.text


async def test_pydantic_errors_do_not_echo_input(gateway):
    """A schema violation answers with locations and messages only, not the submitted values."""
    body = eu_vaccination()
    body["dcc"]["nam"]["fn"] = "Zyxwvutsrq\u0007"
    body["dcc"]["dob"] = "1931-02-30"
    body["unexpected"] = "1931-02-03 Zyxwvutsrq"
    response = await gateway.post("/v1/dcc", json=body)
    assert_problem(response, 422)
    assert "Zyxwvutsrq" not in response.text
    assert "1931-02" not in response.text
    assert '"input"' not in response.text


async def test_control_characters_in_names_are_refused(gateway, mocked: MockedSigners):
    """A control character in a name is a 422 at that name; nothing is signed."""
    body = eu_vaccination()
    body["dcc"]["nam"]["gn"] = "An\u0000na"
    response = await gateway.post("/v1/dcc", json=body)
    problem = assert_problem(response, 422)
    assert ["body", "dcc", "nam", "gn"] in [e["loc"] for e in problem["errors"]]
    assert mocked.signing_calls() == 0


async def test_body_less_post_passes(limited, mocked: MockedSigners):
    """A POST without a body (prepare-issue) needs no content type."""
    response = await limited.post("/v1/domestic/prepare-issue")
    assert response.status_code == 200, response.text


async def test_largest_valid_request_fits_default_limit(test_keys, mocked: MockedSigners):
    """The largest body the schema allows (100 domestic, 10 EU, 90,000-char commitment) fits."""
    from tests.api.bodies import (  # noqa: PLC0415 - local to this one test
        domestic_attributes,
        with_own_uvcis,
    )

    body = {
        "stoken": "0" * 64,
        "issueCommitmentMessage": "A" * 90_000,
        "domestic": [domestic_attributes(category="3") for _ in range(100)],
        "european": with_own_uvcis(*[eu_vaccination()] * 10),
    }
    assert len(orjson.dumps(body)) > 64 * 1024
    async with running_gateway(make_settings(test_keys)) as client:
        response = await client.post("/v1/credentials", json=body)
    assert response.status_code != 413
    assert response.status_code != 422 or "limited" not in response.text


REPEATED_KEY = "an object repeats a key"


def _repeating(body: dict[str, Any], before: bytes, member: bytes) -> bytes:
    """`body` as JSON with `member` (a key that `before` names again) put in just before it."""
    raw = orjson.dumps(body)
    assert raw.count(before) == 1
    return raw.replace(before, member + before)


def _static() -> dict[str, Any]:
    return {"credentialAttributes": domestic_attributes()}


def _print() -> dict[str, Any]:
    return {"domestic": domestic_attributes(), "european": eu_vaccination()}


def _credentials() -> dict[str, Any]:
    """A /v1/credentials body with the example's session: one no gateway opened."""
    return {**examples.CREDENTIALS, "domestic": [domestic_attributes()]}


#: Route, body, and where to repeat which key: `member` goes just before `before`.
REPEATS: dict[str, tuple[str, Callable[[], dict[str, Any]], bytes, bytes]] = {
    "dcc-top": ("/v1/dcc", eu_vaccination, b'"keyUsage":', b'"keyUsage":"test",'),
    "dcc-name": ("/v1/dcc", eu_vaccination, b'"fn":', b'"fn":"Zyxwvutsrq",'),
    "dcc-vaccination": ("/v1/dcc", eu_vaccination, b'"dn":', b'"dn":1,'),
    "dcc-escaped-key": ("/v1/dcc", eu_vaccination, b'"dob":', b'"\\u0064ob":"1931-02-03",'),
    "static-attributes": ("/v1/domestic/static", _static, b'"isSpecimen":', b'"isSpecimen":"1",'),
    "print-top": ("/v1/print", _print, b'"european":', b'"european":null,'),
    "print-domestic": ("/v1/print", _print, b'"isSpecimen":', b'"isSpecimen":"1",'),
    "credentials-top": ("/v1/credentials", _credentials, b'"stoken":', b'"stoken":"Zyxwvutsrq",'),
    "credentials-second-eu": (
        "/v1/credentials",
        _credentials,
        b'"keyUsage":"test"',
        b'"keyUsage":"vaccination",',
    ),
    "prepare-issue-ignored-body": (
        "/v1/domestic/prepare-issue",
        lambda: {"a": 2},
        b'"a":',
        b'"a":1,',
    ),
}


@pytest.mark.parametrize("case", REPEATS)
async def test_a_key_repeated_within_one_object_is_refused(
    gateway, mocked: MockedSigners, case: str
):
    """A key named twice in one object, at the top or nested, is a 422 before any signer.

    Parsers differ on which of the two counts: the gateway signs neither. Nothing of the body
    is quoted, and a session named in it is not even looked up (no 401).
    """
    route, body, before, member = REPEATS[case]
    raw = _repeating(body(), before, member)
    response = await gateway.post(route, content=raw, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 422, "validation-failed")
    assert problem["detail"] == REPEATED_KEY
    assert problem["errors"] == [{"loc": ["body"], "msg": REPEATED_KEY}]
    assert "Zyxwvutsrq" not in response.text
    assert "1931-02" not in response.text  # a request id (hex) may hold "1931"
    assert mocked.signing_calls() == 0


async def test_a_repeated_key_in_a_body_over_16_kib_is_refused(gateway, mocked: MockedSigners):
    """A body big enough to be checked in a worker thread is refused just the same."""
    member = b'"keyUsage":"%s",' % (b"x" * (20 * 1024))
    raw = _repeating(eu_vaccination(), b'"keyUsage":', member)
    assert len(raw) > 16 * 1024
    response = await gateway.post(
        "/v1/dcc", content=raw, headers={"Content-Type": "application/json"}
    )
    assert assert_problem(response, 422, "validation-failed")["detail"] == REPEATED_KEY
    assert mocked.signing_calls() == 0


async def test_the_same_key_in_different_objects_is_accepted(gateway, mocked: MockedSigners):
    """Keys are unique per object: two EU parts naming the same members are signed."""
    prepared = await gateway.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    body = {
        "stoken": prepared.json()["stoken"],
        "issueCommitmentMessage": commitment(),
        "domestic": [domestic_attributes()],
        "european": [eu_vaccination(), eu_test()],
    }
    raw = orjson.dumps(body)
    assert raw.count(b'"keyUsage":') == raw.count(b'"fn":') == 2
    response = await gateway.post(
        "/v1/credentials", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert mocked.get_credential.call_count == 2
