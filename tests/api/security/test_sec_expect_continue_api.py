"""A request that holds its body back (`Expect: 100-continue`) is authenticated from its head.

Served by uvicorn on 127.0.0.1, as only a server sends `100 Continue`: it does so when the app
first reads the body. A caller without a valid token was asked for its body (up to
`max_body_bytes`) and only then answered 401.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import pytest

from signing_gateway.app import create_app
from signing_gateway.security.settings import ALL_SCOPES, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.bodies import domestic_attributes, eu_test, eu_vaccination
from tests.api.observability.scrape import Scrape
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, served_gateway

BODY = orjson.dumps(eu_vaccination())
EXPECT = b"Expect: 100-continue\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _served(test_keys: SignerKeys, auth: AuthSettings) -> AbstractAsyncContextManager[int]:
    """The gateway, requiring tokens, served by uvicorn on 127.0.0.1: its port."""
    return served_gateway(create_app(make_settings(test_keys, auth=auth)))


def _head(path: bytes, authorization: bytes | None, *, expect: bool, body: bytes = BODY) -> bytes:
    fields = b"Host: gateway\r\nContent-Type: application/json\r\n"
    fields += b"Content-Length: %d\r\n" % len(body)
    if authorization is not None:
        fields += b"Authorization: " + authorization + b"\r\n"
    return b"POST " + path + b" HTTP/1.1\r\n" + fields + EXPECT * expect + b"\r\n"


def _closing(head: bytes) -> bytes:
    """`head` asking for the connection to end after its answer."""
    return head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")


async def _read_answer(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One answer: its status line, header fields (names in lower case), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (li.partition(":") for li in lines)}
    body = await reader.readexactly(int(fields.get("content-length", "0")))
    return status_line.encode(), fields, body


async def _exchange(
    port: int, head: bytes, *, send_body_when_asked: bool, body: bytes = BODY
) -> tuple[bytes, bytes]:
    """Send `head`; send the body once asked (or at once); what came until the end, and more.

    Returns what was read before the body was sent (b"" if it was sent at once) and the rest,
    to the end of the connection, which the answer asks for.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head if send_body_when_asked else head + body)
        async with asyncio.timeout(10):
            before = b""
            if send_body_when_asked:
                before = await reader.readuntil(b"\r\n\r\n")
                if before == CONTINUE:
                    writer.write(body)
            return before, await reader.read()
    finally:
        writer.close()


def _problem(answer: bytes) -> tuple[bytes, dict[str, str], dict[str, Any]]:
    status_line, _, rest = answer.partition(b"\r\n")
    head, _, body = rest.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status_line, fields, orjson.loads(body)


def _assert_answered_from_the_head(status: int, answer: bytes, sent_whole: bytes) -> None:
    """`answer` is `status` from the head, as `sent_whole` (the request with its body) got.

    No `100 Continue` before it (the body was never asked for), `Connection: close`, and the
    problem, `WWW-Authenticate` and media type of the request sent with its body.
    """
    assert not answer.startswith(b"HTTP/1.1 100 "), answer[:40]
    status_line, fields, problem = _problem(answer)
    assert status_line.startswith(b"HTTP/1.1 %d " % status)
    assert fields["connection"] == "close"
    _, whole_fields, whole_problem = _problem(sent_whole)
    assert fields["www-authenticate"] == whole_fields["www-authenticate"]
    assert fields["content-type"] == whole_fields["content-type"] == "application/problem+json"
    del problem["requestId"], whole_problem["requestId"]
    assert problem == whole_problem


def _cases(issuer: LocalTokenIssuer) -> dict[str, bytes | None]:
    expired = issuer.mint(subject="backend-1", scopes=list(ALL_SCOPES), now=time.time() - 7200)
    return {
        "no-authorization": None,
        "another-scheme": b"Basic YmFja2VuZDpzZWNyZXQ=",
        "bearer-without-token": b"Bearer",
        "not-a-token": b"Bearer not-a-token",
        "expired": b"Bearer " + expired.encode(),
    }


@pytest.mark.parametrize(
    "case", ["no-authorization", "another-scheme", "bearer-without-token", "not-a-token", "expired"]
)
async def test_a_caller_without_a_valid_token_is_refused_401_before_its_body(
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    token_issuer: LocalTokenIssuer,
    case: str,
) -> None:
    """401 at once, without `100 Continue`, saying `Connection: close`; then the end.

    The problem and `WWW-Authenticate` are those of the same request sent with its body.
    """
    authorization = _cases(token_issuer)[case]
    async with _served(test_keys, auth_settings) as port:
        before, refused = await _exchange(
            port, _head(b"/v1/dcc", authorization, expect=True), send_body_when_asked=True
        )
        _, sent_whole = await _exchange(
            port,
            _closing(_head(b"/v1/dcc", authorization, expect=False)),
            send_body_when_asked=False,
        )
    _assert_answered_from_the_head(401, before + refused, sent_whole)
    assert mocked.signing_calls() == 0


async def test_a_caller_with_a_valid_token_is_asked_for_its_body_and_served(
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    full_token: str,
) -> None:
    """Pin that a valid token gets `100 Continue`, then its answer, and signs once."""
    async with _served(test_keys, auth_settings) as port:
        authorization = b"Bearer " + full_token.encode()
        before, rest = await _exchange(
            port, _closing(_head(b"/v1/dcc", authorization, expect=True)), send_body_when_asked=True
        )
    assert before == CONTINUE
    assert rest.startswith(b"HTTP/1.1 200 ")
    assert mocked.signing_calls() == 1


async def test_a_path_no_route_takes_is_left_to_the_router(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings
) -> None:
    """Pin that no route's request is not refused 401 from its head: it is a 404, as sent whole."""
    async with _served(test_keys, auth_settings) as port:
        head = _closing(_head(b"/v1/nowhere", None, expect=True))
        before, rest = await _exchange(port, head, send_body_when_asked=True)
    assert before == CONTINUE
    assert rest.startswith(b"HTTP/1.1 404 ")


async def test_a_method_no_route_takes_is_left_to_the_router(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings
) -> None:
    """A `/v1` path asked with a method none of its routes takes is a 405, as sent whole.

    The route matches the path only (a partial match): it does not take the request, so its
    authentication does not answer it from the head.
    """
    async with _served(test_keys, auth_settings) as port:
        head = _closing(_head(b"/v1/dcc", None, expect=True)).replace(b"POST ", b"PUT ")
        before, rest = await _exchange(port, head, send_body_when_asked=True)
    assert before == CONTINUE
    assert rest.startswith(b"HTTP/1.1 405 "), rest[:40]
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (b"Content-Type: text/plain\r\n", 415),
        (b"Content-Type: application/json\r\n" + b"Authorization: Bearer a\r\n" * 2, 400),
    ],
    ids=["not-json", "authorization-twice"],
)
async def test_what_the_head_refuses_first_comes_before_the_token_check(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings, fields, status
) -> None:
    """Pin the order: a body unfit by its head, or a field given twice, before the 401."""
    head = _head(b"/v1/dcc", None, expect=True)
    head = head.replace(b"Content-Type: application/json\r\n", fields)
    async with _served(test_keys, auth_settings) as port:
        before, rest = await _exchange(port, head, send_body_when_asked=True)
    status_line, answer_fields, _ = _problem(before + rest)
    assert status_line.startswith(b"HTTP/1.1 %d " % status)
    assert "www-authenticate" not in answer_fields
    assert answer_fields["connection"] == "close"


#: A route, a body it takes, and the scopes of a token without what the route asks before
#: reading the body (for `/v1/print` and `/v1/credentials`: one of the signing scopes).
FORBIDDEN: dict[str, tuple[bytes, bytes, list[str]]] = {
    "dcc": (b"/v1/dcc", BODY, ["domestic:sign", "keys:read"]),
    "domestic-static": (
        b"/v1/domestic/static",
        orjson.dumps({"credentialAttributes": domestic_attributes()}),
        ["dcc:sign"],
    ),
    "prepare-issue": (b"/v1/domestic/prepare-issue", b"{}", ["dcc:sign"]),
    "print": (b"/v1/print", orjson.dumps({"european": eu_test()}), ["keys:read"]),
    "credentials": (b"/v1/credentials", orjson.dumps({"european": [eu_test()]}), []),
}


def _security_events(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Each security record: its event, the subject it names ("" if none), the path."""
    return [
        (r["security_event"], r.get("subject", ""), r["path"])
        for r in records
        if r.get("logger") == "signing_gateway.security"
    ]


async def _scrape(port: int) -> Scrape:
    """The served gateway's /metrics, read as Prometheus reads it."""
    _, answer = await _exchange(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n",
        body=b"",
        send_body_when_asked=False,
    )
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return Scrape.of(text.decode())


@pytest.mark.parametrize("case", FORBIDDEN)
async def test_a_caller_without_the_routes_scope_is_refused_403_before_its_body(  # noqa: PLR0917 - fixtures and parameter
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    token_issuer: LocalTokenIssuer,
    json_log: Callable[[], list[dict[str, Any]]],
    case: str,
) -> None:
    """403 at once, without `100 Continue`, saying `Connection: close`; refused and counted once.

    The problem, `WWW-Authenticate`, the count of `insufficient-scope` and the security record
    are those of the same request sent with its body, which the route refuses.
    """
    path, body, scopes = FORBIDDEN[case]
    authorization = b"Bearer " + token_issuer.mint(subject="backend-3", scopes=scopes).encode()
    async with _served(test_keys, auth_settings) as port:
        before, refused = await _exchange(
            port,
            _head(path, authorization, expect=True, body=body),
            send_body_when_asked=True,
            body=body,
        )
        after_head = await _scrape(port)
        _, sent_whole = await _exchange(
            port,
            _closing(_head(path, authorization, expect=False, body=body)),
            send_body_when_asked=False,
            body=body,
        )
        after_both = await _scrape(port)
    _assert_answered_from_the_head(403, before + refused, sent_whole)
    assert after_head.value("gateway_auth_failures_total", reason="insufficient-scope") == 1
    assert after_both.value("gateway_auth_failures_total", reason="insufficient-scope") == 2
    route = path.decode()
    assert _security_events(json_log()) == [("auth-forbidden", "backend-3", route)] * 2
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("refusal", ["401", "403"])
async def test_a_refusal_from_the_head_is_counted_under_its_route(  # noqa: PLR0917 - fixtures and parameter
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    token_issuer: LocalTokenIssuer,
    json_log: Callable[[], list[dict[str, Any]]],
    refusal: str,
) -> None:
    """A 401 or 403 from the head is labelled with the route's template, as the route's own.

    So a dashboard or the runbook reading a route's 4xx sees the same whether the caller sent
    `Expect: 100-continue` or not.
    """
    token = token_issuer.mint(scopes=["keys:read"])
    authorization = None if refusal == "401" else b"Bearer " + token.encode()
    async with _served(test_keys, auth_settings) as port:
        for expect in (True, False):
            head = _closing(_head(b"/v1/dcc", authorization, expect=expect))
            await _exchange(port, head, send_body_when_asked=expect)
        metrics = await _scrape(port)
    assert metrics.value("gateway_responses_total", route="/v1/dcc", status=refusal) == 2
    assert metrics.value("gateway_responses_sent_total", route="/v1/dcc", status_class="4xx") == 2
    assert metrics.value("gateway_responses_total", route="unmatched", status=refusal) == 0
    access = [r for r in json_log() if r.get("logger") == "signing_gateway.access"]
    assert [(r["route"], r["status"]) for r in access if r["route"] != "/metrics"] == [
        ("/v1/dcc", int(refusal))
    ] * 2


async def test_the_expectation_is_read_in_any_case(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings
) -> None:
    """`Expect: 100-Continue` is the same expectation (RFC 9110 10.1.1): 401 before the body.

    The server sends `100 Continue` for it in any case; the head check must see it alike.
    """
    head = _head(b"/v1/dcc", None, expect=True).replace(EXPECT, b"Expect: 100-Continue\r\n")
    async with _served(test_keys, auth_settings) as port:
        before, refused = await _exchange(port, head, send_body_when_asked=True)
    answer = before + refused
    assert not answer.startswith(b"HTTP/1.1 100 "), answer[:40]
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:40]
    assert mocked.signing_calls() == 0


@pytest.mark.parametrize("path", [b"/metrics", b"/openapi.json"])
async def test_an_operational_route_is_not_authenticated_from_the_head(
    test_keys: SignerKeys, auth_settings: AuthSettings, path: bytes
) -> None:
    """Pin that a route outside `/v1` stays open to a request holding its body back.

    Only `/v1` routes authenticate: the head check leaves the others to the router.
    """
    head = _closing(_head(path, None, expect=True, body=b"{}")).replace(b"POST ", b"GET ")
    async with _served(test_keys, auth_settings) as port:
        before, rest = await _exchange(port, head, send_body_when_asked=True, body=b"{}")
    assert before == CONTINUE  # asked for, not refused from its head
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:40]


@pytest.mark.parametrize("request_line", [b"GET /v1/keys", b"POST /v1/domestic/prepare-issue"])
async def test_an_expectation_without_a_body_is_authenticated_by_the_route(
    test_keys: SignerKeys, mocked: MockedSigners, auth_settings: AuthSettings, request_line: bytes
) -> None:
    """Pin that a request expecting `100 Continue` but carrying no body is still refused 401.

    No head check runs for it (there is no body to hold back): the route's own dependency
    authenticates it, and must not take the expectation for an authentication made earlier.
    """
    head = request_line + b" HTTP/1.1\r\nHost: gateway\r\nContent-Length: 0\r\n" + EXPECT
    async with _served(test_keys, auth_settings) as port:
        _, answer = await _exchange(
            port, _closing(head + b"\r\n"), send_body_when_asked=False, body=b""
        )
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:40]
    assert mocked.signing_calls() == 0


async def test_a_caller_refused_401_from_the_head_is_counted_and_logged_once(
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    """A 401 from the head counts under its reason and leaves one `auth-failed` record.

    As the route's own dependency does for the same request sent with its body: an operator
    watching refused tokens sees those that never sent a body too.
    """
    async with _served(test_keys, auth_settings) as port:
        await _exchange(port, _head(b"/v1/dcc", None, expect=True), send_body_when_asked=True)
        metrics = await _scrape(port)
    assert metrics.value("gateway_auth_failures_total", reason="missing") == 1
    assert _security_events(json_log()) == [("auth-failed", "", "/v1/dcc")]
    assert mocked.signing_calls() == 0
