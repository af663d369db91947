"""/openapi.json states the domestic policy bounds this gateway enforces, not the defaults."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from signing_gateway.settings import DomesticPolicySettings
from tests.api.bodies import domestic_attributes
from tests.api.signer_mocks import MockedSigners
from tests.support.gateway import SignerKeys, make_settings, running_gateway


def _bounded(document: dict[str, Any]) -> tuple[str, str]:
    """The descriptions of `validFrom` and `validForHours` in `document`."""
    properties = document["components"]["schemas"]["DomesticAttributes"]["properties"]
    return properties["validFrom"]["description"], properties["validForHours"]["description"]


async def test_the_document_states_the_configured_bounds(
    test_keys: SignerKeys, mocked: MockedSigners
) -> None:
    """Pin that non-default bounds are the ones /openapi.json gives, fetch after fetch.

    Before, the document said "by default at most 2160" and "720 hours before now and ... 336
    hours after it" whatever the settings, while the gateway refused by its own bounds.
    """
    policy = DomesticPolicySettings(
        max_valid_from_past_hours=48, max_valid_from_future_hours=6, max_valid_for_hours=72
    )
    async with running_gateway(make_settings(test_keys, domestic=policy)) as client:
        first = (await client.get("/openapi.json")).json()
        again = (await client.get("/openapi.json")).json()
        refused = await client.post(
            "/v1/domestic/static",
            json={"credentialAttributes": domestic_attributes(validForHours="73")},
        )
    valid_from = (
        "Unix seconds; no earlier than 48 hours before now and no later than 6 hours after "
        "it (this gateway's domestic policy settings)"
    )
    valid_for_hours = "At most 72 (this gateway's domestic policy settings)"
    assert _bounded(first) == _bounded(again) == (valid_from, valid_for_hours)
    # The bound the document states is the one the gateway refuses by.
    assert refused.status_code == 422
    assert "validForHours must be at most 72, got 73" in refused.text
    assert mocked.signing_calls() == 0


@pytest.mark.usefixtures("signers")
async def test_the_default_bounds_are_stated_as_this_gateways(gateway: httpx.AsyncClient) -> None:
    """Without settings of its own, the gateway states the defaults: 720, 336 and 2160 hours."""
    document = (await gateway.get("/openapi.json")).json()
    valid_from, valid_for_hours = _bounded(document)
    assert "no earlier than 720 hours before now and no later than 336 hours after" in valid_from
    assert valid_for_hours.startswith("At most 2160 ")
