"""Request targets and body framing as sent on the wire: raw requests to a real `serve` process.

A client library sends only the framing it chose itself; the gateway must answer whatever
httptools lets through, route on the path as a proxy in front reads it, and read a body only
as the bytes the caller declared them to be.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from signing_gateway.api import examples
from tests.support.fake_signer_process import FakeSignerProcess
from tests.support.raw_http import exchange_answer

BODY = orjson.dumps(examples.EU_VACCINATION)
HEAD = b"POST /v1/dcc HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
JSON = b"Content-Type: application/json\r\n"


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def _signed(signer: FakeSignerProcess) -> int:
    totals = signer.stats()["totals"]
    return sum(sum(outcomes.values()) for outcomes in totals.values())


def _port(gateway_url: str) -> int:
    return int(gateway_url.rsplit(":", 1)[1])


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"identity, chunked", b"x-custom, chunked"])
async def test_a_transfer_coding_besides_chunked_is_refused(
    gateway_url: str, eu_signer: FakeSignerProcess, coding
):
    """`gzip, chunked`: httptools frames the chunks, but the gateway would not undo the gzip.

    400 problem+json before the body is read, and nothing signed; only `chunked` is taken.
    """
    before = _signed(eu_signer)
    framing = b"Transfer-Encoding: %s\r\n\r\n" % coding
    status, headers, body = await exchange_answer(
        _port(gateway_url), HEAD + JSON + framing + _chunked(BODY)
    )
    assert (status, headers["content-type"]) == (400, "application/problem+json")
    problem = orjson.loads(body)
    assert problem["type"].endswith("/bad-request")
    assert problem["detail"] == "a request body may be chunked, and have no other transfer coding"
    assert _signed(eu_signer) == before
    status, _, _ = await exchange_answer(
        _port(gateway_url), HEAD + JSON + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(BODY)
    )
    assert status == 200
    assert _signed(eu_signer) == before + 1


@pytest.mark.parametrize("coding", [b"gzip", b"br", b"identity, gzip", b"x-unknown"])
async def test_a_content_coded_body_is_refused_415(
    gateway_url: str, eu_signer: FakeSignerProcess, coding
):
    """A body declared content-coded is 415 naming `identity` in Accept-Encoding, unsigned.

    The gateway decodes no content coding: it would have signed the bytes as sent (here plain
    JSON, which a proxy in front would have taken for compressed data).
    """
    before = _signed(eu_signer)
    coded = b"Content-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (coding, len(BODY))
    status, headers, body = await exchange_answer(_port(gateway_url), HEAD + JSON + coded + BODY)
    assert (status, headers["content-type"]) == (415, "application/problem+json")
    assert headers["accept-encoding"] == "identity"
    assert orjson.loads(body)["type"].endswith("/unsupported-media-type")
    assert _signed(eu_signer) == before
    plain = b"Content-Encoding: identity\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    status, _, _ = await exchange_answer(_port(gateway_url), HEAD + JSON + plain + BODY)
    assert status == 200
    assert _signed(eu_signer) == before + 1


async def test_an_encoded_slash_does_not_route_to_a_signer(
    gateway_url: str, eu_signer: FakeSignerProcess
):
    """The server decodes `/v1%2Fdcc` into `/v1/dcc`; the gateway answers 400, signs nothing."""
    before = _signed(eu_signer)
    request = b"POST /v1%%2Fdcc HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n%s%s" % (
        JSON,
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    )
    status, headers, body = await exchange_answer(_port(gateway_url), request)
    assert (status, headers["content-type"]) == (400, "application/problem+json")
    assert "encoded slash" in orjson.loads(body)["detail"]
    assert _signed(eu_signer) == before


async def test_an_http_1_1_request_without_host_is_refused(
    gateway_url: str, eu_signer: FakeSignerProcess
):
    """RFC 9112 3.2: an HTTP/1.1 request lacking Host is a 400, whatever it asks; nothing signed.

    HTTP/1.0 has no Host to require, and liveness (`/healthz`) reads no header field.
    """
    before = _signed(eu_signer)
    close = b"Connection: close\r\n"
    post = b"POST /v1/dcc HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
        close,
        JSON,
        len(BODY),
        BODY,
    )
    for request in (post, b"GET /v1/keys HTTP/1.1\r\n%s\r\n" % close):
        status, headers, body = await exchange_answer(_port(gateway_url), request)
        assert (status, headers["content-type"]) == (400, "application/problem+json")
        assert orjson.loads(body)["detail"] == (
            "the Host header field is missing: an HTTP/1.1 request must carry it"
        )
    assert _signed(eu_signer) == before
    for request in (b"GET /v1/keys HTTP/1.0\r\n\r\n", b"GET /healthz HTTP/1.1\r\n%s\r\n" % close):
        status, _, _ = await exchange_answer(_port(gateway_url), request)
        assert status == 200


@pytest.mark.parametrize("version", [b"2.0", b"0.9"])
async def test_a_request_line_naming_another_http_version_is_refused(
    gateway_url: str, eu_signer: FakeSignerProcess, version: bytes
):
    """A request line naming HTTP/2.0 or HTTP/0.9, which httptools takes, is refused 400.

    Served, such a request went without the Host an HTTP/1.1 one must carry, and was signed.
    """
    before = _signed(eu_signer)
    close = b"Connection: close\r\n"
    post = b"POST /v1/dcc HTTP/%s\r\nHost: gateway\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
        version,
        close,
        JSON,
        len(BODY),
        BODY,
    )
    for request in (post, b"GET /v1/keys HTTP/%s\r\n%s\r\n" % (version, close)):
        status, headers, body = await exchange_answer(_port(gateway_url), request)
        assert (status, headers["content-type"]) == (400, "application/problem+json"), body
        problem = orjson.loads(body)
        assert problem["type"].endswith("/bad-request")
        assert problem["detail"] == (
            f"the request line names HTTP/{version.decode()}: the gateway speaks HTTP/1.1"
        )
        assert problem["requestId"] == headers["x-request-id"]
    assert _signed(eu_signer) == before


async def test_a_content_length_with_leading_zeros_is_its_value(
    gateway_url: str, eu_signer: FakeSignerProcess
):
    """`Content-Length: 000…0350` is 350 bytes, not a body past the limit; `00` is no body.

    HTTP takes any number of digits; only the value counts against `max_body_bytes`.
    """
    before = _signed(eu_signer)
    padded = b"Content-Length: %s%d\r\n\r\n" % (b"0" * 20, len(BODY))
    status, _, _ = await exchange_answer(_port(gateway_url), HEAD + JSON + padded + BODY)
    assert status == 200
    assert _signed(eu_signer) == before + 1
    request = (
        b"POST /v1/domestic/prepare-issue HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
        b"Content-Length: 00\r\n\r\n"
    )  # bodiless, so it needs no Content-Type
    status, _, _ = await exchange_answer(_port(gateway_url), request)
    assert status == 200


EXPECT = b"Expect: 100-continue\r\n"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (JSON + b"Content-Length: 50000000\r\n", 413),
        (b"Content-Type: text/plain\r\nContent-Length: 10\r\n", 415),
        (JSON + JSON + b"Content-Length: 10\r\n", 400),
    ],
    ids=["too-large", "not-json", "content-type-twice"],
)
async def test_a_refusal_before_the_body_needs_no_body_even_when_one_is_expected(
    gateway_url: str, fields, status
):
    """`Expect: 100-continue` refused from its head: the refusal, no 100, then the end.

    The caller never sends its body: the answer comes at once, says `Connection: close`, and
    the connection ends after it, instead of waiting for a body the caller holds back.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(gateway_url))
    try:
        writer.write(HEAD.replace(b"Connection: close\r\n", b"") + fields + EXPECT + b"\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()  # to EOF, the body never sent
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\nconnection: close" in head.lower()
    assert orjson.loads(body)["status"] == status


async def test_a_body_the_gateway_reads_is_asked_for_with_100_continue(
    gateway_url: str, eu_signer: FakeSignerProcess
):
    """Pin that a request expecting 100-continue is told to send its body, then answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(gateway_url))
    try:
        length = b"Content-Length: %d\r\n" % len(BODY)
        writer.write(HEAD + JSON + length + EXPECT + b"\r\n")
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(BODY)
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
