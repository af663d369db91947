"""Example bodies for the OpenAPI documentation (fictional people, valid codes).

A domestic `validFrom` must lie near now (by default 720 hours back to 336 ahead), so no fixed
one stays valid: `DOMESTIC_ATTRIBUTES` holds the hour this module was imported, and whatever
sends an example later sets its own. The served OpenAPI document does (`serve_current_examples`):
FastAPI builds it once and keeps it, and an example fixed then would be refused from /docs once
the process has run 30 days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from signing_gateway.api.openapi_document import amend_openapi

if TYPE_CHECKING:
    from fastapi import FastAPI


def this_hour() -> str:
    """A domestic `validFrom` for an example: the start of the current hour."""
    return str(int(datetime.now(UTC).timestamp()) // 3600 * 3600)


EU_VACCINATION: dict[str, Any] = {
    "keyUsage": "vaccination",
    "dcc": {
        "ver": "1.3.0",
        "nam": {"fn": "Jansen", "fnt": "JANSEN", "gn": "Anna", "gnt": "ANNA"},
        "dob": "1980-04-02",
        "v": [
            {
                "tg": "840539006",
                "vp": "1119349007",
                "mp": "EU/1/20/1528",
                "ma": "ORG-100030215",
                "dn": 2,
                "sd": 2,
                "dt": "2021-06-10",
                "co": "NL",
                "is": "Ministry of Health Welfare and Sport",
                "ci": "URN:UVCI:01:NL:DADFCC47C7334E45A906DB12FD859FB7#1",
            }
        ],
    },
}

EU_TEST: dict[str, Any] = {
    "keyUsage": "test",
    "dcc": {
        "ver": "1.3.0",
        "nam": {"fn": "de Vries", "fnt": "DE<VRIES", "gn": "Piet", "gnt": "PIET"},
        "dob": "1975-11",
        "t": [
            {
                "tg": "840539006",
                "tt": "LP6464-4",
                "nm": "Roche LightCycler qPCR",
                "sc": "2021-07-01T10:00:00Z",
                "tr": "260415000",
                "tc": "Testlocatie Utrecht",
                "co": "NL",
                "is": "Ministry of Health Welfare and Sport",
                "ci": "URN:UVCI:01:NL:0A1B2C3D4E5F#V",
            }
        ],
    },
}

DOMESTIC_ATTRIBUTES: dict[str, str] = {
    "isSpecimen": "0",
    "isPaperProof": "1",
    "validFrom": this_hour(),
    "validForHours": "24",
    "firstNameInitial": "A",
    "lastNameInitial": "J",
    "birthDay": "2",
    "birthMonth": "4",
}

# Base64 of {"issuerNonce": "MDEyMzQ1Njc4OWFiY2RlZg==", "commitments": "..."}: the app's answer
# to a prepareIssueMessage, passed through to the domestic signer. A placeholder: a real one is
# built by the app from the issuerNonce of its own session (SESSION_EXAMPLE_NOTE).
ISSUE_COMMITMENT_MESSAGE = (
    "eyJpc3N1ZXJOb25jZSI6Ik1ERXlNelExTmpjNE9XRmlZMlJsWmc9PSIsImNvbW1pdG1lbnRzIjoiLi4uIn0="
)

#: Shown with the examples that name a session: as they stand, they cannot succeed.
SESSION_EXAMPLE_NOTE = (
    "The shape of a request, not one that can succeed as it stands. A real `stoken` comes "
    "from `POST /v1/domestic/prepare-issue`, and a real `issueCommitmentMessage` is built by "
    "the app from the `issuerNonce` in that call's `prepareIssueMessage`. Sent unchanged, this "
    "example names a session no gateway opened and is answered 401 `stoken-invalid`; with a "
    "fresh `stoken` but this commitment (another `issuerNonce`), it is answered 422 "
    "`commitment-proof-failed` before any signer, and the session stays usable."
)

DOMESTIC_ISSUE: dict[str, Any] = {
    "stoken": "6b0c2c6e-3d1f-4c1e-9a57-2f1d0c9b8a77",
    "issueCommitmentMessage": ISSUE_COMMITMENT_MESSAGE,
    "credentialsAttributes": [dict(DOMESTIC_ATTRIBUTES, isPaperProof="0")],
}

PRINT: dict[str, Any] = {"domestic": DOMESTIC_ATTRIBUTES, "european": EU_VACCINATION}

CREDENTIALS: dict[str, Any] = {
    "stoken": DOMESTIC_ISSUE["stoken"],
    "issueCommitmentMessage": ISSUE_COMMITMENT_MESSAGE,
    "domestic": [dict(DOMESTIC_ATTRIBUTES, isPaperProof="0")],
    "european": [EU_VACCINATION, EU_TEST],
}


def _with_valid_from(value: object, valid_from: str) -> object:
    """A copy of the example `value` with every domestic attribute set's `validFrom` replaced."""
    if isinstance(value, dict):
        return {
            key: valid_from if key == "validFrom" else _with_valid_from(item, valid_from)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_with_valid_from(item, valid_from) for item in value]
    return value


def serve_current_examples(app: FastAPI) -> None:
    """Make `app`'s OpenAPI document give its request examples the current hour as `validFrom`.

    The document stays FastAPI's cached one; each fetch replaces the examples' values with
    copies (a few small dicts) dated now, so "Try it out" is accepted however long the process
    has run.
    """
    amend_openapi(app, _date_examples)


def _date_examples(document: dict[str, Any]) -> None:
    valid_from = this_hour()
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {})
            for example in body.get("application/json", {}).get("examples", {}).values():
                example["value"] = _with_valid_from(example["value"], valid_from)
