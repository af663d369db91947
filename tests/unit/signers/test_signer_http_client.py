"""The signer's httpx client: no cookie jar, endpoint URLs resolved once and correctly."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import httpx
import pytest

from signing_gateway.signers.errors import SignerConnectionLostError, SignerTimeoutError
from signing_gateway.signers.eu import EuSignerClient, credential_request
from signing_gateway.signers.failures import transport_error
from signing_gateway.signers.http import SignerHttpClient, build_signer_client
from signing_gateway.signers.transport import SignerTransport
from tests.unit.signers.conftest import BASE_URL

GOOD_EU = {"credential": "HC1:ABC", "proofIdentifier": "cHJvb2Y="}


async def test_signer_cookies_are_neither_kept_nor_sent(http, router):
    """A cookie one answer sets does not ride along on the next caller's request."""
    route = router.post("/get_credential").respond(
        200, json=GOOD_EU, headers={"Set-Cookie": "session=abc; Path=/"}
    )
    client = EuSignerClient(http)
    for request_id in ("first", "second"):
        await client.sign(_encoded(), headers={"X-Request-ID": request_id})
    assert route.call_count == 2
    assert all("cookie" not in call.request.headers for call in route.calls)
    assert not http.cookies
    assert dict(http.cookies) == {}


def test_signer_client_refuses_cookies():
    """Cookies can be given neither at construction nor later."""
    with pytest.raises(ValueError, match="no cookies"):
        SignerHttpClient(base_url=BASE_URL, cookies={"a": "b"})
    client = SignerHttpClient(base_url=BASE_URL)
    with pytest.raises(ValueError, match="no cookies"):
        client.cookies = {"a": "b"}
    client.cookies = {}  # empty is what it already has


@pytest.mark.parametrize(
    ("base_url", "path", "expected"),
    [
        ("http://signer.test", "/get_credential", "http://signer.test/get_credential"),
        ("http://signer.test/api", "/get_credential", "http://signer.test/api/get_credential"),
        ("http://signer.test/api/", "keys", "http://signer.test/api/keys"),
        ("http://signer.test", "/a?b=c%20d", "http://signer.test/a?b=c%20d"),
        ("http://signer.test", "http://other.test/x", "http://other.test/x"),
    ],
)
def test_resolved_urls_match_httpx(base_url, path, expected):
    """A cached URL is the one httpx itself builds, the second time as the first."""
    ours = SignerHttpClient(base_url=base_url)
    theirs = httpx.AsyncClient(base_url=base_url)
    for _ in range(2):
        built = ours.build_request("POST", path, content=b"{}")
        assert str(built.url) == expected == str(theirs.build_request("POST", path).url)
    assert built.headers["host"] == httpx.URL(expected).netloc.decode()


def test_resolved_urls_are_kept_for_a_bounded_number_of_paths():
    """Past 64 distinct paths, URLs are resolved per call and not kept: the table stays bounded."""
    client = SignerHttpClient(base_url=BASE_URL)
    for number in range(100):
        assert client.build_request("GET", f"/p{number}").url == f"{BASE_URL}/p{number}"
    assert len(client._urls) == 64


def test_changing_the_base_url_drops_resolved_urls():
    """After `base_url` changes, paths are joined to the new base."""
    client = SignerHttpClient(base_url="http://one.test/")
    assert str(client.build_request("GET", "/keys").url) == "http://one.test/keys"
    client.base_url = "http://two.test/v2"
    assert str(client.build_request("GET", "/keys").url) == "http://two.test/v2/keys"


def test_both_transports_get_the_signer_client(http):
    """`build_signer_client` gives the cookie-less client on either transport."""
    assert isinstance(http, SignerHttpClient)
    assert "connection" not in http.headers


def _encoded():
    return credential_request(
        key_usage="vaccination",
        expiration_time=datetime(2027, 5, 20, tzinfo=UTC),
        dcc={"ver": "1.3.0", "dob": "1964-08-12", "v": [{"dn": 2}]},
    )


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


def test_a_circular_cause_chain_is_classified_without_looping():
    """A transport error whose cause chain loops back is still translated, and promptly."""
    outer = httpx.ReadError("read failed")
    inner = RuntimeError("wrapped")
    outer.__cause__ = inner
    inner.__cause__ = outer  # a loop, as a mocking library can build
    error = transport_error(outer, signer="eu", endpoint="get_credential")
    assert isinstance(error, SignerConnectionLostError)


class _Refused(ssl.SSLCertVerificationError):
    """The TLS library's refusal of a certificate, with its reason (set only as it is raised)."""

    verify_message = "Missing Authority Key Identifier"


def _during(exc: BaseException, handled: BaseException) -> BaseException:
    exc.__context__ = handled
    return exc


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (
            _caused(httpx.ConnectError("failed"), _Refused(1, "verify failed")),
            "ConnectError: certificate refused: Missing Authority Key Identifier",
        ),
        (
            _caused(httpx.ConnectError("failed"), _during(RuntimeError(), _Refused(1, "x"))),
            "ConnectError: certificate refused: Missing Authority Key Identifier",
        ),
        # Raised from a reset, while an earlier refusal was handled: the reset is the failure.
        (
            _during(_caused(httpx.ConnectError("failed"), OSError(104, "reset")), _Refused(1, "x")),
            "ConnectError",
        ),
    ],
    ids=["from-the-refusal", "during-it-further-down", "refusal-neither-cause-nor-under-it"],
)
def test_a_refused_certificate_is_named_with_its_reason(exc: httpx.ConnectError, message: str):
    """Why the signer's certificate was refused, found along what the error was raised from."""
    error = transport_error(exc, signer="eu", endpoint="get_credential")
    assert str(error) == f"eu get_credential: {message}"


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), _caused(httpx.ReadError("read failed"), TimeoutError())],
    ids=["bare", "as-cause"],
)
def test_a_bare_timeout_is_a_timeout(exc):
    """An asyncio timeout, raised as it is or behind an httpx error, is a SignerTimeoutError."""
    error = transport_error(exc, signer="eu", endpoint="get_credential")
    assert type(error) is SignerTimeoutError
    assert str(error) == "eu get_credential: TimeoutError"


def test_the_httpx_client_takes_each_timeout_as_given():
    """On httpx's transport, connect, read, write and pool timeouts are each their own setting."""
    http = build_signer_client(
        BASE_URL, connect_timeout=1.0, read_timeout=2.0, write_timeout=3.0, pool_timeout=4.0,
        max_connections=4, transport="httpx",
    )  # fmt: skip
    assert http.timeout == httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0)


def test_verify_false_checks_no_certificate():
    """``verify=False`` gives a context that checks neither the host name nor the certificate."""
    for transport in ("httpx", "aiohttp"):
        client = build_signer_client(
            BASE_URL, connect_timeout=1.0, read_timeout=1.0, write_timeout=1.0,
            pool_timeout=1.0, max_connections=1, transport=transport, verify=False,
        )  # fmt: skip
        held = client._transport
        context = held.ssl_context if transport == "aiohttp" else held._pool._ssl_context
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


async def test_the_aiohttp_pool_keeps_idle_connections_for_keepalive_expiry():
    """The aiohttp connector keeps an idle connection as long as configured, not its own 15 s."""
    client = build_signer_client(
        BASE_URL, connect_timeout=1.0, read_timeout=1.0, write_timeout=1.0, pool_timeout=1.0,
        max_connections=3, keepalive_expiry=2.5, transport="aiohttp",
    )  # fmt: skip
    async with client:
        session = client._transport.get_client()
        try:
            assert (session.connector._keepalive_timeout, session.connector.limit) == (2.5, 3)
        finally:
            await session.close()


def test_the_aiohttp_transport_keeps_a_bounded_table_of_header_texts():
    """Past 64 distinct fixed-header values, each is decoded per call and not kept."""
    transport = SignerTransport()
    for number in range(100):
        headers = httpx.Headers({"Host": f"signer-{number}.test", "X-Request-ID": f"r-{number}"})
        assert transport._headers(headers) == [
            ("Host", f"signer-{number}.test"),
            ("X-Request-ID", f"r-{number}"),
        ]
    assert len(transport._texts) == 64


def test_a_client_certificate_beside_a_ready_ssl_context_is_refused():
    """A cert given with an `SSLContext` would be silently left out of it: refused instead."""
    with pytest.raises(ValueError, match="client certificate into the SSLContext"):
        build_signer_client(
            BASE_URL, connect_timeout=1.0, read_timeout=1.0, write_timeout=1.0,
            pool_timeout=1.0, max_connections=4,
            verify=ssl.create_default_context(), cert=("client.pem", "client.key"),
        )  # fmt: skip
