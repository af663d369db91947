"""Gateway errors: headers well-formed whatever they were built from; 5xx bodies say nothing."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, HTTPException

from signing_gateway.api import problems
from signing_gateway.api.problems import allow_with_head, install_problem_handlers
from signing_gateway.domain.errors import FieldError
from signing_gateway.errors import (
    PROBLEM_CONTENT_TYPE,
    RequestInvalid,
    SignerUnavailable,
    send_problem_503,
)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(0.2, "1"), (7.0, "7"), (7.4, "8"), (float("inf"), "1"), (float("nan"), "1"), (-5.0, "1")],
)
def test_signer_unavailable_retry_after_is_whole_seconds_at_least_one(retry_after, expected):
    """Retry-After is whole seconds rounded up, at least 1, and 1 for a value not a number."""
    error = SignerUnavailable("european: down", part="european", retry_after=retry_after)
    assert error.headers() == {"Retry-After": expected}


@pytest.mark.parametrize(
    ("status", "title", "detail"),
    [
        (404, "Not Found", "no such thing at /raise"),
        (405, "Method Not Allowed", "no such thing at /raise"),
        (500, "Internal Server Error", "Internal Server Error"),
        (503, "Service Unavailable", "Service Unavailable"),
        (599, "HTTP error", "HTTP error"),
    ],
    ids=[
        "4xx-says-why",
        "405-has-its-title",
        "500-says-its-title",
        "5xx-says-its-title",
        "unregistered-status",
    ],
)
async def test_an_http_exception_of_5xx_says_only_its_title(status, title, detail):
    """A 4xx HTTPException passes its detail on; a 5xx says its title, not what was raised."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/raise")
    async def raise_it() -> None:
        said = "no such thing at /raise" if status < 500 else "pool of http://signer.test/ dry"
        raise HTTPException(status, detail=said)

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test")
    async with client:
        response = await client.get("/raise")
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert (body["type"], body["title"], body["status"]) == ("about:blank", title, status)
    assert body["detail"] == detail


@pytest.mark.parametrize(
    ("value", "shown"), [("Ab", "Ab"), ("Abc", "(value withheld)")], ids=["2-kept", "3-withheld"]
)
def test_a_personal_value_of_three_characters_is_withheld_even_unquoted(value, shown):
    """Pin the edge: from 3 characters a personal value is withheld wherever a message names it.

    A shorter one is withheld only where quoted: a bare "1" would mangle the text around it.
    """
    error = {"loc": ("body", "dcc", "nam", "fnt"), "msg": f"got {value} here", "input": value}
    assert problems._message(error) == f"got {shown} here"


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        ("PUT, POST, PATCH, OPTIONS, GET, DELETE", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
        ("POST", "POST"),
        ("GET,, POST ,", "GET, HEAD, POST"),
    ],
)
def test_allow_lists_the_methods_sorted_with_head_beside_get(allow, expected):
    """A 405's Allow is sorted, one entry per method, with HEAD wherever GET is."""
    assert allow_with_head(allow) == expected


def test_advice_follows_the_detail_after_a_semicolon():
    """Pin the detail's shape: what went wrong, then `; ` and what to do, in that order."""
    error = SignerUnavailable("european[0]: calls are paused", part="european[0]")
    error.add_advice("retry with the same stoken")
    assert error.detail == "european[0]: calls are paused; retry with the same stoken"


def test_a_validation_failure_names_its_fields_in_its_detail():
    """Pin that a 422's detail names where its errors are, and says how many there are.

    It said only "2 validation error(s)": a caller reading the detail alone (a log line, a
    client that shows it) did not learn which field to fix.
    """
    errors = [FieldError(loc=("body", "dob"), msg="bad"), FieldError(loc=("body",), msg="bad")]
    refused = RequestInvalid(errors)
    assert refused.detail == "2 validation errors, at body.dob and body"
    assert refused.extensions().keys() == {"errors"}  # no `part`: the request has none
    assert RequestInvalid(errors, detail="the body is not JSON").detail == "the body is not JSON"
    one = RequestInvalid([FieldError(loc=("body", "v", 0, "dn"), msg="Must be 1 or more")])
    assert one.detail == "body.v.0.dn: Must be 1 or more"


def test_a_validation_failure_names_its_first_fields_and_counts_the_rest():
    """The detail stays short however many errors `errors` lists: five named, the rest counted."""
    errors = [FieldError(loc=("body", "domestic", i, "validFrom"), msg="bad") for i in range(7)]
    assert RequestInvalid(errors).detail == (
        "7 validation errors, at body.domestic.0.validFrom, body.domestic.1.validFrom, "
        "body.domestic.2.validFrom, body.domestic.3.validFrom, body.domestic.4.validFrom "
        "and 2 more"
    )


def test_a_validation_failure_lists_its_first_fifty_errors_and_counts_them_all():
    """Pin that `errors` holds at most 50 entries while the detail counts every error.

    15,000 unknown keys in a body were answered with 15,001 errors (964 KB).
    """
    errors = [
        FieldError(loc=("body", f"k{i}"), msg="Extra inputs are not permitted") for i in range(120)
    ]
    refused = RequestInvalid(errors)
    assert [e["loc"] for e in refused.extensions()["errors"]] == [
        ["body", f"k{i}"] for i in range(50)
    ]
    assert refused.detail == (
        "120 validation errors, at body.k0, body.k1, body.k2, body.k3, body.k4 and 115 more; "
        "errors lists the first 50"
    )
    given_first = RequestInvalid(errors[:50], total=120)
    assert len(given_first.extensions()["errors"]) == 50
    assert given_first.detail.startswith("120 validation errors, at body.k0")
    assert given_first.detail.endswith("and 115 more; errors lists the first 50")


def test_a_validation_failure_that_may_miss_errors_says_at_least():
    """Pin "at least N" and the note on `errors` when rules went unchecked, even at exactly 50.

    At 50 errors the detail said "50 validation errors ... and 45 more" with no note, so a
    caller took the list for complete while the rules over several fields were never asked.
    """
    errors = [
        FieldError(loc=("body", f"k{i}"), msg="Extra inputs are not permitted") for i in range(50)
    ]
    refused = RequestInvalid(errors, total=50, at_least=True)
    assert refused.detail == (
        "at least 50 validation errors, at body.k0, body.k1, body.k2, body.k3, body.k4 and "
        "45 more; errors lists the first 50"
    )
    assert RequestInvalid(errors, total=50).detail.startswith("50 validation errors, at body.k0")


def test_a_validation_error_located_nowhere_is_named_the_request():
    """An error with an empty location is "the request" in the detail, never a bare colon."""
    whole = FieldError(loc=(), msg="must not be empty")
    assert RequestInvalid([whole]).detail == "the request: must not be empty"
    both = RequestInvalid([whole, FieldError(loc=("body", "dob"), msg="bad")])
    assert both.detail == "2 validation errors, at the request and body.dob"


@pytest.mark.parametrize("close", [False, True])
async def test_a_503_before_routing_closes_the_connection_only_when_asked(close: bool):
    """Pin `send_problem_503`: `Retry-After: 1`, and `Connection: close` only with `close`.

    Draining closes the connection, so the next request goes to another instance; an overload
    refusal keeps it, as the caller may send again on it.
    """
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"path": "/v1/dcc", "state": {"request_id": "r-1"}}
    await send_problem_503(
        send, scope, slug="overloaded", title="Overloaded", detail="busy", close=close
    )
    start, body = sent
    headers = dict(start["headers"])
    assert (start["status"], headers[b"retry-after"]) == (503, b"1")
    assert headers.get(b"connection") == (b"close" if close else None)
    problem = orjson.loads(body["body"])
    assert (problem["type"], problem["instance"], problem["requestId"]) == (
        "https://signing-gateway.dev/problems/overloaded",
        "/v1/dcc",
        "r-1",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/v1/dcc", "/v1/dcc"),
        ("/" + "a" * 9, "/" + "a" * 9),
        ("/" + "a" * 10, "/aaaaaa..."),
        ("/aaaaa\u00e9", "/aaaaa..."),
        ("/aa\n\tb", "/aa%0A%09b"),
    ],
    ids=["plain", "at-the-limit", "over-it", "no-half-escape", "controls-encoded"],
)
def test_quoted_text_is_printable_ascii_within_the_limit(text: str, expected: str):
    """Pin the quoting: percent-encoded past the path characters, cut whole with "...".

    The cut never leaves half an escape ("%C" of "%C3%A9").
    """
    assert problems.quoted(text, 10) == expected
    assert len(problems.quoted(text, 10)) <= 10
