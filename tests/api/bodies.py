"""Valid request bodies for the public API, built fresh per test so each can bend one field."""

from __future__ import annotations

import copy
import time
from typing import Any

from signing_gateway.api import examples
from tests.support.recovery import recovery_entry


def eu_vaccination(**top: Any) -> dict[str, Any]:
    """A valid /v1/dcc vaccination request; `top` replaces top-level members."""
    return {**copy.deepcopy(examples.EU_VACCINATION), **top}


def eu_test(**top: Any) -> dict[str, Any]:
    """A valid /v1/dcc test request; `top` replaces top-level members."""
    return {**copy.deepcopy(examples.EU_TEST), **top}


def eu_recovery(**top: Any) -> dict[str, Any]:
    """A valid /v1/dcc recovery request, still valid (``du`` ahead); `top` replaces members."""
    body = eu_vaccination(keyUsage="recovery")
    body["dcc"].pop("v")
    body["dcc"]["r"] = [recovery_entry()]
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


def with_own_uvcis(*bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """EU requests like `bodies`, each with a UVCI of its own (one request may not repeat one).

    The n-th gets ``URN:UVCI:01:NL:PARTn`` (no check character, which is optional).
    """
    own = [copy.deepcopy(body) for body in bodies]
    for serial, part in enumerate(own):
        dcc = part["dcc"]
        (group,) = (name for name in ("v", "t", "r") if name in dcc)
        dcc[group][0]["ci"] = f"URN:UVCI:01:NL:PART{serial}"
    return own


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
