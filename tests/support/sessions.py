"""A domestic issuance session opened through a served gateway, for tests against the fakes."""

from __future__ import annotations

import base64

import httpx
import orjson


async def open_session(client: httpx.AsyncClient) -> dict[str, str]:
    """A fresh session from `client`'s gateway: its `stoken` and a commitment to its nonce.

    The fake domestic signer takes any commitment that names its nonce (`issuerNonce`); the
    other members pass through.
    """
    prepared = await client.post("/v1/domestic/prepare-issue")
    assert prepared.status_code == 200, prepared.text
    out = prepared.json()
    nonce = orjson.loads(base64.b64decode(out["prepareIssueMessage"]))["issuerNonce"]
    commitment = orjson.dumps({"issuerNonce": nonce, "proof": "app"})
    return {
        "stoken": out["stoken"],
        "issueCommitmentMessage": base64.b64encode(commitment).decode(),
    }
