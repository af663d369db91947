"""The JSON body of a signer call is held for the whole call, so it must not carry slack."""

from __future__ import annotations

import tracemalloc

import httpx

from signing_gateway.api import examples
from signing_gateway.signers import http as signer_http


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
                body=examples.EU_VACCINATION,
            )  # fmt: skip
        finally:
            tracemalloc.stop()
    (body,) = sent
    (allocated,) = held
    assert len(body) > 100  # the DCC really went out
    assert allocated < len(body) + 1024, (allocated, len(body))


async def test_aiohttp_connect_budget_is_widened_per_request_not_in_the_client(monkeypatch) -> None:
    """The aiohttp connect timeout gets pool + connect, each request anew.

    The widening applies to the request alone: the client's own timeout stays as configured,
    so a second request is widened from the same figures, not from the first one's.
    """
    seen: list[dict[str, float | None]] = []

    async def parent(self, request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200, json={"ok": True})

    monkeypatch.setattr(signer_http.AiohttpTransport, "handle_async_request", parent)
    transport = signer_http._AiohttpSignerTransport()
    timeout = httpx.Timeout(5.0, connect=2.0, pool=3.0)
    async with httpx.AsyncClient(
        base_url="http://signer.test", transport=transport, timeout=timeout
    ) as http:
        for _ in range(2):
            await http.send(http.build_request("GET", "/health"))
    assert [t["pool"] for t in seen] == [5.0, 5.0]
    assert [t["connect"] for t in seen] == [2.0, 2.0]
    assert http.timeout.pool == 3.0
