"""How `slow-body` writes its answer, counted where it is written (in-process)."""

from __future__ import annotations

import orjson
from aiohttp import web

from fake_signer import keys
from tests.contract.fake_signer.signer_wire import eu_body
from tests.unit.fake_signer.test_fake_signer_key_expiry import serving


async def test_slow_body_is_written_in_ten_pieces(monkeypatch):
    """Pin that `slow-body` writes the whole body in exactly 10 pieces, as documented.

    The contract test counts pieces as they arrive, where the network may merge two.
    """
    written: list[bytes] = []
    write = web.StreamResponse.write

    async def recording(self: web.StreamResponse, data: bytes) -> None:
        written.append(bytes(data))
        await write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", recording)
    async with serving(keys.generate_key_material("NL")) as client:
        response = await client.post(
            "/get_credential", json=eu_body(), headers={"X-Fake-Signer-Fault": "slow-body=0"}
        )
    assert response.status_code == 200
    assert len(written) == 10
    assert b"".join(written) == response.content
    assert orjson.loads(response.content)["credential"].startswith("HC1:")
