"""Valid request bodies for the public API, built fresh per test so each can bend one field."""

from __future__ import annotations

import copy
import time
from typing import Any

from signing_gateway.api import examples


def eu_vaccination(**top: Any) -> dict[str, Any]:
    """A valid /v1/dcc vaccination request; `top` replaces top-level members."""
    return {**copy.deepcopy(examples.EU_VACCINATION), **top}


def eu_test(**top: Any) -> dict[str, Any]:
    """A valid /v1/dcc test request; `top` replaces top-level members."""
    return {**copy.deepcopy(examples.EU_TEST), **top}


def eu_recovery(**top: Any) -> dict[str, Any]:
    """A valid /v1/dcc recovery request; `top` replaces top-level members."""
    body = eu_vaccination(keyUsage="recovery")
    body["dcc"].pop("v")
    body["dcc"]["r"] = [
        {
            "tg": "840539006",
            "fr": "2021-04-01",
            "co": "NL",
            "is": "Ministry of Health Welfare and Sport",
            "df": "2021-04-12",
            "du": "2021-10-01",
            "ci": "URN:UVCI:01:NL:RECOVERY0001",
        }
    ]
    return {**body, **top}


def with_dcc(body: dict[str, Any], *path: str | int, value: Any) -> dict[str, Any]:
    """`body` with the DCC member at `path` set to `value` (deleted when value is ...)."""
    target = body["dcc"]
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


def domestic_attributes(**changes: str) -> dict[str, str]:
    """Valid domestic attributes, valid from now; `changes` replace members."""
    attrs = {
        "isSpecimen": "0",
        "isPaperProof": "1",
        "validFrom": str(int(time.time())),
        "validForHours": "24",
        "firstNameInitial": "A",
        "lastNameInitial": "J",
        "birthDay": "2",
        "birthMonth": "4",
    }
    attrs.update(changes)
    return attrs
