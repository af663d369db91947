"""The JSON body of a signer call is held for the whole call, so it must not carry slack."""

from __future__ import annotations

import tracemalloc

import httpx
import pytest
from multidict import istr

from signing_gateway.api import examples
from signing_gateway.signers import http as signer_http
from signing_gateway.signers.transport import SignerTransport


async def test_the_body_held_during_a_signer_call_is_no_larger_than_its_bytes() -> None:
    """While the signer works, what `request_json` allocated is about the body's length.

    orjson returns its result in the 4 KiB buffer it wrote into; held through a 1-10 s signer
    call that was ~3.7 KB of every in-flight request (bench S4).
    """
    held: list[int] = []
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(inclusive=True, filename_pattern=signer_http.__file__)]
        )
        held.append(sum(stat.size for stat in snapshot.statistics("filename")))
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(
        base_url="http://signer.test", transport=httpx.MockTransport(answer)
    ) as http:
        tracemalloc.start()
        try:
            await signer_http.request_json(
                http, "POST", "/get_credential", signer="eu", endpoint="get_credential",
                content=signer_http.exact_json(examples.EU_VACCINATION),
            )  # fmt: skip
        finally:
            tracemalloc.stop()
    (body,) = sent
    (allocated,) = held
    assert len(body) > 100  # the DCC really went out
    assert allocated < len(body) + 1024, (allocated, len(body))


async def test_aiohttp_connect_budget_is_pool_plus_connect(monkeypatch) -> None:
    """With the aiohttp transport, aiohttp's connect timeout is pool + connect, every request."""
    seen: list[dict[str, float | None]] = []

    async def transport(self, request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200, json={"ok": True})

    monkeypatch.setattr(SignerTransport, "handle_async_request", transport)
    http = signer_http.build_signer_client(
        "http://signer.test", connect_timeout=2.0, read_timeout=5.0, write_timeout=5.0,
        pool_timeout=3.0, max_connections=4, transport="aiohttp",
    )  # fmt: skip
    async with http:
        for _ in range(2):
            await http.send(http.build_request("GET", "/health"))
    assert [t["pool"] for t in seen] == [5.0, 5.0]
    assert [t["connect"] for t in seen] == [2.0, 2.0]
    assert [t["read"] for t in seen] == [5.0, 5.0]


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_signer_calls_send_only_headers_that_say_something(transport: str) -> None:
    """No `Connection: keep-alive` (HTTP/1.1's default): each header is held three times."""
    http = signer_http.build_signer_client(
        "http://signer.test", connect_timeout=2.0, read_timeout=5.0, write_timeout=5.0,
        pool_timeout=3.0, max_connections=4, transport=transport,
    )  # fmt: skip
    async with http:
        request = http.build_request("POST", "/get_credential", content=b"{}")
    assert "connection" not in request.headers
    assert request.headers["user-agent"] == "signing-gateway"
    assert request.headers["accept"] == "application/json"
    assert request.headers["accept-encoding"] == "identity"


def test_header_names_go_to_aiohttp_as_case_insensitive_strings_made_once() -> None:
    """Plain `str` names cost a lower-cased copy in each of aiohttp's two dicts per call.

    An `istr` carries its own, made once per transport: ~1.6 KB less per call held at the
    signer (bench S4). The names keep their spelling.
    """
    transport = SignerTransport()
    request = httpx.Request(
        "POST", "http://signer.test/get_credential", content=b"{}",
        headers={"X-Request-ID": "r-1", "Content-Type": "application/json"},
    )  # fmt: skip
    first = transport._headers(request.headers)
    second = transport._headers(request.headers)
    names = [name for name, _ in first]
    assert names == [name.decode() for name, _ in request.headers.raw]
    assert "X-Request-ID" in names
    assert all(isinstance(name, istr) for name in names), [type(name) for name in names]
    assert all(a is b for (a, _), (b, _) in zip(first, second, strict=True))
