"""Signer clients against respx: what reaches the signer, and how every answer is mapped."""

from __future__ import annotations

import gzip
import sys
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import aiohttp
import httpx
import orjson
import pytest

from signing_gateway.signers.answers import MAX_RESPONSE_BYTES
from signing_gateway.signers.domestic import DomesticSignerClient
from signing_gateway.signers.errors import (
    SignerConnectError,
    SignerConnectionLostError,
    SignerMalformedResponseError,
    SignerRejectedError,
    SignerServerError,
    SignerThrottledError,
    SignerTimeoutError,
    sent_nothing,
)
from signing_gateway.signers.eu import EuSignerClient, credential_request
from signing_gateway.signers.failures import MAX_RETRY_AFTER_SECONDS, parse_retry_after
from signing_gateway.signers.http import request_json
from tests.support.credentials import b64, make_domestic_signer, make_dsc, sample_attributes

EXPIRES = datetime(2027, 5, 20, tzinfo=UTC)
DCC = {"ver": "1.3.0", "dob": "1964-08-12", "v": [{"dn": 2}]}
Malformed = SignerMalformedResponseError
GOOD_EU = {"credential": "HC1:ABC", "proofIdentifier": "cHJvb2Y="}
REQUEST_ID = {"X-Request-ID": "req-123"}
#: The longest credential the EU wire model takes (32 KiB).
LONG_HC1 = "HC1:" + "A" * (32 * 1024 - 4)
#: The longest static QR the domestic wire model takes (8 KiB).
LONG_NL2 = "NL2:" + "A" * (8 * 1024 - 4)
PREPARED = {"issuerPkId": "a2lk", "issuerNonce": "bm9uY2U=", "credentialAmount": 3}
ISSUED = {"issueSignatureMessage": {}, "attributes": {"a": "1"}}


async def get_credential(http):
    """Call get_credential with fixed arguments."""
    return await EuSignerClient(http).get_credential(
        key_usage="vaccination", expiration_time=EXPIRES, dcc=DCC, headers=REQUEST_ID
    )


async def test_get_credential_sends_contract_request(http, router):
    """POST /get_credential carries exact JSON content type, request id and the body."""
    route = router.post("/get_credential").respond(200, json=GOOD_EU)
    result = await get_credential(http)
    assert (result.credential, result.proof_identifier) == ("HC1:ABC", "cHJvb2Y=")
    sent = route.calls.last.request
    assert sent.method == "POST"
    assert sent.url.path == "/get_credential"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == "req-123"
    assert orjson.loads(sent.content) == {
        "keyUsage": "vaccination",
        "expirationTime": "2027-05-20T00:00:00Z",
        "dcc": DCC,
    }


async def test_encoded_request_is_sent_byte_for_byte(http, router):
    """`sign` sends an encoded request's bytes as they are, and they read back as its DCC."""
    route = router.post("/get_credential").respond(200, json=GOOD_EU)
    request = credential_request(key_usage="vaccination", expiration_time=EXPIRES, dcc=DCC)
    await EuSignerClient(http).sign(request, headers=REQUEST_ID)
    assert route.calls.last.request.content == request.content
    assert request.dcc() == DCC
    # Held for the whole signer call: no slack beyond the bytes object's own header.
    assert sys.getsizeof(request.content) < len(request.content) + 64


async def test_expiration_time_is_sent_in_utc_whole_seconds(http, router):
    """A non-UTC expiration with fractions is sent as whole-second UTC."""
    route = router.post("/get_credential").respond(200, json=GOOD_EU)
    moment = datetime(2027, 5, 20, 2, 0, 0, 900_000, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=2))
    )
    await EuSignerClient(http).get_credential(key_usage="test", expiration_time=moment, dcc=DCC)
    assert (
        orjson.loads(route.calls.last.request.content)["expirationTime"] == "2027-05-20T02:00:00Z"
    )


async def test_naive_expiration_time_is_refused_before_sending(http, router):
    """A naive datetime is a programming error and nothing reaches the signer."""
    route = router.post("/get_credential").respond(200, json=GOOD_EU)
    with pytest.raises(ValueError, match="timezone"):
        await EuSignerClient(http).get_credential(
            key_usage="test",
            expiration_time=datetime(2027, 1, 1),  # noqa: DTZ001 - naive on purpose
            dcc=DCC,
        )
    assert not route.called


@pytest.mark.parametrize(
    ("response", "error", "status"),
    [
        (httpx.Response(400, text="bad dcc"), SignerRejectedError, 400),
        (httpx.Response(415, text="unsupported"), SignerRejectedError, 415),
        (httpx.Response(429, text="busy"), SignerThrottledError, 429),
        (httpx.Response(503, text="down"), SignerThrottledError, 503),
        (httpx.Response(499, text="closed"), SignerRejectedError, 499),
        (httpx.Response(500, text="boom"), SignerServerError, 500),
        (httpx.Response(599, text="odd"), SignerServerError, 599),
        (httpx.Response(502, text="gw"), SignerServerError, 502),
        (httpx.Response(302, headers={"Location": "http://x.test/"}), Malformed, 302),
        (httpx.Response(300, json=GOOD_EU), Malformed, 300),
        (httpx.Response(199, json=GOOD_EU), Malformed, 199),
        (httpx.Response(200, text="not json"), Malformed, 200),
        (httpx.Response(201, text="not json"), Malformed, 201),
        (httpx.Response(201, json={"credential": "HC1:A"}), Malformed, 201),
        (httpx.Response(200, json={"credential": "HC1:A"}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "extra": 1}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "credential": "HC2:A"}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "credential": "xHC1:A"}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "credential": LONG_HC1 + "A"}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "proofIdentifier": ""}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "proofIdentifier": "p" * 65}), Malformed, 200),
        (httpx.Response(200, json={**GOOD_EU, "proofIdentifier": 5}), Malformed, 200),
        (httpx.Response(200, json=[GOOD_EU]), Malformed, 200),
        (
            httpx.Response(200, content=b'{"credential":"HC1:' + b"A" * MAX_RESPONSE_BYTES + b'"}'),
            Malformed,
            200,
        ),
    ],
    ids=[
        "400", "415", "429", "503", "499", "500", "599", "502", "302", "300-with-json",
        "199-with-json", "not-json", "201-not-json", "201-wrong-shape",
        "missing-field", "extra-field", "wrong-prefix", "prefix-not-first",
        "credential-over-32k", "empty-proof", "proof-over-64", "wrong-type", "array",
        "oversized",
    ],
)  # fmt: skip
async def test_responses_map_to_signer_errors(http, router, response, error, status):
    """Each status class and malformed 2xx body maps to its SignerResponseError, URL-free."""
    router.post("/get_credential").mock(return_value=response)
    with pytest.raises(error) as caught:
        await get_credential(http)
    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert (caught.value.signer, caught.value.endpoint) == ("eu", "get_credential")
    assert "signer.test" not in str(caught.value)
    assert "://" not in str(caught.value)


async def test_oversized_body_without_length_header_is_refused(http, router):
    """A streamed body over the limit (no Content-Length) is refused as malformed."""

    async def chunks():
        for _ in range(MAX_RESPONSE_BYTES // 1024 + 2):
            yield b" " * 1024

    router.post("/get_credential").mock(return_value=httpx.Response(200, content=chunks()))
    with pytest.raises(SignerMalformedResponseError, match="over"):
        await get_credential(http)


@pytest.mark.parametrize(
    "answer",
    [
        {"credential": LONG_HC1, "proofIdentifier": "p" * 64},
        {"credential": "HC1:", "proofIdentifier": "p"},
    ],
    ids=["longest", "shortest"],
)
async def test_eu_answers_at_the_wire_model_edges_are_taken(http, router, answer):
    """A 32 KiB credential and a proof identifier of 1 to 64 characters are within contract."""
    router.post("/get_credential").respond(200, json=answer)
    result = await get_credential(http)
    assert (result.credential, result.proof_identifier) == (
        answer["credential"],
        answer["proofIdentifier"],
    )


def _json_body(size: int, *, streamed: bool) -> httpx.Response:
    """A 200 whose body is a JSON string of exactly `size` bytes, with or without a length."""
    text = b'"' + b"a" * (size - 2) + b'"'
    if not streamed:
        return httpx.Response(200, content=text)

    async def chunks():
        for start in range(0, len(text), 4096):
            yield text[start : start + 4096]

    return httpx.Response(200, content=chunks())


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "streamed"])
async def test_the_body_cap_takes_exactly_max_response_bytes(http, router, streamed):
    """A body of MAX_RESPONSE_BYTES is read; one byte more is refused, declared or streamed."""
    route = router.get("/keys")
    route.mock(return_value=_json_body(MAX_RESPONSE_BYTES, streamed=streamed))
    read = await request_json(http, "GET", "/keys", signer="eu", endpoint="keys")
    assert len(read) == MAX_RESPONSE_BYTES - 2
    route.mock(return_value=_json_body(MAX_RESPONSE_BYTES + 1, streamed=streamed))
    with pytest.raises(SignerMalformedResponseError, match="over") as caught:
        await request_json(http, "GET", "/keys", signer="eu", endpoint="keys")
    assert caught.value.status_code == 200


async def test_the_body_cap_is_the_documented_64_kib(http, router):
    """Pin the 64 KiB of docs/operations.md: 65,536 bytes are read, 65,537 are refused."""
    route = router.get("/keys")
    route.mock(return_value=_json_body(64 * 1024, streamed=True))
    assert len(await request_json(http, "GET", "/keys", signer="eu", endpoint="keys")) == 65534
    route.mock(return_value=_json_body(64 * 1024 + 1, streamed=True))
    with pytest.raises(SignerMalformedResponseError, match="body over 65536 bytes"):
        await request_json(http, "GET", "/keys", signer="eu", endpoint="keys")


@pytest.mark.parametrize(
    ("status", "error"), [(200, None), (503, SignerThrottledError)], ids=["ok", "refused"]
)
async def test_a_content_length_of_non_ascii_digits_is_no_length(http, router, status, error):
    """Pin that a Content-Length "²" (a digit to ``str.isdigit``) is read as none, not a crash.

    ``int("²")`` raises ValueError: taken as a length, it escaped the SignerError tree.
    """
    body = orjson.dumps({"eu": []})
    router.get("/keys").mock(
        return_value=httpx.Response(
            status, headers=[(b"Content-Length", "²".encode())], content=body
        )
    )
    if error is None:
        assert await request_json(http, "GET", "/keys", signer="eu", endpoint="keys") == {"eu": []}
    else:
        with pytest.raises(error):
            await request_json(http, "GET", "/keys", signer="eu", endpoint="keys")


async def test_inflating_stops_at_the_cap_when_a_chunk_ends_on_it(http, router):
    """Pin that a gzip chunk ending just at the cap leaves no room for the next to inflate.

    The first chunk inflates to exactly MAX_RESPONSE_BYTES; the next would make 16 MB. Asked
    for no room at all, zlib inflates without bound: the next chunk gets one byte of room.
    """
    gzip = zlib.compressobj(wbits=zlib.MAX_WBITS | 16)
    first = gzip.compress(b" " * MAX_RESPONSE_BYTES) + gzip.flush(zlib.Z_SYNC_FLUSH)
    rest = gzip.compress(b" " * (16 << 20)) + gzip.flush()

    async def chunks():
        yield first
        yield rest

    router.get("/keys").mock(
        return_value=httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=chunks())
    )
    tracemalloc.start()
    try:
        with pytest.raises(SignerMalformedResponseError, match="body over"):
            await request_json(http, "GET", "/keys", signer="eu", endpoint="keys")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MAX_RESPONSE_BYTES, f"{peak / 1e6:.1f} MB allocated for one answer"


async def test_a_refusal_declaring_more_than_4_kib_is_not_read(http, router):
    """A 503 whose body is declared over 4 KiB is refused without reading any of it."""
    sent: list[int] = []

    async def chunks():
        for _ in range(8):
            sent.append(1024)
            yield b" " * 1024

    router.post("/get_credential").mock(
        return_value=httpx.Response(503, headers={"Content-Length": "8192"}, content=chunks())
    )
    with pytest.raises(SignerThrottledError):
        await get_credential(http)
    assert sent == []


async def test_a_compressed_refusal_body_is_drained_without_inflating_it(http, router):
    """A 503's gzip body of 3 KiB is read to its end as it came, never inflated to megabytes."""
    packed = gzip.compress(b" " * (3 << 20))

    async def chunks():
        yield packed

    router.post("/get_credential").mock(
        return_value=httpx.Response(
            503,
            headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))},
            content=chunks(),
        )
    )
    tracemalloc.start()
    try:
        with pytest.raises(SignerThrottledError):
            await get_credential(http)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak / 1e6:.1f} MB allocated for a refusal"


async def test_retry_after_seconds_is_parsed(http, router):
    """A 429 with Retry-After: 7 gives retry_after 7 seconds."""
    router.post("/get_credential").respond(429, headers={"Retry-After": "7"}, text="busy")
    with pytest.raises(SignerThrottledError) as caught:
        await get_credential(http)
    assert caught.value.retry_after == 7.0


async def test_retry_after_http_date_is_parsed(http, router):
    """A 503 with an HTTP-date Retry-After gives the seconds until that date."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    header = format_datetime(when, usegmt=True)
    router.post("/get_credential").respond(503, headers={"Retry-After": header}, text="down")
    with pytest.raises(SignerThrottledError) as caught:
        await get_credential(http)
    assert 25 <= caught.value.retry_after <= 31


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("-3", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # a minute ago: no wait, not a negative one
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),  # RFC 5322's "-0000": read as GMT
    ],
)
def test_parse_retry_after(value, expected):
    """Retry-After accepts delay-seconds and HTTP dates; junk gives None, past dates 0."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\u00b2", None),  # superscript two: str.isdigit() says yes, float() says no
        ("\u0663", None),  # Arabic-Indic three
        ("1\u00b2", None),
        ("9" * 400, MAX_RETRY_AFTER_SECONDS),  # float() reads it as inf
        ("9" * 5000, MAX_RETRY_AFTER_SECONDS),  # beyond int()'s digit limit too
        ("86400", MAX_RETRY_AFTER_SECONDS),
        ("3600", MAX_RETRY_AFTER_SECONDS),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS),
        ("Wed, 21 Oct 99999999 07:28:00 GMT", None),
        ("Wed, 21 Oct 99999999999999999999 07:28:00 GMT", None),  # the date overflows
    ],
)
def test_parse_retry_after_takes_ascii_digits_and_caps_the_delay(value, expected):
    """Only ASCII delay-seconds are read, and no delay exceeds the documented maximum."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectError("refused"), SignerConnectError),
        (httpx.UnsupportedProtocol("no scheme"), SignerConnectError),
        (httpx.ProxyError("proxy refused"), SignerConnectError),
        (httpx.ConnectTimeout("slow connect"), SignerTimeoutError),
        (httpx.ReadTimeout("slow read"), SignerTimeoutError),
        (httpx.WriteTimeout("slow write"), SignerTimeoutError),
        (httpx.PoolTimeout("pool"), SignerTimeoutError),
        (httpx.RemoteProtocolError("disconnected"), SignerConnectionLostError),
        (httpx.ReadError("reset"), SignerConnectionLostError),
        (httpx.WriteError("broken pipe"), SignerConnectionLostError),
        (TimeoutError(), SignerTimeoutError),
        (aiohttp.ConnectionTimeoutError(), SignerTimeoutError),
        (aiohttp.SocketTimeoutError(), SignerTimeoutError),
        (aiohttp.InvalidURL("http://signer.test:x/"), SignerConnectError),
        (aiohttp.ServerDisconnectedError(), SignerConnectionLostError),
        (aiohttp.ClientPayloadError("truncated"), SignerConnectionLostError),
    ],
)
async def test_transport_exceptions_map_to_signer_errors(http, router, exc, error):
    """Each transport exception (httpx's, aiohttp's, a bare timeout) maps to its error class."""
    router.post("/get_credential").mock(side_effect=exc)
    with pytest.raises(error) as caught:
        await get_credential(http)
    assert type(caught.value) is error
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize(
    ("exc", "before_sending"),
    [
        (httpx.ConnectTimeout("slow connect"), True),
        (httpx.PoolTimeout("pool"), True),
        (aiohttp.ConnectionTimeoutError(), True),
        (httpx.ReadTimeout("slow read"), False),
        (httpx.WriteTimeout("slow write"), False),
        (aiohttp.SocketTimeoutError(), False),
        (TimeoutError(), False),
    ],
)
async def test_only_connect_and_pool_timeouts_sent_nothing(http, router, exc, before_sending):
    """Pin which timeouts say the request never went out: only waiting for a connection."""
    router.post("/get_credential").mock(side_effect=exc)
    with pytest.raises(SignerTimeoutError) as caught:
        await get_credential(http)
    assert caught.value.before_sending is before_sending
    assert sent_nothing(caught.value) is before_sending


@pytest.mark.parametrize(
    ("exc", "nothing_sent"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.RemoteProtocolError("disconnected"), False),
        (aiohttp.ServerDisconnectedError(), False),
    ],
    ids=["refused", "httpx-lost", "aiohttp-lost"],
)
async def test_only_a_refused_connection_sent_nothing(http, router, exc, nothing_sent):
    """Pin that a refused connection may be sent again anywhere, and a lost one may not."""
    router.post("/get_credential").mock(side_effect=exc)
    with pytest.raises((SignerConnectError, SignerConnectionLostError)) as caught:
        await get_credential(http)
    assert sent_nothing(caught.value) is nothing_sent


async def test_prepare_issue_sends_amount_and_returns_message_verbatim(http, router):
    """prepare_issue posts credentialAmount as JSON and returns the signer's object as is."""
    message = {"issuerPkId": "a2lk", "issuerNonce": b64(b"n" * 16), "credentialAmount": 3}
    route = router.post("/prepare_issue").respond(200, json=message)
    assert await DomesticSignerClient(http).prepare_issue(3, headers=REQUEST_ID) == message
    sent = route.calls.last.request
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == "req-123"
    assert orjson.loads(sent.content) == {"credentialAmount": 3}


@pytest.mark.parametrize("amount", [1, 100])
async def test_prepare_issue_amount_at_the_limits_is_sent(http, router, amount):
    """1 and 100 credentials are both asked of the signer."""
    message = {"issuerPkId": "a2lk", "issuerNonce": "bm9uY2U=", "credentialAmount": amount}
    route = router.post("/prepare_issue").respond(200, json=message)
    assert await DomesticSignerClient(http).prepare_issue(amount) == message
    assert orjson.loads(route.calls.last.request.content) == {"credentialAmount": amount}


@pytest.mark.parametrize("amount", [0, 101])
async def test_prepare_issue_amount_out_of_range_sends_nothing(http, router, amount):
    """An amount outside 1..100 is refused locally."""
    route = router.post("/prepare_issue").respond(200, json={})
    with pytest.raises(ValueError, match="credential_amount"):
        await DomesticSignerClient(http).prepare_issue(amount)
    assert not route.called


async def test_issue_sends_contract_body_and_returns_items(http, router):
    """The issue call posts the three messages under their wire names and returns the items."""
    signer = make_domestic_signer()
    nonce = b64(b"n" * 16)
    item = signer.issue_item(nonce, sample_attributes())
    route = router.post("/issue").respond(200, json=[item])
    prepare = {"issuerPkId": "a2lk", "issuerNonce": nonce, "credentialAmount": 1}
    commitment = b'{"n_2": %d, "issuerNonce": "%s"}' % (2**2048 - 159, nonce.encode())
    items = await DomesticSignerClient(http).issue(
        prepare_issue_message=prepare,
        issue_commitment_message=commitment,
        credentials_attributes=[sample_attributes()],
    )
    assert items == [item]
    sent = route.calls.last.request
    assert sent.headers["content-type"] == "application/json"
    assert sent.content == b'{"prepareIssueMessage":%s,"issueCommitmentMessage":%s,%s}' % (
        orjson.dumps(prepare),
        commitment,
        orjson.dumps({"credentialsAttributes": [sample_attributes()]})[1:-1],
    )


def test_issue_body_that_cannot_be_encoded_fails_before_anything_is_sent(http, router):
    """The issue body is encoded when the call is made: a failure there leaves nothing to send."""
    route = router.post("/issue").respond(200, json=[])
    with pytest.raises(TypeError):
        DomesticSignerClient(http).issue(
            prepare_issue_message={"issuerNonce": object()},
            issue_commitment_message=b"{}",
            credentials_attributes=[],
        )
    assert not route.called


async def test_issue_static_sends_attributes_and_parses_result(http, router):
    """issue_static posts credentialAttributes and returns qr and proofIdentifier."""
    route = router.post("/issue_static").respond(
        200, json={"qr": "NL2:AB", "proofIdentifier": "cA=="}
    )
    result = await DomesticSignerClient(http).issue_static(sample_attributes())
    assert (result.qr, result.proof_identifier) == ("NL2:AB", "cA==")
    assert orjson.loads(route.calls.last.request.content) == {
        "credentialAttributes": sample_attributes()
    }


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/prepare_issue", {"issuerPkId": "a", "issuerNonce": "b"}),
        ("/prepare_issue", {"issuerPkId": "a", "issuerNonce": "b", "credentialAmount": "3"}),
        ("/prepare_issue", {**PREPARED, "credentialAmount": 0}),
        ("/prepare_issue", {**PREPARED, "credentialAmount": 101}),
        ("/prepare_issue", {**PREPARED, "issuerPkId": ""}),
        ("/prepare_issue", {**PREPARED, "issuerNonce": "n" * 1025}),
        ("/prepare_issue", {**PREPARED, "extra": 1}),
        ("/prepare_issue", {**PREPARED, "credentialAmount": 2}),
        ("/prepare_issue", {**PREPARED, "credentialAmount": 4}),
        ("/issue", []),
        ("/issue", [{"issueSignatureMessage": {}, "attributes": {"a": 1}}]),
        ("/issue", {"issueSignatureMessage": {}, "attributes": {}}),
        ("/issue", [{**ISSUED, "extra": 1}]),
        ("/issue", [ISSUED] * 101),
        ("/issue_static", {"qr": "HC1:x", "proofIdentifier": "p"}),
        ("/issue_static", {"qr": "xNL2:x", "proofIdentifier": "p"}),
        ("/issue_static", {"qr": LONG_NL2 + "A", "proofIdentifier": "p"}),
        ("/issue_static", {"qr": "NL2:x", "proofIdentifier": "p" * 65}),
        ("/issue_static", {"qr": "NL2:x", "proofIdentifier": ""}),
        ("/issue_static", {"qr": "NL2:x", "proofIdentifier": "p", "extra": 1}),
    ],
    ids=[
        "prepare-missing", "prepare-type", "prepare-amount-0", "prepare-amount-101",
        "prepare-empty-text", "prepare-text-over-1024", "prepare-extra",
        "prepare-other-amount", "prepare-more-than-asked", "issue-empty",
        "issue-attr-type", "issue-object", "issue-extra", "issue-101-items", "static-prefix",
        "static-prefix-not-first", "static-qr-over-8k", "static-proof-over-64",
        "static-empty-proof", "static-extra",
    ],
)  # fmt: skip
async def test_domestic_malformed_bodies(http, router, path, body):
    """Domestic 2xx bodies outside the wire models are malformed responses."""
    router.post(path).respond(200, json=body)
    client = DomesticSignerClient(http)
    calls = {
        "/prepare_issue": lambda: client.prepare_issue(3),
        "/issue": lambda: client.issue(
            prepare_issue_message={}, issue_commitment_message=b"{}", credentials_attributes=[]
        ),
        "/issue_static": lambda: client.issue_static(sample_attributes()),
    }
    with pytest.raises(SignerMalformedResponseError) as caught:
        await calls[path]()
    assert caught.value.endpoint == path.strip("/")
    assert caught.value.signer == "domestic"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/prepare_issue", {**PREPARED, "credentialAmount": 1}),
        ("/prepare_issue", {**PREPARED, "credentialAmount": 100, "issuerNonce": "n" * 1024}),
        ("/issue", [ISSUED] * 100),
        ("/issue_static", {"qr": LONG_NL2, "proofIdentifier": "p" * 64}),
    ],
    ids=["prepare-one", "prepare-longest", "issue-100-items", "static-longest"],
)
async def test_domestic_answers_at_the_wire_model_edges_are_taken(http, router, path, body):
    """Domestic 2xx bodies at their wire models' limits are passed on as received."""
    router.post(path).respond(200, json=body)
    client = DomesticSignerClient(http)
    if path == "/prepare_issue":
        assert await client.prepare_issue(body["credentialAmount"]) == body
    elif path == "/issue":
        items = await client.issue(
            prepare_issue_message={}, issue_commitment_message=b"{}", credentials_attributes=[]
        )
        assert items == body
    else:
        result = await client.issue_static(sample_attributes())
        assert (result.qr, result.proof_identifier) == (body["qr"], body["proofIdentifier"])


#: One Idemix ``/issue`` item: base64 attribute values, the metadata attribute first.
IDEMIX_ISSUED = {"issueSignatureMessage": {}, "attributes": ["AQ==", "MQ=="]}


async def idemix_issue(http):
    """Call issue on an Idemix-scheme client with empty messages."""
    return await DomesticSignerClient(http, scheme="idemix").issue(
        prepare_issue_message={}, issue_commitment_message=b"{}", credentials_attributes=[]
    )


@pytest.mark.parametrize(
    "body",
    [
        [],
        [IDEMIX_ISSUED] * 101,
        [ISSUED],
        [{**IDEMIX_ISSUED, "attributes": []}],
        [{**IDEMIX_ISSUED, "attributes": ["AQ=="] * 33}],
        [{**IDEMIX_ISSUED, "attributes": ["AQ==", ""]}],
        [{**IDEMIX_ISSUED, "attributes": ["AQ==", "A" * 1025]}],
        [{**IDEMIX_ISSUED, "attributes": ["AQ==", 1]}],
        [{**IDEMIX_ISSUED, "extra": 1}],
        [{"attributes": ["AQ=="]}],
    ],
    ids=[
        "empty", "101-items", "simulation-shape", "no-attributes", "33-attributes",
        "empty-attribute", "attribute-over-1024", "attribute-type", "extra", "missing-message",
    ],
)  # fmt: skip
async def test_idemix_malformed_issue_items(http, router, body):
    """Idemix ``/issue`` items outside their wire model are malformed responses."""
    router.post("/issue").respond(200, json=body)
    with pytest.raises(SignerMalformedResponseError) as caught:
        await idemix_issue(http)
    assert (caught.value.signer, caught.value.endpoint) == ("domestic", "issue")


@pytest.mark.parametrize(
    "body",
    [
        [{**IDEMIX_ISSUED, "attributes": ["A" * 1024] * 32}] + [IDEMIX_ISSUED] * 99,
        [{**IDEMIX_ISSUED, "attributes": ["A"]}],
    ],
    ids=["longest", "shortest"],
)
async def test_idemix_issue_items_at_the_wire_model_edges_are_taken(http, router, body):
    """Idemix items of 1 to 32 attributes, up to 100 of them, are passed on as received."""
    router.post("/issue").respond(200, json=body)
    assert await idemix_issue(http) == body


async def test_fetch_keys_parses_key_document(http, router):
    """fetch_keys turns the /keys JSON into EU and domestic trust stores."""
    dsc, signer = make_dsc(["test"]), make_domestic_signer()
    doc = {"eu": [dsc.keys_entry(["test"])], "csca": [], "domestic": [signer.keys_entry()]}
    router.get("/keys").respond(200, json=doc)
    keys = await EuSignerClient(http).fetch_keys()
    assert keys.eu.signing_certificate("test", now=datetime.now(UTC)).kid == dsc.kid
    assert keys.domestic.lookup(signer.kid) is not None
    keys = await DomesticSignerClient(http).fetch_keys()
    assert len(keys.domestic) == 1


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"eu": [{"kid": "x"}]},
        {"domestic": "x"},
        {"domestic": [{"kid": "\u00e9", "alg": "Ed25519", "publicKey": b64(b"\x02" * 32)}]},
    ],
    ids=["list", "eu-entry", "domestic-type", "non-ascii-kid"],
)
async def test_fetch_keys_bad_document_is_malformed(http, router, doc):
    """A /keys document that does not parse is a malformed response (a SignerError to retry)."""
    router.get("/keys").respond(200, json=doc)
    with pytest.raises(SignerMalformedResponseError):
        await EuSignerClient(http).fetch_keys()


@pytest.mark.parametrize("status", [200, 404, 405])
async def test_probe_treats_any_answer_below_500_as_up(http, router, status):
    """The real signers answer 404/405 to GET; that still means up."""
    route = router.get("/healthz").respond(status)
    await EuSignerClient(http).probe()
    await DomesticSignerClient(http).probe()
    assert route.call_count == 2


async def test_probe_uses_configured_path(http, router):
    """The probe GETs the configured health path."""
    route = router.get("/ping").respond(404)
    await EuSignerClient(http, health_path="/ping").probe()
    assert route.called


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500), SignerServerError),
        (httpx.Response(503), SignerThrottledError),
        (httpx.ConnectError("refused"), SignerConnectError),
        (httpx.ReadTimeout("slow"), SignerTimeoutError),
    ],
)
async def test_probe_reports_down(http, router, response, error):
    """5xx answers and transport failures make probe raise."""
    route = router.get("/healthz")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    with pytest.raises(error) as caught:
        await EuSignerClient(http, name="eu-a").probe()
    assert (caught.value.signer, caught.value.endpoint) == ("eu-a", "probe")
