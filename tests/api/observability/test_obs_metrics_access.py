"""/metrics stays reachable: no caller token needed, and still served while draining."""

from __future__ import annotations

import json
from pathlib import Path

import respx

from signing_gateway.app import create_app
from signing_gateway.security.settings import AuthSettings
from signing_gateway.security.tokens import LocalTokenIssuer
from tests.api.observability.scrape import scrape
from tests.support.gateway import SignerKeys, make_settings, running_gateway


async def test_metrics_needs_no_caller_token(
    test_keys: SignerKeys, signers: respx.MockRouter, tmp_path: Path
):
    """With JWT auth on, /v1 refuses an anonymous caller while /metrics answers it."""
    issuer = LocalTokenIssuer(issuer="https://idp.test/", audience="signing-gateway")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    auth = AuthSettings(
        mode="jwt", jwks_file=jwks, audience="signing-gateway", issuer="https://idp.test/"
    )
    async with running_gateway(make_settings(test_keys, auth=auth)) as client:
        assert (await client.get("/v1/keys")).status_code == 401
        result = await scrape(client)
    assert result.value("gateway_responses_total", route="/v1/keys", status="401") == 1


async def test_metrics_is_served_while_draining(test_keys: SignerKeys, signers: respx.MockRouter):
    """After SIGTERM-style draining starts, new work gets 503 but /metrics still answers."""
    app = create_app(make_settings(test_keys))
    async with running_gateway(make_settings(test_keys), app=app) as client:
        app.state.drain.begin()
        assert (await client.get("/v1/keys")).status_code == 503
        result = await scrape(client)
    # Refused before routing ran, so under "unmatched"; its status sets it apart from a 404.
    assert result.value("gateway_responses_total", route="unmatched", status="503") == 1
    assert result.value("gateway_requests_received_total") == 2
