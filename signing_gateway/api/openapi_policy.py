"""The domestic policy bounds this gateway enforces, stated in its OpenAPI document.

`DomesticAttributes` describes `validFrom` and `validForHours` with the settings' defaults: a
model knows no settings. `document_domestic_policy` has the served document state the bounds
of this gateway's `domestic` settings instead, the ones its 422s are given by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signing_gateway.api.openapi_document import amend_openapi
from signing_gateway.domain.domestic import DomesticAttributes, DomesticPolicy, policy_hours

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["document_domestic_policy"]

_SOURCE = "this gateway's domestic policy settings"


def _descriptions(policy: DomesticPolicy) -> dict[str, str]:
    """The description of each bounded attribute, by its wire name, stating `policy`."""
    return {
        "validFrom": (
            f"Unix seconds; no earlier than {policy_hours(policy.max_valid_from_past)} before "
            f"now and no later than {policy_hours(policy.max_valid_from_future)} after it "
            f"({_SOURCE})"
        ),
        "validForHours": f"At most {policy.max_valid_for_hours} ({_SOURCE})",
    }


def document_domestic_policy(app: FastAPI, policy: DomesticPolicy) -> None:
    """Have `app`'s OpenAPI document state `policy`'s bounds on the domestic attributes."""
    descriptions = _descriptions(policy)

    def state_bounds(document: dict[str, Any]) -> None:
        schemas = document.get("components", {}).get("schemas", {})
        properties = schemas.get(DomesticAttributes.__name__, {}).get("properties", {})
        for name, description in descriptions.items():
            if name in properties:
                properties[name]["description"] = description

    amend_openapi(app, state_bounds)
