"""What a body refusal does to its connection, over a raw connection to a served gateway."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from signing_gateway.app import create_app
from signing_gateway.security.settings import ALL_SCOPES, AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, served_gateway

#: Bodies read whole and refused by the body checks (`security.limits`), each with a 422.
REFUSED_BODIES = {
    "not JSON": b'{"a": ',
    "a repeated key": b'{"a": 1, "a": 2}',
    "too deep": b"[" * 20 + b"]" * 20,
    "a byte order mark": b'\xef\xbb\xbf{"a": 1}',
    "a number beyond a double": b'{"a": 1e400}',
}


def _post(body: bytes, authorization: bytes | None) -> bytes:
    fields = b"Host: gateway\r\nContent-Type: application/json\r\n"
    fields += b"Content-Length: %d\r\n" % len(body)
    if authorization is not None:
        fields += b"Authorization: " + authorization + b"\r\n"
    return b"POST /v1/dcc HTTP/1.1\r\n" + fields + b"\r\n" + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer read off the connection: status, header fields (names in lower case), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    fields = {n.strip().lower(): v.strip() for n, _, v in (li.partition(":") for li in lines)}
    body = await reader.readexactly(int(fields.get("content-length", "0")))
    return int(status_line[9:12]), fields, body


@pytest.mark.parametrize("token", ["none", "valid"])
async def test_a_body_refused_after_it_was_read_whole_keeps_the_connection(
    test_keys: SignerKeys,
    mocked: MockedSigners,
    auth_settings: AuthSettings,
    token_issuer: LocalTokenIssuer,
    token: str,
) -> None:
    """Each 422 of the body checks (and a 401 after a body) keeps the connection for the next."""
    authorization = None
    if token == "valid":
        minted = token_issuer.mint(subject="backend-1", scopes=list(ALL_SCOPES))
        authorization = b"Bearer " + minted.encode()
    app = create_app(make_settings(test_keys, auth=auth_settings))
    async with served_gateway(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                for why, body in REFUSED_BODIES.items():
                    writer.write(_post(body, authorization))
                    status, fields, problem = await _answer(reader)
                    assert (why, status) == (why, 422), problem
                    assert orjson.loads(problem)["type"].endswith("/validation-failed")
                    assert (why, fields.get("connection")) == (why, None)
                if authorization is None:  # well-formed: now the missing token's 401
                    writer.write(_post(b'{"a": 1}', authorization))
                    status, fields, _ = await _answer(reader)
                    assert (status, fields.get("connection")) == (401, None)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
                status, _, _ = await _answer(reader)
        finally:
            writer.close()
    assert status == 200
    assert mocked.signing_calls() == 0
