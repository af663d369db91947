"""TLS and mutual TLS to the signers, against a real TLS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from signing_gateway.security.jwks import jwks_http_client
from signing_gateway.security.settings import AuthSettings
from signing_gateway.settings import Settings, SignerSettings
from signing_gateway.signers.errors import SignerConnectError
from signing_gateway.signers.eu import EuSignerClient
from signing_gateway.signers.http import build_signer_client
from tests.api.assertions import assert_problem
from tests.api.bodies import eu_vaccination
from tests.support.credentials import Hc1Spec, make_hc1
from tests.support.gateway import SignerKeys, make_settings, running_gateway
from tests.support.tls_pki import issue_certificate, write_pem


@dataclass
class Pki:
    """PEM files of a throwaway PKI: CAs, the signer's server cert, the gateway's client cert."""

    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: The signer's certificate without its issuer's key identifier (otherwise as `server_cert`).
    lax_server_cert: Path
    lax_server_key: Path
    #: An intermediate CA that Test Signer CA signed, and the signer's certificate it issued.
    intermediate_ca: Path
    chained_server_cert: Path
    chained_server_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA that issued the signer's server certificate and the gateway's client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = issue_certificate("Test Signer CA", None)
    other, _ = issue_certificate("Some Other CA", None)
    server, server_key = issue_certificate("eu-signer", ("Test Signer CA", ca_key), server=True)
    client, client_key = issue_certificate(
        "signing-gateway", ("Test Signer CA", ca_key), client=True
    )
    lax, lax_key = issue_certificate(
        "eu-signer", ("Test Signer CA", ca_key), server=True, no_authority_key_id=True
    )
    intermediate, intermediate_key = issue_certificate(
        "Signer Issuing CA", ("Test Signer CA", ca_key), ca=True
    )
    chained, chained_key = issue_certificate(
        "eu-signer", ("Signer Issuing CA", intermediate_key), server=True
    )
    write_pem(d / "ca.pem", ca)
    write_pem(d / "other-ca.pem", other)
    write_pem(d / "server.pem", server, server_key)
    write_pem(d / "client.pem", client, client_key)
    write_pem(d / "lax-server.pem", lax, lax_key)
    write_pem(d / "intermediate-ca.pem", intermediate)
    write_pem(d / "chained-server.pem", chained, chained_key)
    return Pki(
        d / "ca.pem",
        d / "other-ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "lax-server.pem",
        d / "lax-server.key",
        d / "intermediate-ca.pem",
        d / "chained-server.pem",
        d / "chained-server.key",
    )


@dataclass
class TlsSigner:
    """The running TLS signer: its URL and the client certificates it saw per signing."""

    url: str
    peers: list[str]


@pytest.fixture
async def tls_signer(pki: Pki, test_keys: SignerKeys) -> AsyncIterator[TlsSigner]:
    """An EU signer over TLS on 127.0.0.1 that requires a client certificate from our CA."""
    async with _serving_signer(pki, test_keys, pki.server_cert, pki.server_key) as signer:
        yield signer


@contextlib.asynccontextmanager
async def _serving_signer(
    pki: Pki, test_keys: SignerKeys, server_cert: Path, server_key: Path
) -> AsyncIterator[TlsSigner]:
    """An EU signer as `tls_signer`, showing `server_cert` (its key `server_key`)."""
    peers: list[str] = []

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_credential(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport else None
        peers.append(str(peer["subject"]) if peer else "")
        exp = int(datetime.fromisoformat(body["expirationTime"]).timestamp())
        hc1 = make_hc1(
            test_keys.dscs[body["keyUsage"]], Hc1Spec(body["dcc"], exp=exp, iat=int(time.time()))
        )
        return web.json_response({"credential": hc1.text, "proofIdentifier": hc1.proof_identifier})

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(server_cert), str(server_key))
    context.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/get_credential", get_credential)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    try:
        yield TlsSigner(f"https://127.0.0.1:{sock.getsockname()[1]}", peers)
    finally:
        await runner.cleanup()


def _settings(keys: SignerKeys, signer: TlsSigner, transport: str, **tls):
    eu = SignerSettings(url=signer.url, transport=transport, **tls)
    domestic = SignerSettings(url=signer.url, transport=transport, required=False, **tls)
    return make_settings(keys, eu_signer=eu, domestic_signer=domestic)


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_mutual_tls_with_the_right_ca_and_clientissue_certificate(
    test_keys, pki: Pki, tls_signer: TlsSigner, transport
):
    """With the signer's CA and our client certificate the gateway signs over mutual TLS."""
    settings = _settings(
        test_keys,
        tls_signer,
        transport,
        ca_bundle=pki.ca,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
    )
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 200, response.text
    assert len(tls_signer.peers) == 1
    assert "signing-gateway" in tls_signer.peers[0]


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_wrong_ca_is_refused(test_keys, pki: Pki, tls_signer: TlsSigner, transport):
    """A signer whose certificate our CA bundle does not vouch for is unreachable: 503."""
    settings = _settings(
        test_keys,
        tls_signer,
        transport,
        ca_bundle=pki.other_ca,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
    )
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
    body = assert_problem(response, 503, "signer-unavailable")
    assert "127.0.0.1" not in response.text
    assert "certificate" not in body["detail"].lower()
    assert tls_signer.peers == []


def _mutual_tls(keys: SignerKeys, signer: TlsSigner, transport: str, pki: Pki, ca: Path):
    """Settings that reach `signer` over mutual TLS, trusting the CA bundle `ca`."""
    tls = {"ca_bundle": ca, "client_cert": pki.client_cert, "client_key": pki.client_key}
    return _settings(keys, signer, transport, **tls)


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_a_signer_certificate_the_strict_checks_refuse_is_refused(
    test_keys, pki: Pki, transport, caplog: pytest.LogCaptureFixture
):
    """A certificate without its issuer's key identifier is refused, whatever the Python.

    Python 3.13 refuses it by default and 3.11 took it: the gateway asks for the same checks
    on every Python (`runtime/system_trust.py`), so no signer is trusted by one and not the
    other.
    """
    lax = _serving_signer(pki, test_keys, pki.lax_server_cert, pki.lax_server_key)
    async with (
        lax as signer,
        running_gateway(_mutual_tls(test_keys, signer, transport, pki, pki.ca)) as client,
    ):
        response = await client.post("/v1/dcc", json=eu_vaccination())
    body = assert_problem(response, 503, "signer-unavailable")
    assert "certificate" not in body["detail"].lower()
    assert signer.peers == []
    # The operator is told why, in the call's and the readiness prober's lines.
    reasons = {
        (record.getMessage(), getattr(record, "reason", None))
        for record in caplog.records
        if record.getMessage() in {"signer call failed", "dependency down"}
    }
    refused = "certificate refused: Missing Authority Key Identifier"
    assert {message for message, reason in reasons if refused in str(reason)} == {
        "signer call failed",
        "dependency down",
    }, reasons
    error = {"httpx": "ConnectError", "aiohttp": "ClientConnectorCertificateError"}[transport]
    assert ("signer call failed", f"{error}: {refused}") in reasons


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_an_intermediate_ca_in_the_bundle_is_enough(test_keys, pki: Pki, transport):
    """A CA bundle holding only the CA that issued the signer's certificate is enough.

    The root above it need not be added: any certificate of the bundle may end the chain, as
    Python 3.13 has it by default and 3.11 did not.
    """
    chained = _serving_signer(pki, test_keys, pki.chained_server_cert, pki.chained_server_key)
    async with (
        chained as signer,
        running_gateway(
            _mutual_tls(test_keys, signer, transport, pki, pki.intermediate_ca)
        ) as client,
    ):
        response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code == 200, response.text
    assert len(signer.peers) == 1


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_missing_client_certificate_is_refused(
    test_keys, pki: Pki, tls_signer: TlsSigner, transport
):
    """Without a client certificate the signer refuses the connection and nothing is signed."""
    settings = _settings(test_keys, tls_signer, transport, ca_bundle=pki.ca)
    async with running_gateway(settings) as client:
        response = await client.post("/v1/dcc", json=eu_vaccination())
    assert response.status_code in {502, 503}, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert tls_signer.peers == []


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_verify_false_skips_only_the_server_check(pki: Pki, tls_signer: TlsSigner, transport):
    """`verify=False` reaches a signer no known CA vouches for; the default refuses it."""
    options = {
        "connect_timeout": 2.0, "read_timeout": 2.0, "write_timeout": 2.0, "pool_timeout": 2.0,
        "max_connections": 2, "transport": transport,
        "cert": (str(pki.client_cert), str(pki.client_key)),
    }  # fmt: skip
    async with build_signer_client(tls_signer.url, verify=False, **options) as http:
        await EuSignerClient(http).probe()
    async with build_signer_client(tls_signer.url, **options) as http:
        with pytest.raises(SignerConnectError):
            await EuSignerClient(http).probe()


def test_plain_http_to_a_remote_signer_is_refused():
    """Settings refuse http:// to a non-loopback signer unless allow_plain_http is set."""
    with pytest.raises(ValidationError, match="allow_plain_http"):
        SignerSettings(url="http://eu-signer.internal:8080")
    assert SignerSettings(url="http://eu-signer.internal:8080", allow_plain_http=True)
    assert SignerSettings(url="http://127.0.0.1:8080")
    assert SignerSettings(url="https://eu-signer.internal:8443")


def test_production_refuses_plain_http_to_a_remote_signer():
    """Production refuses a plain-http signer off the host even with allow_plain_http set."""
    auth = AuthSettings(mode="jwt", jwks_url="https://idp.example/jwks", audience="a", issuer="i")
    remote = SignerSettings(url="http://eu-signer.internal:8080", allow_plain_http=True)
    with pytest.raises(ValidationError, match=r"eu_signer\.url is plain http"):
        Settings(environment="production", auth=auth, eu_signer=remote)
    assert Settings(environment="dev", auth=auth, eu_signer=remote)
    sidecar = SignerSettings(url="http://127.0.0.1:15001")
    assert Settings(environment="production", auth=auth, eu_signer=sidecar, domestic_signer=sidecar)


#: Seconds the writer of a signer's CA bundle (a pipe) holds it before writing it.
HOLD_S = 0.5


async def test_a_signers_tls_files_are_loaded_off_the_event_loop(
    test_keys, pki: Pki, tmp_path: Path
):
    """The start-up loads a signer's CA bundle in a thread: the event loop runs while it waits.

    The bundle is a pipe whose writer holds it half a second: the loop's timers run meanwhile.
    Before, the lifespan loaded it on the event loop, which stood still until it was written.
    """
    bundle = tmp_path / "ca.pem"
    os.mkfifo(bundle)
    held: list[float] = []

    def hold_then_write() -> None:
        with bundle.open("wb") as pipe:  # once the gateway opens it to read
            held.append(time.monotonic())
            time.sleep(HOLD_S)
            pipe.write(pki.ca.read_bytes())
        held.append(time.monotonic())

    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    writer = threading.Thread(target=hold_then_write, daemon=True)
    writer.start()
    ticking = asyncio.create_task(tick())
    eu = SignerSettings(url="https://127.0.0.1:9", ca_bundle=bundle)
    try:
        async with running_gateway(make_settings(test_keys, eu_signer=eu)):
            pass
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
        writer.join(HOLD_S * 10)
    opened, written = held
    assert len([t for t in ticks if opened < t < written]) >= 5, (ticks, held)


def test_client_cert_needs_its_key(pki: Pki):
    """A client certificate without its key (or the reverse) is refused at start-up."""
    with pytest.raises(ValidationError, match="go together"):
        SignerSettings(url="https://eu-signer.internal", client_cert=pki.client_cert)


def _context(client: httpx.AsyncClient) -> ssl.SSLContext:
    """The TLS context a client's transport connects with (httpcore's pool or aiohttp's)."""
    transport = client._transport
    if isinstance(transport, httpx.AsyncHTTPTransport):
        return transport._pool._ssl_context
    return transport.ssl_context  # type: ignore[attr-defined, no-any-return]


def _subjects(context: ssl.SSLContext) -> list[object]:
    """The subjects of the CAs `context` trusts."""
    return [ca["subject"] for ca in context.get_ca_certs()]


@pytest.mark.parametrize("transport", ["httpx", "aiohttp"])
async def test_clients_trusting_only_the_system_cas_share_one_context(pki: Pki, transport):
    """The system's CA store is loaded once for every client that trusts it alone.

    A client certificate or a CA bundle gets a context of its own, so nothing is ever loaded
    into the shared one (a client certificate there would be shown to every signer).
    """
    options = {
        "connect_timeout": 2.0, "read_timeout": 2.0, "write_timeout": 2.0, "pool_timeout": 2.0,
        "max_connections": 2, "transport": transport,
    }  # fmt: skip
    url = "https://signer.invalid"
    clients = [
        build_signer_client(url, cert=(str(pki.client_cert), str(pki.client_key)), **options),
        build_signer_client(url, verify=str(pki.ca), **options),
        build_signer_client(url, **options),
        build_signer_client(url, **options),
        jwks_http_client(ca_bundle=None, timeout=2.0),
        jwks_http_client(ca_bundle=pki.ca, timeout=2.0),
    ]
    try:
        with_cert, with_bundle, first, second, jwks, jwks_bundle = (_context(c) for c in clients)
        assert first is second is jwks
        assert with_cert is not first
        assert with_bundle is not first
        assert first.verify_mode == ssl.CERT_REQUIRED
        assert first.check_hostname
        assert jwks_bundle is not first
        assert (
            _subjects(jwks_bundle)
            == _subjects(with_bundle)
            == [((("commonName", "Test Signer CA"),),)]
        )
        # The strict checks, added to Python's own (its default flags are kept).
        strict = ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
        strict |= ssl.create_default_context().verify_flags
        for context in (with_cert, with_bundle, first, jwks_bundle):
            assert context.verify_flags & strict == strict, context.verify_flags
    finally:
        for client in clients:
            await client.aclose()
